"""The frozen-feature probe: its Keras export, and the metrics it adds to train.robustness."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("keras")
pytest.importorskip("sklearn")

from experiments.lite0_probe import (  # noqa: E402
    augmented_features,
    export_model,
    extract,
    lite0_backbone,
    positive_probability,
    subtype_metrics,
)


def test_positive_probability_follows_the_bundle_rule():
    assert positive_probability(np.array([[0.8]]))[0] == pytest.approx(0.8)
    assert positive_probability(np.array([[0.7, 0.2, 0.1]]))[0] == pytest.approx(0.3)


def test_subtype_metrics():
    y = np.array([0, 1, 2, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.6, 0.3], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]])
    got = subtype_metrics(y, probs)
    assert got["class_accuracy"] == pytest.approx(0.75)
    assert got["bacterial_vs_viral"] == pytest.approx(2 / 3)
    assert got["screening_auc"] == pytest.approx(1.0)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_exported_model_equals_scaler_plus_logistic_regression(n_classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (12, 224, 224)).astype(np.uint8)
    pixels[6:] //= 2  # two kinds of image, so the regression has something to separate
    backbone = lite0_backbone(None)
    features = extract(backbone, pixels)
    head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    head.fit(features, np.arange(len(pixels)) % n_classes)
    model = export_model(backbone, head, "binary" if n_classes == 2 else "subtype")
    got = model.predict(pixels[..., None].astype(np.float32), verbose=0)
    np.testing.assert_allclose(positive_probability(got), positive_probability(head.predict_proba(features)), atol=1e-4)


def test_augmented_copies_are_stacked_and_differ_from_the_clean_features():
    pixels = np.random.default_rng(2).integers(0, 256, (3, 224, 224)).astype(np.uint8)
    backbone = lite0_backbone(None)
    clean = extract(backbone, pixels)
    augmented = augmented_features(backbone, pixels, copies=2, batch=2)
    assert augmented.shape == (6, clean.shape[1])
    assert np.abs(augmented[:3] - clean).max() > 0  # (random weights: features move little, but move)
    assert augmented_features(backbone, pixels, copies=0).shape == (0, clean.shape[1])
