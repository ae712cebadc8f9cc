"""Where a conversion's model, meaning and images come from: a training run, or a bare file.

A training run folder (``python -m train fit``) records everything a bundle must carry:
labels, task and contract (``run.json``), the validation-chosen threshold and metrics
(``metrics.json``), the data summary, and the patient-grouped split (``split.csv``) whose
train side feeds calibration and whose validation side (``val_predictions.csv``) is the
default parity set. A bare ``.keras`` file needs those given on the command line instead.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from convert.bundles import DEFAULT_VERSION, ModelSpec
from convert.errors import ConvertError
from cxr_edge import decision
from cxr_edge.review.labelled import Truth
from cxr_edge.preprocess import Contract
from train.rundir import (METRICS_FILE, MODEL_FILE, PREDICTIONS_FILE, RUN_FILE, SPLIT_FILE, SUMMARY_FILE, Threshold,
                          fingerprint, seeded_split, validation_fingerprint)

DEFAULT_NAMES = {"binary": "pneumonia", "multiclass": "subtype"}


@dataclasses.dataclass
class Source:
    """What :class:`convert.pipeline.Job` needs from a run (images as (path, class) / (path, Truth))."""

    keras_path: Path
    spec: ModelSpec
    calib_samples: list[tuple[str, str]]
    calib_source: str
    parity_samples: list[tuple[str, Truth]]
    parity_source: str


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConvertError(f"{path} is missing: is {path.parent} a finished training run?") from exc
    except (OSError, ValueError) as exc:
        raise ConvertError(f"{path}: unreadable ({exc})") from exc


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError as exc:
        raise ConvertError(f"{path} is missing: is {path.parent} a finished training run?") from exc


def data_root(record: dict[str, Any], given: str | Path | None) -> Path:
    """The dataset folder the run's split names: ``--data``, else the run's own, else $CXR_DATA."""
    candidates = [given, record["config"].get("data"), os.environ.get("CXR_DATA")]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    raise ConvertError(f"dataset folder of the run not found (tried {[c for c in candidates if c]}): "
                       "give it with --data or $CXR_DATA")


def remade_split(data: Path, val_fraction: float, seed: int, expected: str | None,
                 val_patients: Path | None = None) -> tuple[list[str], list[str]]:
    """(training side, validation side) files of a bundle's run, its patient split remade from its seed (or
    from the patient list it validated on) and checked against ``expected``, the validation fingerprint its
    manifest records (when it does)."""
    try:
        sides = seeded_split(data, val_fraction, seed, val_patients)
    except ValueError as exc:
        raise ConvertError(str(exc)) from exc
    found = fingerprint(r.patient for r in sides["val"])
    if expected and found != expected:
        made = f"the list {val_patients}" if val_patients else f"seed {seed} and fraction {val_fraction}"
        raise ConvertError(f"the split remade from {made} has validation patients {found}, the bundle's run had "
                           f"{expected}: give the run's --seed and --val-fraction, or its --val-patients")
    return [str(r.path) for r in sides["train"]], [str(r.path) for r in sides["val"]]


def split_source(data: Path, seed: int, val_fraction: float, val_patients: Path | None) -> str:
    """How a bundle's validation films were split, for its manifest."""
    if val_patients:
        return f"patient split of {data.name} (validation patients listed in {val_patients.name})"
    return f"patient split of {data.name} (seed {seed}, validation fraction {val_fraction})"


def from_run(run_dir: Path, name: str | None = None, data: str | Path | None = None,
             version: str = DEFAULT_VERSION) -> Source:
    """Everything a conversion needs from a training run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConvertError(f"{run_dir}: not a training run folder (give a run folder or a .keras file)")
    record = _read_json(run_dir / RUN_FILE)
    summary = _read_json(run_dir / METRICS_FILE)
    split = _read_csv(run_dir / SPLIT_FILE)
    task, labels = record["task"], tuple(record["labels"])
    threshold = Threshold.from_metrics(summary)
    spec = ModelSpec(
        name=name or DEFAULT_NAMES[task], task=task, labels=labels, negative_label=record.get("negative_label"),
        threshold=threshold.value, threshold_rule=threshold.rule,
        contract=Contract.from_manifest(record["preprocessing"]), version=version,
        dataset=_read_json(run_dir / SUMMARY_FILE) if (run_dir / SUMMARY_FILE).exists() else {},
        metrics={key: summary.get(key) for key in ("split", "at_threshold", "ci95_at_threshold", "calibration",
                                                    "bacterial_vs_viral") if summary.get(key) is not None},
        training_run={"folder": run_dir.name, "command": record.get("command"), "seed": record.get("seed"),
                      "arch": record["config"].get("arch"), "parameters": record.get("parameters"),
                      "best_epoch": record.get("best_epoch"), "versions": record.get("versions"),
                      "validation_patients": validation_fingerprint(run_dir)},
    )
    root = data_root(record, data)
    class_column = "label" if task == "binary" else "subtype"
    calib = [(str(root / row["file"]), row[class_column]) for row in split if row["side"] == "train"]
    negative = spec.negative_label
    parity_rows = _read_csv(run_dir / PREDICTIONS_FILE)
    parity = [(str(root / row["file"]), Truth(positive=row["label"] != negative, label=row["label"]))
              for row in parity_rows]
    return Source(run_dir / MODEL_FILE, spec, calib, f"training side of {run_dir / SPLIT_FILE}",
                  parity, f"validation split of {run_dir.name} ({PREDICTIONS_FILE})")


def from_keras_file(path: Path, labels: tuple[str, ...], threshold: float, contract: Contract,
                    name: str | None = None, version: str = DEFAULT_VERSION) -> Source:
    """A bare ``.keras`` file: its meaning from the command line, images from --calib-dir/--parity-dir."""
    if len(labels) < 2:
        raise ConvertError(f"--labels needs at least two labels (negative first), got {list(labels)}")
    if not 0.0 <= threshold <= 1.0:
        raise ConvertError(f"--threshold must lie in 0..1, got {threshold}")
    task = decision.task_of(decision.output_width(labels))
    spec = ModelSpec(name=name or DEFAULT_NAMES[task], task=task, labels=labels, threshold=threshold,
                     contract=contract, version=version, training_run={"model_file": Path(path).name})
    return Source(Path(path), spec, [], "", [], "")
