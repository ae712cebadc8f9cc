"""tf.data input pipelines from the in-memory pixel cache (no JPEG decoding per epoch)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from train.augment import AugmentConfig, augment, negatives_of


def one_hot_targets(targets: np.ndarray, n_outputs: int) -> np.ndarray:
    """Class indices -> what the loss wants: (N, 1) floats for sigmoid, one-hot for softmax."""
    if n_outputs == 1:
        return targets.astype(np.float32)[:, None]
    return np.eye(n_outputs, dtype=np.float32)[targets]


def dataset(pixels: np.ndarray, targets: np.ndarray, batch_size: int, *,
            sample_weights: np.ndarray | None = None, augment_cfg: AugmentConfig | None = None,
            shuffle_seed: int | None = None) -> tf.data.Dataset:
    """Batches of (float32 0..255 NHWC images, targets[, weights]); augmented only if ``augment_cfg``.

    ``targets`` are what the loss wants: :func:`one_hot_targets`, or soft targets when distilling.
    ``batch_size`` is the global batch: a distribution strategy splits each batch among its
    replicas, and on a cluster every worker keeps its share of each batch (the DATA shard
    policy: elements, since these slices come from memory, not files). Every worker shuffles
    with the same seed, so the shares do not overlap.
    """
    parts = (pixels[..., None], targets.astype(np.float32))
    if sample_weights is not None:
        parts += (sample_weights.astype(np.float32),)
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle_seed is not None:
        ds = ds.shuffle(len(pixels), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def prepare(images, targets, *rest):
        images = tf.cast(images, tf.float32)
        if augment_cfg is not None:
            negatives = negatives_of(targets) if augment_cfg.soften_negatives else None  # only runs that soften
            images = augment(images, augment_cfg, negatives)
        return (images, targets, *rest)

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(options)


def images_only(pixels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Unaugmented float32 batches for prediction."""
    ds = tf.data.Dataset.from_tensor_slices(pixels[..., None]).batch(batch_size)
    return ds.map(lambda x: tf.cast(x, tf.float32)).prefetch(tf.data.AUTOTUNE)
