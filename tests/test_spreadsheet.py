"""``classify --excel``: a workbook whose names and numbers open right in any locale."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest

from cxr_edge import spreadsheet

NS = {"s": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


def read_book(path: Path) -> list[dict[str, str | float]]:
    """The sheet's rows by header, numbers as floats, text as str (what a spreadsheet shows)."""
    with zipfile.ZipFile(path) as book:
        sheet = ElementTree.fromstring(book.read("xl/worksheets/sheet1.xml"))
    table = []
    for row in sheet.iterfind(".//s:row", NS):
        cells = []
        for cell in row.iterfind("s:c", NS):
            if cell.get("t") == "inlineStr":
                cells.append("".join(t.text or "" for t in cell.iterfind(".//s:t", NS)))
            else:
                cells.append(float(cell.find("s:v", NS).text))
        table.append(cells)
    return [dict(zip(table[0], cells)) for cells in table[1:]]


NAMES = ["ünïcødé 肺.png", "comma, here.png", "=cmd.png"]


@pytest.fixture
def films(tmp_path, make_image) -> Path:
    for i, name in enumerate(NAMES):
        make_image(tmp_path / "films" / name, seed=i)
    return tmp_path / "films"


def test_the_workbook_holds_names_as_text_and_probabilities_as_numbers(cli, binary_model, films, tmp_path,
                                                                      report_rows):
    """In a German locale 108 of 200 probabilities of the CSV became text; Excel garbled the names."""
    book = tmp_path / "r.xlsx"
    result = cli("classify", films, "--model", binary_model, "-o", tmp_path / "r.csv", "--excel", book)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-1] == f"report: {tmp_path / 'r.csv'}; workbook: {book}"
    rows = read_book(book)
    csv_rows = report_rows(tmp_path / "r.csv")
    assert [r["path"] for r in rows] == [f"{films.as_posix()}/{name}" for name in sorted(NAMES)]
    for row, csv_row in zip(rows, csv_rows):
        assert row["probability"] == float(csv_row["probability"])  # a number, exactly the CSV's
        assert row["threshold"] == float(csv_row["threshold"]) and row["width"] == 96.0
        assert row["model"] == csv_row["model"] and row["status"] == "ok"


def test_openpyxl_opens_the_workbook(cli, binary_model, films, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = tmp_path / "r.xlsx"
    assert cli("classify", films, "--model", binary_model, "-o", tmp_path / "r.csv", "--excel", book).exit_code == 0
    sheet = openpyxl.load_workbook(book).active
    assert sheet.title == "report" and sheet.max_row == 1 + len(NAMES)
    assert isinstance(sheet["C2"].value, float) and sheet["A2"].value.endswith(sorted(NAMES)[0])


def test_a_resumed_run_rewrites_its_workbook_with_every_row(cli, binary_model, films, tmp_path, make_image):
    args = ["--model", binary_model, "-o", tmp_path / "r.csv", "--excel", tmp_path / "r.xlsx"]
    assert cli("classify", films, *args).exit_code == 0
    make_image(films / "later.png")
    assert cli("classify", films, *args, "--resume").exit_code == 0
    assert len(read_book(tmp_path / "r.xlsx")) == len(NAMES) + 1


def test_a_workbook_that_is_not_the_reports_own_is_never_replaced(cli, binary_model, films, tmp_path):
    other = tmp_path / "budget.xlsx"
    other.write_bytes(b"the clinic's budget")
    assert cli("classify", films, "--model", binary_model, "-o", tmp_path / "r.csv").exit_code == 0
    for extra in ([], ["--resume"]):
        result = cli("classify", films, "--model", binary_model, "-o", tmp_path / "r.csv", "--excel", other, *extra)
        assert result.exit_code == 2
    assert other.read_bytes() == b"the clinic's budget"


def test_excel_needs_a_report_file(cli, binary_model, films, tmp_path):
    result = cli("classify", films, "--model", binary_model, "-o", "-", "--excel", tmp_path / "r.xlsx")
    assert result.exit_code == 2 and "--excel needs a report file" in result.stderr


@pytest.mark.parametrize("index, letters", [(0, "A"), (25, "Z"), (26, "AA"), (27, "AB"), (701, "ZZ"), (702, "AAA")])
def test_column_letters(index, letters):
    assert spreadsheet.column_letter(index) == letters


def test_a_cell_xml_cannot_hold_is_dropped_and_a_non_number_stays_text():
    xml = spreadsheet.sheet_xml(["path", "probability"], [{"path": "a\x01b<&>", "probability": "n/a"}])
    assert "<t xml:space=\"preserve\">ab&lt;&amp;&gt;</t>" in xml
    assert re.search(r't="inlineStr"><is><t xml:space="preserve">n/a</t>', xml)


def test_the_workbook_lists_the_rows_in_the_pages_order_and_words_with_the_header_frozen_and_filtered(
        cli, binary_model, tmp_path, report_rows):
    """People who open the workbook read the page's triage, not the CSV's file order and labels."""
    from cxr_edge.testing.synthetic import synthetic_xray

    films = tmp_path / "films"
    films.mkdir()
    for i in range(6):
        synthetic_xray(i, (224, 224), lesion=i % 2 == 1).save(films / f"img{i}.png")
    (films / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    book = tmp_path / "r.xlsx"
    assert cli("classify", films, "--model", binary_model, "-o", tmp_path / "r.csv", "--excel", book).exit_code == 1
    rows = read_book(book)
    assert "prediction" not in rows[0] and list(rows[0])[:2] == ["path", "screening"]
    words = [r["screening"] for r in rows]
    flagged = words.count("flagged for review")
    assert 0 < flagged < 6 and words == ["flagged for review"] * flagged + ["not screened: unreadable"] + [
        "not flagged"] * (6 - flagged)
    for part in (rows[:flagged], rows[flagged + 1:]):
        assert [r["probability"] for r in part] == sorted((r["probability"] for r in part), reverse=True)
    assert sorted(r["path"] for r in rows) == sorted(r["path"] for r in report_rows(tmp_path / "r.csv"))
    with zipfile.ZipFile(book) as zipped:
        sheet = zipped.read("xl/worksheets/sheet1.xml").decode()
        workbook = zipped.read("xl/workbook.xml").decode()
    last = spreadsheet.column_letter(len(rows[0]) - 1)
    assert 'state="frozen"' in sheet and 'ySplit="1"' in sheet
    assert f'<autoFilter ref="A1:{last}8"/>' in sheet and f"report!$A$1:${last}$8" in workbook
