"""Grad-CAM heatmaps from the Keras model, for a run's false positives and negatives.

The training box has gradients, so it can show where the model looked with Grad-CAM
(Selvaraju et al. 2017): the last feature map, weighted by the mean gradient of the
pneumonia score with respect to each channel, rectified and upsampled to the image. The
edge uses occlusion instead (:mod:`cxr_edge.explain`); both are drawn with the same
colormap and overlay so they can be compared side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from cxr_edge import explain


def last_feature_layer(model: keras.Model) -> keras.layers.Layer:
    """The last top-level layer with a 4-D (N, H, W, C) output: the backbone's feature map."""
    for layer in reversed(model.layers[1:]):
        if len(layer.output.shape) == 4:
            return layer
    raise ValueError(f"model {model.name} has no layer with a spatial (4-D) output for Grad-CAM")


def gradcam(
    model: keras.Model, pixels: np.ndarray, layer_name: str | None = None, negative_index: int = 0
) -> np.ndarray:
    """Grad-CAM of one uint8 image (H, W) at the model's input size -> float32 (H, W) in 0..1.

    The score explained is P(pneumonia): the sigmoid output of a binary model, or
    ``1 - p[negative_index]`` of a softmax one (the bundle's decision rule). An image the
    model sees no evidence in gives all zeros.
    """
    layer = model.get_layer(layer_name) if layer_name else last_feature_layer(model)
    probe = keras.Model(model.inputs, [layer.output, model.output])
    x = tf.constant(pixels[None, ..., None], dtype=tf.float32)
    with tf.GradientTape() as tape:
        features, probs = probe(x, training=False)
        score = probs[:, 0] if probs.shape[-1] == 1 else 1.0 - probs[:, negative_index]
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1))[0]
    cam = tf.image.resize(cam[..., None], pixels.shape, method="bilinear")[..., 0].numpy()
    peak = float(cam.max())
    return (cam / peak if peak > 0 else cam).astype(np.float32)


def overlay_image(pixels: np.ndarray, cam: np.ndarray, probability: float, title: str) -> Image.Image:
    """The X-ray beside its Grad-CAM overlay, drawn like :mod:`cxr_edge.explain`'s figures."""
    legend = "Grad-CAM: colour = weight of the evidence (1 = strongest)"
    caption = [title, f"P(pneumonia) {probability:.3f}; {legend}"]
    return explain.figure(pixels, cam, caption)


def save_overlays(
    model: keras.Model,
    items: Iterable[tuple[str, np.ndarray]],
    out_dir: str | Path,
    layer_name: str | None = None,
    negative_index: int = 0,
) -> list[Path]:
    """Write ``<name>.gradcam.png`` for each (name, uint8 pixels) into ``out_dir``; returns the paths.

    ``train`` calls it with the validation images it got wrong (false positives and false
    negatives at the chosen threshold), so a run folder shows what misled the model.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = list(items)
    written = []
    for (name, pixels), filename in zip(items, explain.output_names([n for n, _ in items], kind="gradcam")):
        probs = model(pixels[None, ..., None].astype(np.float32), training=False).numpy()[0]
        probability = float(probs[0] if probs.shape[-1] == 1 else 1.0 - probs[negative_index])
        cam = gradcam(model, pixels, layer_name=layer_name, negative_index=negative_index)
        path = out / filename
        overlay_image(pixels, cam, probability, f"{name} ({model.name})").save(path)
        written.append(path)
    return written


def misclassified(
    names: Sequence[str], y_true: Sequence[int], score: Sequence[float], threshold: float
) -> dict[str, list[str]]:
    """Names of the false positives and false negatives at ``threshold`` (flagged = score >= it)."""
    flagged = np.asarray(score) >= threshold
    truth = np.asarray(y_true).astype(bool)
    return {
        "false_positives": [n for n, f, t in zip(names, flagged, truth) if f and not t],
        "false_negatives": [n for n, f, t in zip(names, flagged, truth) if t and not f],
    }
