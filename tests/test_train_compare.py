"""train.compare: several architectures trained the same way, in one table."""

from __future__ import annotations

import json

from conftest import train_cli


def test_compare_trains_each_architecture_and_writes_one_table(kermany, tmp_path):
    result = train_cli("compare", "--data", str(kermany), "--out", str(tmp_path), "--smoke", "--size", "48",
                       "--arch", "baseline", "--arch", "mobile", "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "comparison.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("run,arch")
    assert [r.split(",")[1] for r in rows[1:]] == ["baseline", "mobile"]
    baseline = json.loads((tmp_path / "baseline" / "run.json").read_text())["config"]
    assert baseline["augment"] is False and baseline["class_weights"] is False  # the seed projects' recipe
