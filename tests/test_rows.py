"""Results <-> report rows: the columns, each result's cells, and which file a row names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxr_edge import rows
from cxr_edge.dicom import HEADER_COLUMNS, PHI_COLUMNS
from cxr_edge.engine import ERROR, OK, Result

HEADER = rows.columns(["NORMAL", "PNEUMONIA"], multiclass=False)
MODEL = "tiny@0123456789ab"


def test_columns_follow_the_issue_and_multiclass_adds_one_probability_per_label() -> None:
    assert HEADER[:4] == ["path", "prediction", "probability", "score"]
    assert HEADER[4:10] == ["threshold", "status", "error", "model", "width", "height"]
    assert HEADER[10:] == [*HEADER_COLUMNS, "note"]
    multi = rows.columns(["NORMAL", "BACTERIA", "VIRUS"], multiclass=True)
    assert multi[4:7] == ["p_NORMAL", "p_BACTERIA", "p_VIRUS"]


def test_no_phi_drops_the_patient_identifier_columns() -> None:
    header = rows.columns(["NORMAL", "PNEUMONIA"], multiclass=False, phi=False)
    assert not set(PHI_COLUMNS) & set(header)
    assert "modality" in header


def test_result_row_carries_header_fields_and_notes() -> None:
    result = Result(
        "a.dcm", "a.dcm", OK, prediction="NORMAL", probability=0.25, label_probs=(0.75, 0.25), width=10,
        height=20, info={"patient_id": "P1", "modality": "CR", "warning": "inverted MONOCHROME1"},
    )
    cells = rows.result_row(result, ["NORMAL", "PNEUMONIA"], 0.37, MODEL)
    assert cells["patient_id"] == "P1" and cells["modality"] == "CR" and cells["study_date"] == ""
    assert cells["note"] == "inverted MONOCHROME1"
    assert (cells["probability"], cells["threshold"], cells["width"], cells["height"]) == ("0.25", "0.37", "10", "20")
    assert (cells["p_NORMAL"], cells["p_PNEUMONIA"]) == ("0.75", "0.25")


def test_numbers_are_written_exactly_so_the_decision_can_be_checked_from_the_report() -> None:
    p = float(np.float32(253 / 256))  # an int8 model's output step
    result = Result("a", "a", OK, prediction="PNEUMONIA", probability=p, label_probs=(1 - p, p))
    cells = rows.result_row(result, ["NORMAL", "PNEUMONIA"], 0.21600469946861267, MODEL)
    assert cells["probability"] == "0.98828125" and float(cells["probability"]) == p
    assert cells["threshold"] == "0.21600469946861267"
    third = float(np.float32(1 / 3))
    assert float(np.float32(rows.result_row(Result("b", "b", OK, probability=third), [], 0.5, MODEL)["probability"])) == third


def test_error_rows_leave_the_numbers_empty() -> None:
    cells = rows.result_row(Result("x", "x", ERROR, error="empty file"), ["N", "P"], 0.5, MODEL)
    assert (cells["probability"], cells["width"], cells["prediction"], cells["error"]) == ("", "", "", "empty file")


def test_a_row_read_back_is_the_result_it_was_written_from(tmp_path: Path) -> None:
    result = Result(str(tmp_path / "a.png"), "a.png", OK, prediction="PNEUMONIA", probability=0.98828125,
                    label_probs=(0.01171875, 0.98828125), score=0.99612345678, width=10, height=20,
                    info={"modality": "CR"})
    cells = rows.result_row(result, ["NORMAL", "PNEUMONIA"], 0.5, MODEL)
    assert rows.row_result(cells, ["NORMAL", "PNEUMONIA"], tmp_path) == result


def test_the_films_a_report_holds_twice_are_found_under_any_spelling_of_their_folder(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    (tmp_path / "day").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "day", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    paths = ["day/a.png", "day/b.png", str(tmp_path / "day" / "a.png"), "link/b.png", "day/../day/a.png", "c.png"]
    assert rows.repeated_films([{"path": p} for p in paths], tmp_path) == ["day/a.png", "day/b.png"]
