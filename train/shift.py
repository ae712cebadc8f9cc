"""A validation split that sees acquisition shift: hold out the patients whose films look
like the other class's acquisition.

Why: on the official test split the shipped model kept its sensitivity but its specificity
fell from 0.996 (random-patient validation) to 0.838, and no figure computed from the
training split saw it coming. The training films carry an acquisition cue that a random
patient split cannot expose: the publisher's normals are large sharp originals, its
pneumonia films small soft ones (full-resolution medians 1654x1357 against 1168x776 px),
and after the squash to 224 px the **sharpness** of a film alone (mean absolute difference
of horizontally adjacent grey levels, read through the shared preprocessing contract)
ranks pneumonia above normal with AUC 0.85 on the 5,232 training films, its JPEG size with
0.90. A model can lean on that cue and still score 0.999 on a random split, where the cue
holds on both sides.

This split holds out, per stratum (a patient's most common subtype, as in
:func:`train.data.patient_split`), the patients whose mean sharpness is most typical of
the *other* class: the softest normals and the sharpest pneumonia films, until each
stratum gives ``fraction`` of its images. Training then sees the cue at its strongest and
validation sees it reversed, so a recipe that relies on acquisition instead of anatomy
loses here. It is deterministic (no seed): every recipe is judged on the same films.
It is a stress test, not an estimate of any clinic's figures.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from train import data

VAL_PATIENTS_FILE = "val_patients.txt"
SHIFT_FILE = "shift.json"
RULE = ("per stratum (patient's most common subtype), hold out the patients whose mean film sharpness is most "
        "typical of the other class (softest NORMAL, sharpest PNEUMONIA) until the stratum gives the fraction of "
        "its images")


def sharpness(pixels: np.ndarray) -> np.ndarray:
    """Per film: mean absolute difference of horizontally adjacent grey levels (N, H, W uint8)."""
    return np.abs(np.diff(pixels.astype(np.int16), axis=2)).mean(axis=(1, 2))


def shift_split(records: Sequence[data.Record], cue: np.ndarray, fraction: float) -> tuple[list[int], list[int]]:
    """Indices (train, val): whole patients, the least typical of their class's acquisition held out."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
    by_patient, strata = data.patient_strata(records)
    val: list[int] = []
    for stratum, patients in sorted(strata.items()):
        sign = 1.0 if stratum == "NORMAL" else -1.0  # normals: softest first; pneumonia: sharpest first
        patients = sorted(patients, key=lambda p: (sign * float(cue[by_patient[p]].mean()), p))
        val.extend(data.take_share(patients, by_patient, fraction))
    return data.complement(len(records), val)


def cue_auc(records: Sequence[data.Record], cue: np.ndarray, idx: Sequence[int]) -> float | None:
    """How well softness alone ranks PNEUMONIA above NORMAL among ``idx`` (0.5: no cue)."""
    from sklearn.metrics import roc_auc_score  # lazy: training side only

    y = np.array([records[i].label == "PNEUMONIA" for i in idx])
    return float(roc_auc_score(y, -cue[np.asarray(idx)])) if 0 < y.sum() < len(y) else None


def describe(records: Sequence[data.Record], cue: np.ndarray, train_idx: Sequence[int],
             val_idx: Sequence[int], fraction: float) -> dict:
    """What shift.json records: the rule, the sides' counts and what the cue does on each."""
    def side(idx: Sequence[int]) -> dict:
        by_label = {label: np.round(np.median(cue[[i for i in idx if records[i].label == label]]), 3).item()
                    for label in data.CLASS_DIRS if any(records[i].label == label for i in idx)}
        return {"images": len(idx), "patients": len({records[i].patient for i in idx}),
                "label": dict(sorted(Counter(records[i].label for i in idx).items())),
                "subtype": dict(sorted(Counter(records[i].subtype for i in idx).items())),
                "median_sharpness": by_label, "sharpness_auc": cue_auc(records, cue, idx)}

    return {"rule": RULE, "fraction": fraction, "cue": "sharpness: mean |horizontal grey-level difference| of "
            "the contract's pixels", "all": side(range(len(records))), "train": side(train_idx),
            "val": side(val_idx)}


def write(out: Path, records: Sequence[data.Record], val_idx: Sequence[int], summary: dict) -> Path:
    """``val_patients.txt`` (what ``fit --val-patients`` reads) and ``shift.json``; returns the former."""
    out.mkdir(parents=True, exist_ok=True)
    patients = sorted({records[i].patient for i in val_idx})
    (out / VAL_PATIENTS_FILE).write_text("".join(f"{p}\n" for p in patients))
    (out / SHIFT_FILE).write_text(json.dumps(summary, indent=1))
    return out / VAL_PATIENTS_FILE


def make(data_dir: Path, out: Path, fraction: float, contract, cache_dir: Path | None) -> dict:
    """Scan, decode (cached), split and write; returns the summary."""
    records, _ = data.scan(data_dir)
    pixels, _ = data.load_pixels(records, contract, cache_dir)
    cue = sharpness(pixels)
    train_idx, val_idx = shift_split(records, cue, fraction)
    summary = describe(records, cue, train_idx, val_idx, fraction)
    write(out, records, val_idx, summary)
    return summary
