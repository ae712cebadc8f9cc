"""The frozen-feature probe: acquisition shifts, and the probe exported as one Keras model."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("keras")
pytest.importorskip("sklearn")

from train.lite0_probe import SHIFTS, export_model, extract, lite0_backbone, positive_probability, shift  # noqa: E402


def _pixels(n: int = 3, side: int = 64) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(30, 220, (n, side, side)).astype(np.uint8)


@pytest.mark.parametrize("name", SHIFTS)
def test_every_shift_keeps_shape_and_dtype_and_changes_the_image(name):
    pixels = _pixels()
    out = shift(pixels, name)
    assert out.shape == pixels.shape and out.dtype == np.uint8
    assert np.array_equal(out, pixels) == (name == "clean")


def test_shifts_move_intensities_the_named_way():
    pixels = _pixels()
    assert shift(pixels, "exposure-").mean() < pixels.mean() < shift(pixels, "exposure+").mean()
    assert shift(pixels, "contrast-").std() < pixels.std() < shift(pixels, "contrast+").std()
    assert shift(pixels, "gamma1.5").mean() < pixels.mean() < shift(pixels, "gamma0.7").mean()
    assert shift(pixels, "blur1.5").astype(float).std() < pixels.std()


def test_positive_probability_follows_the_bundle_rule():
    assert positive_probability(np.array([[0.8]]))[0] == pytest.approx(0.8)
    assert positive_probability(np.array([[0.7, 0.2, 0.1]]))[0] == pytest.approx(0.3)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_exported_model_equals_scaler_plus_logistic_regression(n_classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pixels = np.concatenate([_pixels(6, 224), 255 - _pixels(6, 224)])
    backbone = lite0_backbone(None)
    features = extract(backbone, pixels)
    head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    head.fit(features, np.arange(len(pixels)) % n_classes)
    task = "binary" if n_classes == 2 else "subtype"
    model = export_model(backbone, head, task)
    got = model.predict(pixels[..., None].astype(np.float32), verbose=0)
    expected = head.predict_proba(features)
    np.testing.assert_allclose(positive_probability(got), positive_probability(expected), atol=1e-4)
