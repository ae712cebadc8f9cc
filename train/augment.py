"""Training-only augmentation on batches of raw grey levels (float32 0..255, NHWC, 1 channel).

Why these: the test films come from other acquisitions (exposure, contrast, sharpness,
resolution and framing differ), so geometry is jittered a little and intensity and
sharpness a lot. JPEG re-encoding at random quality breaks a shortcut: the publisher's
pneumonia originals are small, heavily compressed files, and a fine-tuned ImageNet backbone
learned compression artifacts as a pneumonia cue (its pneumonia probabilities fell by 0.12
on average when read from the artifact-free full-resolution originals, 4% of decisions
flipped to "normal"; see docs/pretrained.md). No horizontal flip unless asked: a flipped chest puts the heart on the
wrong side. Nothing here is part of the exported model.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each augmentation (0 disables it)."""

    rotation_deg: float = 10.0
    shift: float = 0.08  # fraction of the side
    zoom: float = 0.10  # independent per axis: also jitters the squash aspect ratio
    brightness: float = 0.10  # fraction of full scale
    contrast: float = 0.25
    gamma: float = 0.35  # log-gamma range
    sharpness: float = 1.0  # unsharp-mask amount in [-sharpness, sharpness]; -1 is a 3x3 blur
    noise: float = 0.03  # max Gaussian noise std, fraction of full scale
    lowres_prob: float = 0.25  # chance a batch is down- then up-sampled
    hflip: bool = False
    jpeg_prob: float = 0.5  # chance an image is re-encoded as JPEG
    jpeg_quality: tuple[int, int] = (25, 95)  # its quality, uniform in this range
    soften_negatives: float = 0.0  # chance a NORMAL image is down-sampled to 40-80% and back


NONE = AugmentConfig(0, 0, 0, 0, 0, 0, 0, 0, 0, False, 0)


def _uniform(n, bound: float):
    return tf.random.uniform((n,), -bound, bound)


def geometric(images, cfg: AugmentConfig):
    """One random affine per image (rotation, shift, anisotropic zoom), edge pixels repeated."""
    n = tf.shape(images)[0]
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    theta = _uniform(n, math.radians(cfg.rotation_deg))
    inv_sx = 1.0 / (1.0 + _uniform(n, cfg.zoom))
    inv_sy = 1.0 / (1.0 + _uniform(n, cfg.zoom))
    tx, ty = _uniform(n, cfg.shift) * width, _uniform(n, cfg.shift) * height
    cx, cy = width / 2.0, height / 2.0
    cos, sin = tf.cos(theta), tf.sin(theta)
    # Output pixel (x, y) samples input at A @ (x - c - t) + c, A = scale^-1 @ rotation^-1.
    a0, a1, b0, b1 = inv_sx * cos, inv_sx * sin, -inv_sy * sin, inv_sy * cos
    a2 = cx - a0 * (cx + tx) - a1 * (cy + ty)
    b2 = cy - b0 * (cx + tx) - b1 * (cy + ty)
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST")


def _blur3(images):
    kernel = tf.constant([1.0, 2.0, 1.0])
    kernel = tf.tensordot(kernel, kernel, axes=0) / 16.0
    return tf.nn.depthwise_conv2d(images, kernel[:, :, None, None], [1, 1, 1, 1], "SAME")


def photometric(images, cfg: AugmentConfig):
    """Gamma, contrast, brightness, blur/sharpen and noise, per image, on 0..1 values."""
    n = tf.shape(images)[0]
    per_image = lambda bound: _uniform(n, bound)[:, None, None, None]  # noqa: E731
    x = tf.clip_by_value(images / 255.0, 0.0, 1.0)
    x = tf.pow(x + 1e-6, tf.exp(per_image(cfg.gamma)))
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * (1.0 + per_image(cfg.contrast)) + mean + per_image(cfg.brightness)
    x = x + per_image(cfg.sharpness) * (x - _blur3(x))
    x = x + tf.random.normal(tf.shape(x)) * tf.random.uniform((n, 1, 1, 1), 0.0, cfg.noise)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def _down_and_up(images):
    """The batch down-sampled to a random 40-80% of its size and back: soft, pixelated films."""
    size = tf.shape(images)[1:3]
    small = tf.cast(tf.cast(size, tf.float32) * tf.random.uniform((), 0.4, 0.8), tf.int32)
    return tf.image.resize(tf.image.resize(images, small, "area"), size, "bilinear")


def low_resolution(images, prob: float):
    """With probability ``prob``, down-sample the batch to 40-80% and back (soft, pixelated films)."""
    return tf.cond(tf.random.uniform(()) < prob, lambda: _down_and_up(images), lambda: images)


def soften_negatives(images, negatives, prob: float):
    """Down-sample each NORMAL image (``negatives``) with probability ``prob`` to 40-80% and back.

    Why only the normals: the publisher's normals are sharp and its pneumonia films soft, so
    softness alone ranks pneumonia (``python -m train shift``). Softening some normals takes
    that cue away from the label instead of blurring both classes alike.
    """
    chosen = tf.logical_and(negatives, tf.random.uniform(tf.shape(negatives)) < prob)
    return tf.where(chosen[:, None, None, None], _down_and_up(images), images)


def jpeg_artifacts(images, prob: float, quality: tuple[int, int]):
    """Re-encode each image, with probability ``prob``, as JPEG at a random quality.

    The whole batch's draws come before the per-image loop: drawn inside it, parallel
    iterations would take them in varying order, and no seed could repeat a run.
    """
    low, high = quality
    n = tf.shape(images)[0]
    chosen = tf.random.uniform((n,)) < prob
    qualities = tf.random.uniform((n,), low, high + 1, dtype=tf.int32)

    def one(args):
        image, encode, q = args
        return tf.cond(encode, lambda: tf.image.adjust_jpeg_quality(image / 255.0, q) * 255.0, lambda: image)

    return tf.map_fn(one, (images, chosen, qualities), fn_output_signature=images.dtype)


def negatives_of(targets):
    """Which images of a batch are NORMAL: target 0 of a sigmoid, or the first (NORMAL) column of a softmax."""
    if targets.shape.rank == 1 or targets.shape[-1] == 1:
        return tf.reshape(targets, [-1]) < 0.5
    return targets[:, 0] > 0.5


def augment(images, cfg: AugmentConfig, negatives=None):
    """The full training augmentation for a batch; ``negatives`` (which images are NORMAL) for ``soften_negatives``."""
    if cfg.hflip:
        images = tf.where(tf.random.uniform((tf.shape(images)[0], 1, 1, 1)) < 0.5, images[:, :, ::-1], images)
    images = geometric(images, cfg)
    if cfg.lowres_prob:
        images = low_resolution(images, cfg.lowres_prob)
    if cfg.soften_negatives and negatives is not None:
        images = soften_negatives(images, negatives, cfg.soften_negatives)
    images = photometric(images, cfg)
    if cfg.jpeg_prob:
        images = jpeg_artifacts(images, cfg.jpeg_prob, cfg.jpeg_quality)
    return images
