"""The model's last dense layer, recomputed in float from its features: a score that ranks.

The int8 file's output has 256 steps: over 200 full-size films the shipped model gave 19
distinct probabilities, and 82 of 97 flagged films tied at 0.99609375, so "most suspicious
first" was alphabetical among them. The features output (see :mod:`cxr_edge.gate`) holds
what the last layer reads; the same layer's weights, dequantized, give the score before
the output's rounding (200 distinct scores on those films, within 0.012 of the
probability). The decision stays with the model's own output: this score only orders.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

HEAD_SUFFIX = ".head.npz"  # the head's own file beside NAME.tflite (manifest record ``head``, schema 5)
ARRAYS = ("head_weights", "head_bias")


@dataclasses.dataclass(frozen=True)
class Head:
    weights: np.ndarray  # (outputs, D), dequantized from the file's int8 weights
    bias: np.ndarray  # (outputs,)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """The last layer before its activation (N, outputs), in float64: unlike the outputs, they
        never saturate (occlusion heatmaps measure on them, :mod:`cxr_edge.explain`)."""
        return np.asarray(features, dtype=np.float64) @ self.weights.T + self.bias

    def outputs(self, features: np.ndarray) -> np.ndarray:
        """What the model's output would be without its last rounding (N, outputs): sigmoid for one
        output, softmax for several, as the file's own last op."""
        logits = self.logits(features)
        if logits.shape[1] == 1:
            return 1.0 / (1.0 + np.exp(-logits))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "Head | None":
        """The head stored beside a gate's arrays, or None in a file without one."""
        if not all(name in arrays for name in ARRAYS):
            return None
        head = cls(np.asarray(arrays["head_weights"], np.float64), np.asarray(arrays["head_bias"], np.float64))
        if head.weights.ndim != 2 or head.bias.shape != (head.weights.shape[0],):
            raise ValueError(f"head arrays disagree: weights {head.weights.shape}, bias {head.bias.shape}")
        return head

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays :meth:`from_arrays` reads (stored in the gate's file, or the head's own)."""
        return {"head_weights": self.weights, "head_bias": self.bias}

    def save(self, path: Path) -> None:
        """Write the head's own file, so a bundle can carry a head without re-fitting its gate."""
        with open(path, "wb") as fh:
            np.savez(fh, **self.to_arrays())

    @classmethod
    def load(cls, path: Path) -> "Head":
        with np.load(path, allow_pickle=False) as npz:
            head = cls.from_arrays({name: npz[name] for name in npz.files})
        if head is None:
            raise ValueError(f"a head file needs the arrays {', '.join(ARRAYS)}")
        return head
