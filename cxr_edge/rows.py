"""Results <-> report rows: the one place that knows both a :class:`~cxr_edge.engine.Result`
and the CSV's cells.

The report writer (:mod:`cxr_edge.report`) handles rows of strings, the page and the
workbook read rows back; this module says which columns there are, how each result
becomes cells (:func:`result_row`) and how a row read back becomes the result it was
written from (:func:`row_result`). It also says which file a row names
(:func:`film_path`), so that a resume and the page agree on "the same film" whatever
spelling of its folder a row carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from cxr_edge.dicom import HEADER_COLUMNS, PHI_COLUMNS
from cxr_edge.discover import identity
from cxr_edge.engine import OK, Result

__all__ = ["OK", "BASE_COLUMNS", "TAIL_COLUMNS", "NOTE_COLUMN", "columns", "result_row", "row_result",
           "threshold_cell", "input_note", "film_path", "repeated_films"]

BASE_COLUMNS = ("path", "prediction", "probability", "score")
TAIL_COLUMNS = ("threshold", "status", "error", "model", "width", "height")
NOTE_COLUMN = "note"


def columns(labels: Sequence[str], multiclass: bool, phi: bool = True) -> list[str]:
    """Report columns: ``p_<label>`` per label for multiclass models; PHI columns unless ``phi=False``."""
    per_label = [f"p_{label}" for label in labels] if multiclass else []
    header = [c for c in HEADER_COLUMNS if phi or c not in PHI_COLUMNS]
    return [*BASE_COLUMNS, *per_label, *TAIL_COLUMNS, *header, NOTE_COLUMN]


def _probability(value: float | None) -> str:
    """The shortest digits that give back the model's float32 output, so the report's
    ``probability >= threshold`` is exactly the decision that was made (0.98828125, not 0.988281)."""
    return "" if value is None else np.format_float_positional(np.float32(value), trim="-")


def _score(value: float | None) -> str:
    """The rank score with the digits that tell films apart (it orders; it is not compared with anything)."""
    return "" if value is None else f"{value:.12g}"


def threshold_cell(threshold: float) -> str:
    """The threshold as the report writes it: exactly the value decided with."""
    return np.format_float_positional(threshold, trim="-")


def result_row(result: Result, labels: Sequence[str], threshold: float, model_id: str) -> dict[str, str]:
    """The report's cells for one result (every column; the writer keeps those it has)."""
    info = result.info
    return {
        "path": result.display,
        "prediction": result.prediction,
        "probability": _probability(result.probability),
        "score": _score(result.score),
        **{f"p_{label}": _probability(p) for label, p in zip(labels, result.label_probs)},
        "threshold": threshold_cell(threshold),
        "status": result.status,
        "error": result.error,
        "model": model_id,
        "width": "" if result.width is None else str(result.width),
        "height": "" if result.height is None else str(result.height),
        **{c: str(info.get(c, "")) for c in HEADER_COLUMNS},
        NOTE_COLUMN: input_note(info),
    }


def input_note(info: dict[str, str]) -> str:
    """The ``note`` cell: warnings about the input first (a lateral view, not a chest), then notes."""
    return "; ".join(str(info[k]) for k in ("warning", "note") if info.get(k))


def film_path(display: str, base: Path) -> Path:
    """The file a row's ``path`` names: as given on the command line, so a relative path is taken
    from the current folder when the file is there, else from ``base`` (the report's folder)."""
    here = Path(display)
    return here if here.is_absolute() or here.exists() else base / here


def repeated_films(rows: Iterable[dict[str, str]], base: Path) -> list[str]:
    """The ``path`` cell of each film that has more than one row (first spelling met), in order:
    a report resumed by cxr-edge 0.6.0 with another spelling of its folder holds such rows."""
    first: dict[str, str] = {}
    repeated: dict[str, str] = {}
    for row in rows:
        key = identity(film_path(row["path"], base))
        if key in first:
            repeated.setdefault(key, first[key])
        else:
            first[key] = row["path"]
    return list(repeated.values())


def row_result(row: dict[str, str], labels: Sequence[str], base: Path) -> Result:
    """A report row back as the :class:`Result` it was written from (what the page needs)."""
    return Result(
        path=str(film_path(row["path"], base)),
        display=row["path"],
        status=row.get("status", ""),
        error=row.get("error", ""),
        prediction=row.get("prediction", ""),
        probability=_number(row.get("probability", "")),
        score=_number(row.get("score", "")),
        label_probs=tuple(_number(row.get(f"p_{label}", "")) or 0.0 for label in labels),
        width=_integer(row.get("width", "")),
        height=_integer(row.get("height", "")),
        info={k: row[k] for k in (*HEADER_COLUMNS, NOTE_COLUMN) if row.get(k)},
    )


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _integer(cell: str) -> int | None:
    return int(cell) if cell.isdigit() else None
