"""Probabilities from a Keras model, by the edge's own rule (:mod:`cxr_edge.decision`).

The positive score is :func:`cxr_edge.decision.positive_probability`, 1 - P(negative label): the
probability of anything but the negative class, for binary and subtype tasks alike
(``val_predictions.csv``'s ``score`` column and the robustness scorer).
"""

from __future__ import annotations

import numpy as np

from cxr_edge import decision

NEGATIVE_INDEX = 0  # a run's labels start with its negative one (run.json's negative_label)


def predict(model, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Per-class probabilities (N, n_labels) from a model with 1 sigmoid or n softmax outputs."""
    from train import pipeline  # lazy: pipeline imports TensorFlow; measurements load this module without it

    out = np.asarray(model.predict(pipeline.images_only(pixels, batch_size), verbose=0), dtype=np.float64)
    return decision.label_probabilities(out, decision.task_of(out.shape[1]))
