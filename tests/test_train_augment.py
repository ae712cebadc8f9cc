"""Training augmentation: shapes and ranges kept, and the JPEG step that breaks the artifact shortcut."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")

from train.augment import NONE, AugmentConfig, augment, jpeg_artifacts, negatives_of  # noqa: E402
from train.config import RunConfig, augment_config  # noqa: E402


def _films(n: int = 4) -> np.ndarray:
    """Smooth grey gradients with a bright disc: JPEG leaves ringing around the disc's edge."""
    yy, xx = np.mgrid[0:64, 0:64]
    film = (xx + yy) * 1.2 + 90.0 * ((xx - 30) ** 2 + (yy - 34) ** 2 < 15**2)
    return np.repeat(film[None, :, :, None], n, axis=0).astype(np.float32)


def test_jpeg_step_re_encodes_at_the_given_quality_or_leaves_the_image_alone():
    films = _films()
    encoded = jpeg_artifacts(tf.constant(films), prob=1.0, quality=(25, 25)).numpy()
    expected = tf.image.adjust_jpeg_quality(films[0] / 255.0, 25).numpy() * 255.0
    np.testing.assert_allclose(encoded[0], expected, atol=1e-3)
    assert np.abs(encoded - films).mean() > 0.5  # visibly changed
    np.testing.assert_array_equal(jpeg_artifacts(tf.constant(films), prob=0.0, quality=(25, 95)).numpy(), films)


def test_full_augmentation_keeps_shape_and_grey_range():
    out = augment(tf.constant(_films(8)), AugmentConfig()).numpy()
    assert out.shape == (8, 64, 64, 1) and out.min() >= 0.0 and out.max() <= 255.0
    np.testing.assert_allclose(augment(tf.constant(_films()), NONE).numpy(), _films(), atol=1e-3)


def test_a_run_can_switch_the_jpeg_step_or_all_augmentation_off():
    assert augment_config(RunConfig(data="d", out="o")).jpeg_prob > 0
    assert augment_config(RunConfig(data="d", out="o", jpeg_augment=False)).jpeg_prob == 0
    assert augment_config(RunConfig(data="d", out="o", augment=False)) is None


def _sharpness(images: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(images[..., 0], axis=2)).mean(axis=(1, 2))


def test_softening_normals_blurs_only_the_normals():
    """The cue-breaking step: sharp normals become soft, pneumonia films are left as they are."""
    rng = np.random.default_rng(0)
    films = rng.uniform(0, 255, (6, 64, 64, 1)).astype(np.float32)
    targets = np.array([[0.0], [1.0], [0.0], [1.0], [0.0], [1.0]], np.float32)  # sigmoid targets; 0 is NORMAL
    cfg = dataclasses.replace(NONE, soften_negatives=1.0)
    out = augment(tf.constant(films), cfg, negatives_of(tf.constant(targets))).numpy()
    normal = targets[:, 0] == 0
    np.testing.assert_allclose(out[~normal], films[~normal], atol=1e-3)
    assert (_sharpness(out[normal]) < _sharpness(films[normal]) / 2).all()
    np.testing.assert_allclose(augment(tf.constant(films), cfg).numpy(), films, atol=1e-3)  # no labels: no change


def test_normals_are_the_first_column_of_a_softmax_and_target_0_of_a_sigmoid():
    one_hot = tf.constant(np.eye(3, dtype=np.float32)[[0, 2, 1, 0]])
    assert negatives_of(one_hot).numpy().tolist() == [True, False, False, True]
    assert negatives_of(tf.constant([0.0, 1.0])).numpy().tolist() == [True, False]


def test_a_run_asks_for_softened_normals_by_option():
    assert augment_config(RunConfig(data="d", out="o")).soften_negatives == 0.0
    assert augment_config(RunConfig(data="d", out="o", soften_normals=0.5)).soften_negatives == 0.5


def test_the_training_pipeline_softens_only_the_normals_of_a_run_that_asks():
    from train import pipeline

    films = np.random.default_rng(1).uniform(0, 255, (2, 64, 64)).astype(np.float32)
    targets = pipeline.one_hot_targets(np.array([0, 1]), 1)  # NORMAL, PNEUMONIA
    cfg = dataclasses.replace(NONE, soften_negatives=1.0)
    images, _ = next(iter(pipeline.dataset(films, targets, 2, augment_cfg=cfg)))
    assert _sharpness(images.numpy()[:1]) < _sharpness(films[:1, :, :, None]) / 2
    np.testing.assert_allclose(images.numpy()[1, ..., 0], films[1], atol=1e-3)
