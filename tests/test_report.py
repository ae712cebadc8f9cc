"""The CSV report: RFC 4180, formula neutralisation, refusal to overwrite, resume, lock."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest

from cxr_edge import report, rows
from cxr_edge.dicom import HEADER_COLUMNS, PHI_COLUMNS
from cxr_edge.engine import ERROR, OK, Result
from cxr_edge.report import NotAFile, ReportError, ReportExists, ReportWriter

HEADER = rows.columns(["NORMAL", "PNEUMONIA"], multiclass=False)
MODEL = "tiny@0123456789ab"


def row(path: str, status: str = OK, model: str = MODEL) -> dict[str, str]:
    return {"path": path, "prediction": "NORMAL" if status == OK else "", "status": status, "model": model}


def write_report(path: Path, *rows: dict[str, str], **kwargs: bool) -> ReportWriter:
    with ReportWriter(path, HEADER, MODEL, **kwargs) as writer:
        for cells in rows:
            writer.write(cells)
    return writer


def done(writer: ReportWriter) -> set[str]:
    """The names of the files a resumed writer knows as done (it knows each by its whole path)."""
    return {Path(path).name for path in writer.done}


def paths_in(path: Path, status: str | None = None) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [r["path"] for r in csv.DictReader(fh) if status in (None, r["status"])]


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "=HYPERLINK(\"http://x\")"])
def test_formula_cells_are_neutralised(cell: str) -> None:
    [parsed] = csv.reader(io.StringIO(report.format_row([cell]).decode("utf-8"), newline=""))
    assert parsed == ["'" + cell]


@pytest.mark.parametrize("cell", ["a.png", "x=1.png", "0.5", "'quoted", ""])
def test_ordinary_cells_are_left_alone(cell: str) -> None:
    [parsed] = csv.reader(io.StringIO(report.format_row([cell]).decode("utf-8"), newline=""))
    assert parsed == [cell]


def test_rows_are_rfc4180_crlf_records_with_quotes_where_needed() -> None:
    data = report.format_row(["a,b", 'say "hi"', "two\nlines", "é"])
    assert data == b'"a,b","say ""hi""","two\nlines",\xc3\xa9\r\n'


def test_new_report_gets_a_header_and_every_row_is_on_disk_before_close(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    with ReportWriter(out, HEADER, MODEL) as writer:
        writer.write(row("a.png"))
        assert paths_in(out) == ["a.png"]  # readable while the run goes on
    assert out.read_bytes().startswith(b"path,prediction,probability,")


def test_an_existing_report_is_not_overwritten_without_being_asked(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    write_report(out, row("a.png"))
    with pytest.raises(ReportExists, match="--resume.*--overwrite"):
        ReportWriter(out, HEADER, MODEL)
    assert paths_in(out) == ["a.png"]
    write_report(out, row("b.png"), overwrite=True)
    assert paths_in(out) == ["b.png"]


def test_an_empty_file_is_not_a_report_to_protect(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    out.touch()
    write_report(out, row("a.png"))
    assert paths_in(out) == ["a.png"]


def test_resume_keeps_ok_rows_and_drops_errors_to_retry_them(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    write_report(out, row("a.png"), row("b.png", status=ERROR), row("c.png"))
    writer = write_report(out, row("b.png"), resume=True)
    assert done(writer) == {"a.png", "c.png"}
    assert paths_in(out) == ["a.png", "c.png", "b.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]  # no temporary copy left behind


def test_resume_refuses_a_report_holding_results_of_another_model_and_keeps_them(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    write_report(out, row("a.png"), row("c.png", model="other@ffffffffffff"))
    before = out.read_bytes()
    with pytest.raises(ReportExists, match="other@ffffffffffff.*--model.*--out"):
        ReportWriter(out, HEADER, MODEL, resume=True)
    assert out.read_bytes() == before


def test_a_resume_that_rewrites_the_report_leaves_the_old_one_whole_until_the_new_one_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "r.csv"
    write_report(out, row("a.png", status=ERROR), row("b.png"))
    before = out.read_bytes()

    def power_cut(*args: object) -> None:
        raise KeyboardInterrupt  # stands in for the lights going out before the swap

    monkeypatch.setattr(report.os, "replace", power_cut)
    with pytest.raises(KeyboardInterrupt):
        ReportWriter(out, HEADER, MODEL, resume=True)
    assert out.read_bytes() == before
    monkeypatch.undo()
    with ReportWriter(out, HEADER, MODEL, resume=True) as writer:
        assert done(writer) == {"b.png"}
        with pytest.raises(ReportError, match="another cxr-edge process"):
            ReportWriter(out, HEADER, MODEL, resume=True)  # the swapped-in file is locked too
    assert paths_in(out) == ["b.png"]


def test_a_disk_that_fills_mid_run_stops_with_a_message_and_keeps_the_rows_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "r.csv"
    writer = ReportWriter(out, HEADER, MODEL)
    writer.write(row("a.png"))

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report.os, "write", full)
    with pytest.raises(ReportError, match="No space left on device.*--resume"):
        writer.write(row("b.png"))
    monkeypatch.undo()
    writer.close()
    assert paths_in(out) == ["a.png"]


def test_resume_matches_neutralised_paths(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    write_report(out, row("=cmd.png"))
    with ReportWriter(out, HEADER, MODEL, resume=True) as writer:
        assert writer.is_done(tmp_path / "=cmd.png") and not writer.is_done(tmp_path / "cmd.png")


@pytest.mark.parametrize("cut", [1, 7, 25])
def test_resume_repairs_a_half_written_last_line(tmp_path: Path, cut: int) -> None:
    out = tmp_path / "r.csv"
    write_report(out, row("a.png"), row("b.png"), row('c "quoted",\nname.png'))
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - cut])  # a power cut in the middle of the last row
    writer = write_report(out, row("c-again.png"), resume=True)
    assert done(writer) == {"a.png", "b.png"}
    assert paths_in(out) == ["a.png", "b.png", "c-again.png"]


def test_resume_ignores_trailing_zero_bytes_left_by_a_power_cut(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    write_report(out, row("a.png"))
    out.write_bytes(out.read_bytes() + b"\0" * 512)
    assert done(write_report(out, resume=True)) == {"a.png"}


def test_resume_of_a_report_without_rows_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    out.write_bytes(b"path,predic")
    assert done(write_report(out, row("a.png"), resume=True)) == set()
    assert paths_in(out) == ["a.png"]


def test_resume_rewrites_kept_rows_for_a_changed_header(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    write_report(out, {**row("a.png"), "patient_id": "P1"})
    no_phi = rows.columns(["NORMAL", "PNEUMONIA"], multiclass=False, phi=False)
    with ReportWriter(out, no_phi, MODEL, resume=True):
        pass
    with open(out, newline="", encoding="utf-8") as fh:
        [kept] = list(csv.DictReader(fh))
    assert "patient_id" not in kept and kept["path"] == "a.png"


def test_a_second_writer_of_the_same_report_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    with ReportWriter(out, HEADER, MODEL) as first:
        with pytest.raises(ReportError, match="another cxr-edge process"):
            ReportWriter(out, HEADER, MODEL, resume=True)
        first.write(row("a.png"))
    assert paths_in(out) == ["a.png"]
    write_report(out, row("b.png"), resume=True)  # the lock is released on close


def test_a_folder_or_a_missing_folder_is_not_a_writable_report(tmp_path: Path) -> None:
    with pytest.raises(NotAFile, match="is a folder"):
        ReportWriter(tmp_path, HEADER, MODEL)
    with pytest.raises(ReportError, match="cannot write the report"):
        ReportWriter(tmp_path / "missing" / "r.csv", HEADER, MODEL)


@pytest.mark.parametrize("resume", [False, True])
def test_a_pipe_or_a_device_is_refused_before_it_is_read(tmp_path: Path, resume: bool) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/full")):
        with pytest.raises(NotAFile, match="not a regular file.*--out -"):
            ReportWriter(target, HEADER, MODEL, resume=resume)


def test_resume_accepts_a_report_re_saved_with_a_bom_and_writes_it_back_without(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    write_report(out, row("a.png"), row("b.png", status=ERROR))
    out.write_bytes(b"\xef\xbb\xbf" + out.read_bytes())  # Excel's "CSV UTF-8"
    writer = write_report(out, row("b.png"), resume=True)
    assert writer.is_done(tmp_path / "a.png") and not writer.is_done(tmp_path / "b.png")
    assert out.read_bytes().startswith(b"path,") and paths_in(out) == ["a.png", "b.png"]


def test_resume_refuses_a_file_that_is_not_a_report(tmp_path: Path) -> None:
    out = tmp_path / "notes.csv"
    out.write_bytes(b"name,phone\r\nAda,123\r\n")
    with pytest.raises(ReportError, match="not a cxr-edge report"):
        ReportWriter(out, HEADER, MODEL, resume=True)
    assert out.read_bytes() == b"name,phone\r\nAda,123\r\n"


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("line_end", ["\r\n", "\n"])
def test_resume_accepts_a_report_a_spreadsheet_re_saved_with_every_field_quoted(
    tmp_path: Path, bom: bytes, line_end: str
) -> None:
    """LibreOffice's "quote all text cells" was refused as "not a cxr-edge report", rows and all."""
    out = tmp_path / "r.csv"
    write_report(out, row("a.png"), row("b.png", status=ERROR))
    with open(out, newline="", encoding="utf-8") as fh:
        records = list(csv.reader(fh))
    quoted = io.StringIO()
    csv.writer(quoted, quoting=csv.QUOTE_ALL, lineterminator=line_end).writerows(records)
    out.write_bytes(bom + quoted.getvalue().encode("utf-8"))
    writer = write_report(out, row("b.png"), resume=True)
    assert writer.is_done(tmp_path / "a.png") and not writer.is_done(tmp_path / "b.png")
    assert out.read_bytes().startswith(b"path,") and paths_in(out) == ["a.png", "b.png"]


def test_resume_says_which_columns_a_re_saved_report_lost(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    write_report(out, row("a.png"))
    text = out.read_text(encoding="utf-8").replace(",status,", ",Status,", 1)
    out.write_text(text, encoding="utf-8", newline="")
    with pytest.raises(ReportError, match=r"header lacks the column\(s\) status"):
        ReportWriter(out, HEADER, MODEL, resume=True)
    assert out.read_text(encoding="utf-8") == text  # its rows are kept
