"""Screenshots of an image viewer: a cheap cue that a rejected picture is a film shown on a screen.

A technician who cannot export a film may take a screenshot of the viewer instead. The gate
rightly rejects it (the film is a part of a screen-sized picture, with the viewer's text,
toolbars and coloured overlays), but "not a chest X-ray" sends them the wrong way: the fix is
to export the film itself. Two cues, measured on a small copy of the picture, and only for
pictures the gate rejected (so they cost nothing on a normal day):

* **coloured marks on a grey picture**: a small share of clearly coloured pixels (a channel
  spread of at least :data:`COLOUR_SPREAD`), between :data:`COLOURED_SHARE`; a film saved as
  RGB has none, a photo is coloured almost everywhere;
* **a screen with borders**: a common screen size (:data:`SCREEN_SIZES`) whose left and right
  (or top and bottom) margins together are at least :data:`BORDER_SHARE` of it, each margin line
  one grey level almost throughout: the viewer's background around a film.

Neither proves a screenshot, so the hint says what to do *if* it is one.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from cxr_edge.engine import REJECTED, Result

COLOUR_SPREAD = 48  # grey levels between a pixel's largest and smallest channel
COLOURED_SHARE = (0.001, 0.25)  # share of coloured pixels: marks, not a photo
SCREEN_SIZES = frozenset({
    (1024, 768), (1280, 720), (1280, 800), (1280, 1024), (1360, 768), (1366, 768), (1440, 900), (1536, 864),
    (1600, 900), (1600, 1200), (1680, 1050), (1920, 1080), (1920, 1200), (2048, 1152), (2560, 1080),
    (2560, 1440), (2560, 1600), (2880, 1800), (3440, 1440), (3840, 2160),
})
BORDER_SHARE = 0.15
_UNIFORM = 0.9  # share of a margin line's pixels within _NEAR grey levels of its median
_NEAR = 6
_SMALL = 256  # px: the longest side of the copy the cues are measured on
HINT = ("if it is a chest film, export the film itself from the viewer or PACS (DICOM, or a PNG/JPEG of the "
        "image alone) and classify that")


def cue(path: str) -> str:
    """What makes the picture at ``path`` look like a screenshot of a viewer; "" if nothing does
    (or it cannot be read again)."""
    try:
        with Image.open(path) as img:
            size = img.size
            if img.format == "JPEG":
                img.draft("RGB", (_SMALL, _SMALL))
            img.thumbnail((_SMALL, _SMALL))
            small = np.asarray(img.convert("RGB"), dtype=np.int16)
    except Exception:  # noqa: BLE001 - a cue is a courtesy: the row already says why it was rejected
        return ""
    if _coloured_marks(small):
        return "coloured marks on a grey picture"
    if size in SCREEN_SIZES and _border_share(small.mean(axis=2)) >= BORDER_SHARE:
        return f"a {size[0]}x{size[1]} screen with wide uniform borders"
    return ""


def _coloured_marks(rgb: np.ndarray) -> bool:
    share = float(np.mean(rgb.max(axis=2) - rgb.min(axis=2) >= COLOUR_SPREAD))
    return COLOURED_SHARE[0] <= share <= COLOURED_SHARE[1]


def _border_share(gray: np.ndarray) -> float:
    """The larger share of the picture taken by uniform lines at its left and right, or top and bottom."""
    uniform_columns = _uniform_lines(gray.T)
    uniform_rows = _uniform_lines(gray)
    across = (_run(uniform_columns) + _run(uniform_columns[::-1])) / gray.shape[1]
    down = (_run(uniform_rows) + _run(uniform_rows[::-1])) / gray.shape[0]
    return max(across, down)


def _uniform_lines(gray: np.ndarray) -> np.ndarray:
    """For each row of ``gray``: is it one grey level almost throughout (text and bars aside)?"""
    median = np.median(gray, axis=1, keepdims=True)
    return np.mean(np.abs(gray - median) <= _NEAR, axis=1) >= _UNIFORM


def _run(flags: np.ndarray) -> int:
    """How many leading entries of ``flags`` are true."""
    return len(flags) if flags.all() else int(np.argmin(flags))


def hinted(result: Result) -> Result:
    """A rejected result whose picture looks like a screenshot of a viewer, with the hint to export
    the film first in its reason (the gate's reason, with what it measured, follows); any other as it is."""
    if result.status != REJECTED:
        return result
    why = cue(result.path)
    if not why:
        return result
    gate = result.error.removeprefix("not screened: ")
    return dataclasses.replace(result, error=f"not screened: looks like a screenshot of an image viewer ({why}): "
                                             f"{HINT}; {gate}")
