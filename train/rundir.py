"""The run folder: what ``python -m train fit`` leaves and ``python -m convert RUN`` reads.

One module owns its file names, how each file is written and read back, the split it
records and the fingerprint of its validation patients, so the two sides cannot drift
apart (``convert`` imports nothing else of ``train``). The format is described in
``docs/DEVELOPING.md``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from cxr_edge import decision
from train import data
from train.config import RunConfig
from train.predict import NEGATIVE_INDEX

RUN_FILE = "run.json"  # config, labels, contract, command, versions; each step adds its record
MODEL_FILE = "model.keras"  # the best epoch's Keras model
PREDICTIONS_FILE = "val_predictions.csv"  # one row per validation image: file, patient, label, target, score, p_<label>
SPLIT_FILE = "split.csv"  # every image: file, patient, label, subtype, official_split, side (train|val)
SUMMARY_FILE = "data_summary.json"  # counts per class and side, image sizes, unparsed names
METRICS_FILE = "metrics.json"  # validation metrics and the chosen threshold (written by train.report)
HISTORY_FILE = "history.csv"  # one row per epoch (written by train.fit; read by the report and its curves)
MONITOR = "val_auc"  # the history column that picks the best epoch
STATE_FILE = "train_state.json"  # epoch, best score and patience, for --resume
BEST_MODEL = "best.keras"  # the best epoch so far (copied to MODEL_FILE at the end)
LAST_MODEL = "last.keras"  # the last finished epoch, where --resume starts
ROBUSTNESS_FILE = "robustness.json"  # train.robustness's measurement (quoted by the card and the comparison)
ROBUSTNESS_MD = "robustness.md"  # the same for people


class Threshold(NamedTuple):
    """The operating point ``train evaluate`` chose on validation (``metrics.json``'s ``threshold``):
    what the run's bundles ship, its comparison row shows and its robustness is measured at."""

    value: float
    rule: str

    @classmethod
    def from_metrics(cls, metrics: dict) -> Threshold:
        """The threshold of a ``metrics.json`` already read (for callers that need more of it)."""
        return cls(float(metrics["threshold"]["value"]), metrics["threshold"]["rule"])


def load_threshold(run_dir: Path) -> Threshold:
    """A finished run's threshold, from its ``metrics.json``."""
    return Threshold.from_metrics(json.loads((Path(run_dir) / METRICS_FILE).read_text()))


def load_run(run_dir: Path) -> tuple[RunConfig, dict]:
    """The config and full record of a finished or running run."""
    record = json.loads((Path(run_dir) / RUN_FILE).read_text())
    record["config"].setdefault("jpeg_augment", False)  # runs from before the option trained without it
    record["config"].setdefault("reencode_jpeg", None)  # and before contract 2
    return RunConfig(**record["config"]), record


def split_patients(run_dir: Path, side: str) -> set[str]:
    """The patients on one ``side`` (train or val) of a run's recorded split."""
    with (Path(run_dir) / SPLIT_FILE).open(newline="") as fh:
        return {row["patient"] for row in csv.DictReader(fh) if row["side"] == side}


def fingerprint(patients: Iterable[str]) -> str:
    """A short hash of a set of patient ids: equal exactly when the sets are."""
    return hashlib.sha256("\n".join(sorted(set(patients))).encode()).hexdigest()[:16]


def validation_fingerprint(run_dir: Path) -> str:
    """The fingerprint of a run's validation patients, as every bundle of the run records it."""
    return fingerprint(split_patients(run_dir, "val"))


def seeded_split(root: Path, val_fraction: float, seed: int,
                 val_patients: Path | None = None) -> dict[str, list[data.Record]]:
    """The images under ``root`` by side (train, val) as ``fit`` splits them by patient: from ``seed`` and
    ``val_fraction``, or from the patient list it validated on (``fit --val-patients``, e.g. ``python -m train
    shift``'s): a run's split remade when only its bundle is left. A list that does not fit the data raises
    ``ValueError``."""
    records, _ = data.scan(Path(root))
    try:
        train_idx, val_idx = (data.split_by_list(records, data.read_val_patients(val_patients), val_patients)
                              if val_patients else data.patient_split(records, val_fraction, seed))
    except data.DataError as exc:
        raise ValueError(str(exc)) from exc
    return {"train": [records[i] for i in train_idx], "val": [records[i] for i in val_idx]}


def write_split(path: Path, records, val: set[int], root: Path) -> None:
    """split.csv: every record, its patient and labels, and its side (``val`` for indices in ``val``)."""
    lines = ["file,patient,label,subtype,official_split,side"]
    for i, rec in enumerate(records):
        lines.append(f"{rec.path.relative_to(root)},{rec.patient},{rec.label},{rec.subtype},{rec.split},"
                     f"{'val' if i in val else 'train'}")
    path.write_text("\n".join(lines) + "\n")


def split_records(run_dir: Path) -> dict[str, list[data.Record]]:
    """A run's images by side (train, val), in the order its split.csv lists them."""
    cfg, _ = load_run(run_dir)
    root = Path(cfg.data)
    records, _ = data.scan(root)
    by_file = {str(r.path.relative_to(root)): r for r in records}
    sides: dict[str, list[data.Record]] = {"train": [], "val": []}
    with (Path(run_dir) / SPLIT_FILE).open(newline="") as fh:
        for row in csv.DictReader(fh):
            sides[row["side"]].append(by_file[row["file"]])
    return sides


def write_predictions(path: Path, probs: np.ndarray, records: Sequence[data.Record], root: Path,
                      labels: Sequence[str], task: str) -> None:
    """``val_predictions.csv``: per image its file, patient, label and target, the positive score and
    each class probability (what ``train evaluate``, ``train report`` and ``train select`` read)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "patient", "label", "target", "score", *(f"p_{label}" for label in labels)])
        for rec, score, p in zip(records, decision.positive_probability(probs, NEGATIVE_INDEX), probs):
            target = rec.target(task)
            writer.writerow([rec.path.relative_to(root), rec.patient, labels[target], target,
                             repr(float(score)), *(repr(float(v)) for v in p)])


def now() -> str:
    """UTC now, as run.json records its times."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_run_json(cfg: RunConfig, out: Path, extra: dict) -> None:
    """run.json: config, labels, contract, command, versions, plus whatever each step adds."""
    path = out / RUN_FILE
    record = json.loads(path.read_text()) if path.exists() else {}
    record.update({
        "config": dataclasses.asdict(cfg),
        "task": decision.task_of(cfg.n_outputs),
        "labels": list(cfg.labels),
        "negative_label": cfg.labels[0],
        "preprocessing": cfg.contract.to_manifest(),
        "input_shape": [1, cfg.size, cfg.size, 1],
        "seed": cfg.seed,
        "command": cfg.command(),
        "argv": sys.argv,
        "versions": package_versions(),
    })
    record.update(extra)
    path.write_text(json.dumps(record, indent=1))


def package_versions() -> dict[str, str]:
    import keras  # lazy: reading a run folder (as convert and the edge tools do) needs no TensorFlow
    import tensorflow as tf

    import cxr_edge

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "cxr_edge": cxr_edge.__version__, "platform": platform.platform(),
            "cpu_count": str(os.cpu_count())}
