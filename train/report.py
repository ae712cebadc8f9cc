"""Everything a finished run reports about itself, from its validation predictions.

The numbers come from :mod:`cxr_edge.review.evaluate` / :mod:`cxr_edge.review.metrics`, the code
``cxr-edge evaluate`` runs on a device, so a run's card and a clinic's own check of the
shipped bundle are computed the same way. Can be re-run: ``python -m train evaluate RUN``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_edge import decision
from cxr_edge.review import metrics
from cxr_edge.bundle import Bundle, sha256_file
from cxr_edge.engine import OK, Result
from cxr_edge.review.evaluate import Evaluation, format_table
from cxr_edge.review.labelled import Truth
from train import card, plots
from train.config import RunConfig
from train.rundir import (HISTORY_FILE, METRICS_FILE, MODEL_FILE, MONITOR, PREDICTIONS_FILE, RUN_FILE, Threshold,
                          load_run)

REPORT_FILE = "classification_report.txt"
N_BOOT = 1000


def threshold_rule(target: float) -> str:
    return f"highest specificity at sensitivity >= {target:g} on validation"


def run_rule(record: dict, threshold: float) -> decision.Rule:
    """The run's decision rule at ``threshold``: the one the edge applies (:mod:`cxr_edge.decision`)."""
    return decision.Rule(labels=tuple(record["labels"]), negative_label=record["negative_label"],
                         threshold=threshold, task=record["task"])


def run_bundle(run_dir: Path, cfg: RunConfig, record: dict, threshold: float) -> Bundle:
    """A Bundle describing the float Keras model, for the evaluation's model id, quantization and contract."""
    model_path = run_dir / MODEL_FILE
    return Bundle(
        name=Path(cfg.out).name, task=record["task"], labels=tuple(record["labels"]),
        negative_label=record["negative_label"], threshold=threshold, contract=cfg.contract,
        input_shape=tuple(record["input_shape"]), input_dtype="float32", quantization="float32 (keras)",
        model_path=model_path, sha256=sha256_file(model_path), manifest_path=run_dir / RUN_FILE, manifest=record,
    )


def evaluation(run_dir: Path, threshold: float | None = None) -> Evaluation:
    """The validation predictions as a :class:`cxr_edge.review.evaluate.Evaluation`.

    Without ``threshold``, the one chosen on these predictions by the run's target
    sensitivity (the threshold that ships in the bundle).
    """
    cfg, record = load_run(run_dir)
    frame = pd.read_csv(run_dir / PREDICTIONS_FILE)
    labels = record["labels"]
    probs = frame[[f"p_{label}" for label in labels]].to_numpy()
    y = (frame["target"].to_numpy() != 0).astype(int)
    score = frame["score"].to_numpy()
    if threshold is None:
        threshold = metrics.threshold_for_sensitivity(y, score, cfg.target_sensitivity)
    bundle = run_bundle(run_dir, cfg, record, threshold)
    decided = decision.decide_labels(run_rule(record, threshold), probs)
    results = [Result(path=f, display=f, status=OK, prediction=pred, probability=float(s),
                      label_probs=tuple(float(p) for p in row))
               for f, pred, s, row in zip(frame["file"], decided, score, probs)]
    truths = [Truth(positive=bool(t), label=label) for t, label in zip(y, frame["label"])]
    ev = Evaluation(bundle=bundle, data_dir=cfg.data, threshold=threshold,
                    threshold_source=threshold_rule(cfg.target_sensitivity), truths=truths,
                    results=results, target_sensitivity=cfg.target_sensitivity, n_boot=N_BOOT)
    ev.patients = frame["patient"].to_numpy()
    ev.intervals = patient_intervals(ev, threshold)  # replaces the per-image bootstrap everywhere
    return ev


def patient_intervals(ev: Evaluation, threshold: float) -> dict[str, tuple[float, float]]:
    """Bootstrap 95% intervals resampling patients: a child's several films are not independent."""
    return metrics.bootstrap_ci(ev.y_true, ev.score, threshold, n_boot=N_BOOT, groups=ev.patients)


def per_class_report(ev: Evaluation) -> dict:
    """Precision/recall/F1/support per class at the chosen threshold (binary: NORMAL and PNEUMONIA)."""
    if ev.multiclass:
        return ev.multiclass
    predicted = (ev.score >= ev.threshold).astype(int)
    return metrics.multiclass_metrics(ev.y_true, predicted, list(ev.bundle.labels))


def bacterial_vs_viral(ev: Evaluation) -> dict | None:
    """Among pneumonia images of a subtype model: accuracy of BACTERIAL vs VIRAL by the larger probability."""
    labels = list(ev.bundle.labels)
    if "BACTERIAL" not in labels or "VIRAL" not in labels:
        return None
    b, v = labels.index("BACTERIAL"), labels.index("VIRAL")
    rows = [(r.label_probs, t.label) for r, t in zip(ev.results, ev.truths) if t.label in ("BACTERIAL", "VIRAL")]
    if not rows:
        return None
    correct = [("BACTERIAL" if p[b] >= p[v] else "VIRAL") == label for p, label in rows]
    return {"n": len(rows), "accuracy": float(np.mean(correct))}


def history_summary(run_dir: Path) -> dict:
    """Epochs run, the best epoch and its validation loss from history.csv."""
    history = pd.read_csv(run_dir / HISTORY_FILE)
    best = int(history[MONITOR].idxmax())
    return {"epochs_run": len(history), "best_epoch": best + 1,
            "val_loss": float(history["val_loss"][best]), "val_auc_keras": float(history[MONITOR][best]),
            "train_loss": float(history["loss"][best])}


def build_metrics(run_dir: Path, ev: Evaluation) -> dict:
    """metrics.json: validation metrics at the chosen threshold and at 0.5, each with 95% CIs."""
    cfg, record = load_run(run_dir)

    return metrics.finite_or_none({
        "split": f"patient-grouped validation carved from train ({len(ev.y_true)} images); "
                 "optimistic: the official test split differs in acquisition and class mix",
        "task": cfg.task,
        "labels": record["labels"],
        "loss": history_summary(run_dir),
        "threshold": Threshold(ev.threshold, threshold_rule(cfg.target_sensitivity))._asdict(),
        "at_threshold": ev.binary,
        "ci95_at_threshold": {k: list(v) for k, v in ev.intervals.items()},
        "at_0.5": metrics.binary_metrics(ev.y_true, ev.score, 0.5),
        "ci95_at_0.5": {k: list(v) for k, v in patient_intervals(ev, 0.5).items()},
        "bootstrap": {"n_boot": N_BOOT, "level": 0.95, "resampled": "patients (all films of a patient together)"},
        "calibration": {"brier": metrics.brier_score(ev.y_true, ev.score),
                        "ece": metrics.expected_calibration_error(ev.y_true, np.clip(ev.score, 0, 1))},
        "per_class": per_class_report(ev),
        "bacterial_vs_viral": bacterial_vs_viral(ev),
    })


def report_text(ev: Evaluation, summary: dict) -> str:
    """The human-readable classification report (the evaluate table plus the per-class rows)."""
    lines = [format_table(ev), "", "per class at the chosen threshold:",
             f"{'class':<12} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}"]
    for label, row in summary["per_class"]["per_class"].items():
        cells = [f"{row[k]:.3f}" if row[k] is not None else "n/a" for k in ("precision", "recall", "f1")]
        lines.append(f"{label:<12} {cells[0]:>9} {cells[1]:>7} {cells[2]:>6} {row['support']:>8}")
    if summary.get("bacterial_vs_viral"):
        bv = summary["bacterial_vs_viral"]
        lines.append(f"\nbacterial vs viral among pneumonia images: accuracy {bv['accuracy']:.3f} (n={bv['n']})")
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | Path, log=print) -> dict:
    """Write metrics.json, the classification report, plots and model_card.md into ``run_dir``."""

    run_dir = Path(run_dir)
    ev = evaluation(run_dir)
    summary = build_metrics(run_dir, ev)
    (run_dir / METRICS_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    text = report_text(ev, summary)
    (run_dir / REPORT_FILE).write_text(text)
    plots.write_all(run_dir, ev)
    card.write_card(run_dir)
    log(text)
    return summary
