"""Probabilities from a Keras model, and the one rule that turns them into a positive score.

The score is 1 - P(first label): the probability of anything but the negative class, for
binary and subtype tasks alike (``val_predictions.csv``'s ``score`` column, the robustness
scorer, and the probes all read it here).
"""

from __future__ import annotations

import numpy as np


def predict(model, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Per-class probabilities (N, n_labels) from a model with 1 sigmoid or n softmax outputs."""
    from train import pipeline  # lazy: pipeline imports TensorFlow; measurements load this module without it

    out = np.asarray(model.predict(pipeline.images_only(pixels, batch_size), verbose=0), dtype=np.float64)
    return np.concatenate([1.0 - out, out], axis=1) if out.shape[1] == 1 else out


def positive_scores(probs: np.ndarray) -> np.ndarray:
    """1 - P(negative) for per-class probabilities (N, n_labels) as :func:`predict` returns them."""
    return 1.0 - np.asarray(probs)[:, 0]
