"""Distillation: an ensemble's probabilities as soft training targets for one small model.

Averaged models are steadier under acquisition shifts than any one of them, but cost
their sum on a Raspberry Pi. Training one student on a blend of the true labels and the
ensemble's probabilities (Hinton et al. 2015, "Distilling the knowledge in a neural
network") tries to keep the steadiness at one model's cost. The teachers are TFLite
bundles read by the edge's own interpreter, so the teacher is exactly the ensemble that
``python -m train robustness RUN --bundle A --bundle B`` measured. Their probabilities are
taken once, on the clean training images; the student sees those images augmented, so it
also learns to give the teacher's clean answer under shifts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Collection, Sequence

import numpy as np

from cxr_edge.bundle import Bundle, load_bundle
from cxr_edge.engine import Classifier
from train.leakage import check_bundle

if TYPE_CHECKING:
    from train.config import RunConfig


def bundle_probabilities(bundle: Bundle, pixels: np.ndarray) -> np.ndarray:
    """Per-label probabilities (N, n_labels) of one bundle for contract-ready uint8 images (N, H, W)."""
    return Classifier(bundle, threads=None).decide(pixels)[0].label_probs


def load_teachers(cfg: RunConfig, val_patients: Collection[str]) -> list[Bundle]:
    """The run's teacher bundles, checked against it and its validation patients (empty when not distilling)."""
    bundles = [load_bundle(spec) for spec in cfg.teacher]
    for bundle in bundles:
        check_bundle(bundle, cfg, val_patients, role="teacher")
    return bundles


def teacher_probabilities(bundles: Sequence[Bundle], pixels: np.ndarray) -> np.ndarray:
    """The teachers' mean per-label probabilities for contract-ready uint8 images (N, H, W)."""
    return np.mean([bundle_probabilities(b, pixels) for b in bundles], axis=0)


def blend(hard: np.ndarray, teacher: np.ndarray, weight: float) -> np.ndarray:
    """Training targets: (1 - weight) x true labels + weight x teacher probabilities.

    ``hard`` is what the loss wants ((N, 1) for a sigmoid, one-hot otherwise); ``teacher``
    holds per-label probabilities, of which a sigmoid model takes P(positive).
    """
    soft = teacher[:, 1:] if hard.shape[1] == 1 else teacher
    return ((1.0 - weight) * hard + weight * soft).astype(np.float32)
