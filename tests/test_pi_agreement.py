"""The emulated Pi check's comparison (benchmarks/pi_agreement.py) on made-up reports: no root, no qemu."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import pi_agreement  # noqa: E402
from backend_agreement import read_report  # noqa: E402

THRESHOLD = 0.7
BINARY = ["path", "prediction", "probability", "threshold", "status", "error", "model"]
SUBTYPE = ["path", "prediction", "probability", "p_NORMAL", "p_BACTERIAL", "p_VIRAL", "threshold", "status", "error"]


def binary_row(path: str, p: float, status: str = "ok") -> dict[str, str]:
    if status != "ok":
        return {"path": path, "prediction": "", "probability": "", "threshold": str(THRESHOLD), "status": status,
                "error": "unreadable", "model": "pneumonia@0"}
    label = "PNEUMONIA" if p >= THRESHOLD else "NORMAL"
    return {"path": path, "prediction": label, "probability": repr(p), "threshold": str(THRESHOLD), "status": "ok",
            "error": "", "model": "pneumonia@0"}


def subtype_row(path: str, normal: float, bacterial: float, threshold: float = 0.4) -> dict[str, str]:
    viral = 1.0 - normal - bacterial
    p = 1.0 - normal
    label = ("BACTERIAL" if bacterial >= viral else "VIRAL") if p >= threshold else "NORMAL"
    return {"path": path, "prediction": label, "probability": repr(p), "p_NORMAL": repr(normal),
            "p_BACTERIAL": repr(bacterial), "p_VIRAL": repr(viral), "threshold": str(threshold), "status": "ok",
            "error": ""}


def by_path(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["path"]: row for row in rows}


def write_report(path: Path, rows: list[dict[str, str]], columns: list[str] = BINARY) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_identical_reports_agree_with_no_change() -> None:
    rows = by_path([binary_row("a.jpg", 0.1), binary_row("b.jpg", 0.9), binary_row("c.jpg", 0, "error")])
    result = pi_agreement.compare(rows, rows)
    assert (result.rows, result.same_status, result.same_decision, result.compared) == (3, 3, 3, 2)
    assert result.max_dp == 0.0 and not result.failed and result.near_threshold == []


def test_small_changes_name_the_films_that_close_to_the_threshold() -> None:
    reference = by_path([binary_row("far.jpg", 0.2), binary_row("near.jpg", 0.74), binary_row("x.jpg", 0.9)])
    other = by_path([binary_row("far.jpg", 0.25), binary_row("near.jpg", 0.73), binary_row("x.jpg", 0.9)])
    result = pi_agreement.compare(reference, other)
    assert result.max_dp == pytest.approx(0.05)
    assert result.near_threshold == ["near.jpg"] and result.same_decision == 3 and not result.failed


def test_a_flip_within_the_tolerance_is_listed_and_one_beyond_it_fails() -> None:
    reference = by_path([binary_row("edge.jpg", 0.71), binary_row("clear.jpg", 0.95)])
    near = pi_agreement.compare(reference, by_path([binary_row("edge.jpg", 0.69), binary_row("clear.jpg", 0.95)]))
    assert not near.failed and len(near.flips_near) == 1 and near.flips_near[0].startswith("edge.jpg: PNEUMONIA -> NORMAL")
    assert near.same_decision == 1
    far = pi_agreement.compare(reference, by_path([binary_row("edge.jpg", 0.71), binary_row("clear.jpg", 0.5)]))
    assert far.failed and far.disagreements[0].startswith("clear.jpg: PNEUMONIA -> NORMAL (0.2500")


def test_statuses_must_match_whatever_they_are() -> None:
    reference = by_path([binary_row("a.jpg", 0.1), binary_row("b.jpg", 0, "rejected"), binary_row("c.jpg", 0.9)])
    same = pi_agreement.compare(reference, dict(reference))
    assert not same.failed and same.same_decision == 3
    other = by_path([binary_row("a.jpg", 0, "error"), binary_row("b.jpg", 0.5), binary_row("d.jpg", 0.9)])
    result = pi_agreement.compare(reference, other)
    assert result.failed and result.same_status == 0 and result.rows == 4
    assert result.disagreements == ["a.jpg: status ok -> error", "b.jpg: status rejected -> ok",
                                    "c.jpg: only in the reference", "d.jpg: not in the reference"]


def test_a_multi_class_flip_is_measured_between_the_two_labels() -> None:
    reference = by_path([subtype_row("v.jpg", 0.1, 0.46)])  # bacterial 0.46, viral 0.44
    other = by_path([subtype_row("v.jpg", 0.1, 0.44)])  # bacterial 0.44, viral 0.46
    result = pi_agreement.compare(reference, other)
    assert reference["v.jpg"]["prediction"] == "BACTERIAL" and other["v.jpg"]["prediction"] == "VIRAL"
    assert not result.failed and "(0.0200 from the decision rule)" in result.flips_near[0]
    assert result.max_dp == pytest.approx(0.02)


def test_main_writes_the_table_and_exits_1_on_a_disagreement(tmp_path, capsys) -> None:
    extra = [*BINARY, "p_ood"]  # a further output column is compared like any other
    rows = [dict(binary_row("a.jpg", 0.2), p_ood="0.01"), dict(binary_row("b.jpg", 0.8), p_ood="0.02")]
    write_report(tmp_path / "x86_64-pneumonia.csv", rows, extra)
    write_report(tmp_path / "arm64-pneumonia.csv", rows, extra)
    moved = [dict(binary_row("a.jpg", 0.2), p_ood="0.05"), dict(binary_row("b.jpg", 0.3), p_ood="0.02")]
    write_report(tmp_path / "armhf-pneumonia.csv", moved, extra)
    (tmp_path / "arm64-pneumonia.seconds").write_text("0.7\n")
    (tmp_path / "arm64-info.txt").write_text("cxr-edge 0.3.0\npython 3.11.2 (Linux aarch64)\n"
                                             "interpreter: ai_edge_litert 2.3.0\n")
    argv = ["--reports", str(tmp_path), "--runs", "arm64", "--models", "pneumonia",
            "--markdown", str(tmp_path / "table.md")]
    assert pi_agreement.main(argv) == 0
    table = (tmp_path / "table.md").read_text()
    assert "| arm64 | pneumonia | ai_edge_litert 2.3.0 (Linux aarch64) | 2 | 2 | 2 | 0.0000 | 0 | 0.35 |" in table
    assert table in capsys.readouterr().out
    assert pi_agreement.main([*argv[:3], "armhf", *argv[4:]]) == 1
    table = (tmp_path / "table.md").read_text()
    assert "| armhf | pneumonia | ? | 2 | 2 | 1 | 0.5000 | 2 |" in table
    assert "- armhf pneumonia, DISAGREES: b.jpg: PNEUMONIA -> NORMAL (0.1000 from the decision rule)" in table
    assert "DECISIONS DIFFER from x86_64: armhf pneumonia" in capsys.readouterr().err


def test_read_report_keys_rows_by_path_and_reads_a_byte_order_mark(tmp_path) -> None:
    path = write_report(tmp_path / "r.csv", [binary_row("a,b.jpg", 0.3)])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert read_report(path)["a,b.jpg"]["probability"] == "0.3"
