"""experiments/subtype_head_probe.py: a dedicated bacterial-vs-viral head against a subtype run's own softmax."""

from __future__ import annotations

import csv
import json

import pytest


def test_a_dedicated_bacterial_vs_viral_head_is_compared_on_validation_pneumonias(subtype_run):
    from experiments import subtype_head_probe

    assert subtype_head_probe.main([str(subtype_run)]) == 0
    result = json.loads((subtype_run / subtype_head_probe.RESULT_FILE).read_text())
    split = list(csv.DictReader((subtype_run / "split.csv").open()))
    assert result["n_val"] == sum(row["side"] == "val" and row["label"] == "PNEUMONIA" for row in split)
    for reading in ("own_softmax", "dedicated_head"):
        assert set(result[reading]) == {"accuracy", "balanced_accuracy", "auc"}
        assert all(0.0 <= value <= 1.0 for value in result[reading].values())


def test_the_head_probe_refuses_a_binary_run(binary_run):
    from experiments import subtype_head_probe

    with pytest.raises(SystemExit, match="binary run"):
        subtype_head_probe.main([str(binary_run)])
