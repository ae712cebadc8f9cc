"""train.report: a run's metrics.json (bootstrap intervals, threshold, subtypes) and ``python -m train evaluate``."""

from __future__ import annotations

import csv
import json
import shutil

from conftest import train_cli


def test_metrics_have_bootstrap_intervals_and_the_chosen_threshold(binary_run):
    summary = json.loads((binary_run / "metrics.json").read_text())
    assert summary["threshold"]["rule"] == "highest specificity at sensitivity >= 0.95 on validation"
    assert summary["at_threshold"]["sensitivity"] >= 0.95
    for name in ("accuracy", "precision", "f1", "specificity", "sensitivity", "auc", "balanced_accuracy"):
        lo, hi = summary["ci95_at_threshold"][name]
        assert lo <= summary["at_threshold"][name] <= hi, name
    assert {"NORMAL", "PNEUMONIA"} == set(summary["per_class"]["per_class"])
    assert summary["loss"]["val_loss"] > 0


def test_evaluate_without_a_pneumonia_fails_with_a_message_and_keeps_the_metrics(binary_run, tmp_path):
    run = shutil.copytree(binary_run, tmp_path / "run")
    predictions = run / "val_predictions.csv"
    rows = list(csv.DictReader(predictions.open()))
    with predictions.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "target": "0"} for row in rows)
    metrics_before = (run / "metrics.json").read_bytes()
    result = train_cli("evaluate", str(run))
    assert result.exit_code == 3 and "no positive samples" in result.output
    assert (run / "metrics.json").read_bytes() == metrics_before


def test_a_subtype_run_reports_three_classes_and_bacterial_vs_viral(subtype_run):
    summary = json.loads((subtype_run / "metrics.json").read_text())
    assert summary["labels"] == ["NORMAL", "BACTERIAL", "VIRAL"]
    assert set(summary["per_class"]["per_class"]) == {"NORMAL", "BACTERIAL", "VIRAL"}
    assert summary["bacterial_vs_viral"]["n"] > 0
