"""The out-of-distribution gate: refuse what is not an upright frontal chest film.

A screener trained on frontal pediatric chest films answers confidently for anything, a
hand, a document or a film scanned sideways included. The gate reads the model's own
pooled features (a second output of the ``.tflite``, so it costs no extra inference) and
applies two tests, each with a cut-off chosen on validation films:

* **distance**: the squared Mahalanobis distance of the features from those of the
  training films (Ledoit-Wolf covariance, stored as a whitening matrix). Far from every
  frontal chest film means the model has not seen anything like it, whatever it is: this
  test does not depend on having seen hands, knees or CT slices.
* **orientation probe**: a linear classifier on the same features that tells an upright
  film from the same film turned 90/180/270 degrees, inverted (negative), cut to a corner,
  or a foreign picture. Those sit closer to real films than a hand does, and the probe
  names what to do ("rotate the film").

Numbers only (numpy): it runs on a Pi. :mod:`convert.gate` fits it; the arrays live in a
``.gate.npz`` beside the model, whose sha256 the manifest records.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from cxr_edge.head import Head

UPRIGHT = "upright"
GATE_SUFFIX = ".gate.npz"  # the arrays' file beside NAME.tflite
ARRAYS = ("mean", "whitening", "probe_mean", "probe_scale", "probe_weights", "probe_bias")

# What a technician should do, by the probe's most likely kind of wrong input.
ADVICE = {
    "rotated_90": "the film looks turned 90 degrees: rotate it upright and scan or export it again",
    "rotated_270": "the film looks turned 90 degrees: rotate it upright and scan or export it again",
    "rotated_180": "the film looks upside down: rotate it upright and scan or export it again",
    "inverted": "the film looks inverted (bones dark, air bright): export it with the normal display, "
                "or check the DICOM's Photometric Interpretation",
    "corner_crop": "the film looks cut to a part of the chest: use the whole film",
}
NOT_A_CHEST_FILM = ("does not look like a frontal chest X-ray (a film of another body part, a lateral view, "
                    "another kind of scan, a photo or a document?)")
CHECK_FILE = "check that the file is a frontal (PA/AP) chest X-ray"
ADVICE["foreign"] = f"{NOT_A_CHEST_FILM}; {CHECK_FILE}"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the gate measured on one image, and whether it let the image through."""

    distance: float
    p_upright: float
    likeliest: str  # the probe's most likely class
    reason: str = ""  # empty when the image passes

    @property
    def passed(self) -> bool:
        return not self.reason


@dataclasses.dataclass(frozen=True)
class Gate:
    """Statistics and cut-offs of one model's gate (see the module docstring)."""

    mean: np.ndarray  # (D,) mean feature of the training films
    whitening: np.ndarray  # (D, D): distance = |whitening @ (f - mean)|^2
    probe_mean: np.ndarray  # (D,) standardisation before the probe
    probe_scale: np.ndarray  # (D,)
    probe_weights: np.ndarray  # (K, D)
    probe_bias: np.ndarray  # (K,)
    probe_classes: tuple[str, ...]  # K names, one of them UPRIGHT
    max_distance: float
    min_upright: float

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row of ``features`` (N, D) from the training films."""
        centred = np.asarray(features, dtype=np.float64) - self.mean
        return np.sum((centred @ self.whitening.T) ** 2, axis=1)

    def probe(self, features: np.ndarray) -> np.ndarray:
        """The probe's class probabilities (N, K)."""
        z = (np.asarray(features, dtype=np.float64) - self.probe_mean) / self.probe_scale
        logits = z @ self.probe_weights.T + self.probe_bias
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def check(self, features: np.ndarray) -> list[Verdict]:
        """One :class:`Verdict` per row of ``features`` (N, D)."""
        distances = self.distance(features)
        probs = self.probe(features)
        upright = probs[:, self.probe_classes.index(UPRIGHT)]
        return [self._verdict(float(d), float(u), p) for d, u, p in zip(distances, upright, probs)]

    def _verdict(self, distance: float, p_upright: float, probs: np.ndarray) -> Verdict:
        """The reason names the fix when the probe recognises a turned, inverted or cropped film
        (often also far in distance); otherwise what was measured against which cut-off."""
        wrong = [(p, c) for p, c in zip(probs, self.probe_classes) if c != UPRIGHT]
        likeliest = max(wrong)[1] if p_upright < self.min_upright else UPRIGHT
        probe = f"(upright-film score {p_upright:.2f}, cut-off {self.min_upright:.2f})"
        reason = ""
        if likeliest not in (UPRIGHT, "foreign"):
            reason = f"not screened: {ADVICE[likeliest]} {probe}"
        elif distance > self.max_distance:
            reason = (f"not screened: {NOT_A_CHEST_FILM}; its features lie at distance {distance:.0f} from the "
                      f"training films' (cut-off {self.max_distance:.0f}); {CHECK_FILE}")
        elif likeliest == "foreign":
            reason = f"not screened: {ADVICE['foreign']} {probe}"
        return Verdict(distance, p_upright, likeliest, reason)

    def save(self, path: Path, extra: dict[str, np.ndarray] | None = None) -> None:
        """Write the arrays, and ``extra`` ones beside them (the model's head: :mod:`cxr_edge.head`);
        the cut-offs and class names go in the manifest."""
        with open(path, "wb") as fh:
            np.savez(fh, **{name: getattr(self, name) for name in ARRAYS}, **(extra or {}))

    @classmethod
    def load(cls, path: Path, record: dict[str, Any]) -> tuple["Gate", Head | None]:
        """The gate of ``path`` with the manifest's ``gate`` record (cut-offs, class names), and the
        model's head when the file holds it."""
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        values = {name: np.asarray(arrays[name], dtype=np.float64) for name in ARRAYS}
        gate = cls(**values, probe_classes=tuple(record["probe_classes"]),
                   max_distance=float(record["max_distance"]), min_upright=float(record["min_upright"]))
        gate._check_shapes()
        return gate, Head.from_arrays(arrays)

    def _check_shapes(self) -> None:
        d = self.mean.shape[0]
        k = len(self.probe_classes)
        if self.whitening.shape != (d, d) or self.probe_weights.shape != (k, d) or self.probe_bias.shape != (k,):
            raise ValueError(f"gate arrays disagree: {d} features, whitening {self.whitening.shape}, "
                             f"probe {self.probe_weights.shape} for {k} classes")
        if UPRIGHT not in self.probe_classes:
            raise ValueError(f"probe classes {self.probe_classes} lack {UPRIGHT!r}")
