"""``classify --excel``: the report as an .xlsx workbook that any spreadsheet opens right.

A CSV cannot: Excel takes it as the local ANSI code page unless it starts with a byte-order
mark, and in a comma-decimal locale (German, French...) it splits on ``;`` and reads
``0.996`` as text or a date, while LibreOffice's import dialog defaults to the same locale.
An .xlsx stores text as UTF-8 XML and numbers as numbers, whatever the reader's locale,
and never runs a cell as a formula. It is written with the standard library alone
(``zipfile``, five small XML parts: no package to install on a Raspberry Pi), from the
report's rows, to a temporary file renamed over the old workbook when whole.

It is made for people who read the page: rows in the page's triage order, the page's words
(``flagged for review`` / ``not flagged`` / ``not screened: ...`` in a ``screening`` column
where the CSV has its ``prediction``), the header frozen and filters on every column.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import escape

from cxr_edge.report import written_whole

#: Columns written as numbers (a probability per label too); the rest are text.
NUMBER_COLUMNS = ("probability", "score", "threshold", "width", "height")
SHEET = "report"
#: The column that says what the page says of a row, in place of the CSV's ``prediction``.
SCREENING = "screening"
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DOC_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_OFFICE = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_PARTS = {
    "[Content_Types].xml": (
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        f'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/xl/workbook.xml" ContentType="{_OFFICE}.sheet.main+xml"/>'
        f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_OFFICE}.worksheet+xml"/></Types>'
    ),
    "_rels/.rels": (
        f'<Relationships xmlns="{_RELS}"><Relationship Id="rId1" Type="{_DOC_RELS}/officeDocument" '
        'Target="xl/workbook.xml"/></Relationships>'
    ),
    "xl/_rels/workbook.xml.rels": (
        f'<Relationships xmlns="{_RELS}"><Relationship Id="rId1" Type="{_DOC_RELS}/worksheet" '
        'Target="worksheets/sheet1.xml"/></Relationships>'
    ),
}
#: Characters XML 1.0 cannot hold (a file name may): dropped from text cells.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def is_number_column(name: str) -> bool:
    return name in NUMBER_COLUMNS or name.startswith("p_")


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: the cell references of a sheet."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _cell(ref: str, value: str, number: bool) -> str:
    if number and value:
        try:
            return f'<c r="{ref}"><v>{float(value)!r}</v></c>'
        except ValueError:
            pass  # not a number after all: keep it as text rather than lose it
    text = escape(_NOT_XML.sub("", value))
    return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'


def worded(header: Sequence[str]) -> list[str]:
    """The report's columns as the workbook shows them: ``screening`` in place of ``prediction``."""
    return [SCREENING if name == "prediction" else name for name in header]


#: The header row stays in view while scrolling.
_FROZEN = ('<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" '
           'state="frozen"/></sheetView></sheetViews>')


def last_cell(header: Sequence[str], rows: int) -> tuple[str, int]:
    """The column and row of the sheet's last cell: the filters cover the header and every row."""
    return column_letter(len(header) - 1), rows + 1


def sheet_xml(header: Sequence[str], rows: Sequence[dict[str, str]]) -> str:
    """The worksheet: the header as text (frozen, with filters), then one row per report row."""
    numbers = [is_number_column(name) for name in header]
    letters = [column_letter(i) for i in range(len(header))]
    lines = [f'<worksheet xmlns="{_MAIN}">{_FROZEN}<sheetData>']
    records = [dict(zip(header, header)), *rows]
    for n, row in enumerate(records, start=1):
        cells = "".join(_cell(f"{letter}{n}", row.get(name, ""), number and n > 1)
                        for name, letter, number in zip(header, letters, numbers))
        lines.append(f'<row r="{n}">{cells}</row>')
    column, row = last_cell(header, len(rows))
    lines.append(f'</sheetData><autoFilter ref="A1:{column}{row}"/></worksheet>')
    return "".join(lines)


def workbook_xml(header: Sequence[str], rows: int) -> str:
    """The workbook part; Excel finds a sheet's filters through the hidden name it defines."""
    column, row = last_cell(header, rows)
    cells = f"{SHEET}!$A$1:${column}${row}"
    return (f'<workbook xmlns="{_MAIN}" xmlns:r="{_DOC_RELS}"><sheets>'
            f'<sheet name="{SHEET}" sheetId="1" r:id="rId1"/></sheets><definedNames>'
            f'<definedName name="_xlnm._FilterDatabase" localSheetId="0" hidden="1">{cells}</definedName>'
            "</definedNames></workbook>")


_COMMENT = "cxr-edge report: "


def write_xlsx(path: str | Path, header: Sequence[str], rows: Sequence[dict[str, str]], report: Path) -> Path:
    """Write the workbook of ``report`` atomically: the old one stays whole until the new one is.
    The zip comment names the report, so a resumed run knows the workbook as its own."""
    path = Path(path)
    with written_whole(path) as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as book:
        book.comment = f"{_COMMENT}{report.absolute()}".encode("utf-8")
        for name, xml in _PARTS.items():
            book.writestr(name, _HEAD + xml)
        book.writestr("xl/workbook.xml", _HEAD + workbook_xml(header, len(rows)))
        book.writestr("xl/worksheets/sheet1.xml", _HEAD + sheet_xml(header, rows))
    return path


def report_of(path: Path) -> Path | None:
    """The report a cxr-edge workbook was made from; None for any other file."""
    try:
        with zipfile.ZipFile(path) as book:
            comment = book.comment.decode("utf-8", errors="replace")
    except (OSError, zipfile.BadZipFile):
        return None
    return Path(comment.removeprefix(_COMMENT)) if comment.startswith(_COMMENT) else None
