"""Discovery: the paths a user gives -> the image files to classify, in a stable order.

Rules (README "Which files are read"): folders are walked recursively unless
``recursive=False``; a file counts when its extension is an image or DICOM extension
(any case), or when it has no extension and starts like a DICOM file; hidden files and
folders (name starting with ``.``) are skipped; symlinked folders are followed once, so a
loop cannot hang the walk; entries are sorted by name at every level. A file named
explicitly is always taken, whatever its extension. A folder whose *name* looks like an
image (``x.jpg``) is listed too, so the report says why it was not read, and is still
walked; a folder that cannot be listed is an input carrying its error, so it gets an
error row instead of vanishing from the report.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from cxr_edge import dicom

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}) | dicom.DICOM_SUFFIXES


class Found(NamedTuple):
    """One input: where it is, and how the report names it (a small tuple: 100,000 fit in a Pi)."""

    path: str
    display: str  # the report's ``path`` column: the path as given + the part below it, ``/`` separators
    error: str = ""  # a folder that could not be listed: reported as an error row, never skipped silently


def printable(name: str) -> str:
    """A file name as valid UTF-8 text: undecodable bytes become ``\\xNN`` escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def looks_like_image(path: Path) -> bool:
    """The extension rule; files without one, or named by a DICOM UID (``1.2.840.1136.320``,
    whose "extension" is digits), are sniffed for the DICOM magic."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    if suffix and not suffix[1:].isdigit():
        return False
    return path.is_file() and dicom.is_dicom(path)


def identity(path: str | Path) -> str:
    """The file a path names, however it is spelled: its folder resolved (a relative, ``./``,
    ``..`` or linked-folder spelling of it is one folder), its own name kept (a linked *file*
    stays an input of its own: the benchmarks repeat one film under many linked names).
    A report knows a film by this, so no spelling of a folder gives a film a second row."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(_resolved(folder), name)


@functools.lru_cache(maxsize=256)
def _resolved(folder: str) -> str:
    """A folder's real path (cached: the films of a folder share one)."""
    return os.path.realpath(folder)


def discover(paths: Iterable[str | Path], recursive: bool = True) -> Iterator[Found]:
    """Yield the inputs under ``paths`` in order (the paths in the order given, each sorted).

    ``display`` is the path as given joined with the file's part below it
    (``day1/IM-0001.jpeg``), never the relative part alone: ``--resume`` matches rows by
    it, so files of the same name under two folders must not look like one. A file named
    again by overlapping paths (``day2 day2/IM-0001.jpeg``, ``day link-to-day``) is yielded
    once, where first met, so it gets one row (:func:`identity`). The set of identities costs
    about 150 bytes per file.
    """
    seen: set[str] = set()
    for found in _listed(paths, recursive):
        key = identity(found.path)
        if key not in seen:
            seen.add(key)
            yield found


def _listed(paths: Iterable[str | Path], recursive: bool) -> Iterator[Found]:
    for root in map(Path, paths):
        if root.is_dir():
            yield from walk(root, root.as_posix().rstrip("/") + "/", recursive)
        else:
            yield Found(str(root), printable(root.as_posix()))


def passed_over(paths: Iterable[str | Path], recursive: bool = True, limit: int = 3) -> tuple[list[str], int]:
    """The first ``limit`` files under the folders of ``paths`` that are not hidden, and how many
    there are: when discovery found no image, these are what it passed over (a folder of PDFs, a
    share of another format), which the message names."""
    named: list[str] = []
    total = 0
    for root in (Path(p) for p in paths):
        for folder, folders, files in os.walk(root) if root.is_dir() else ():
            folders[:] = sorted(f for f in folders if not is_hidden(f)) if recursive else []
            visible = sorted(f for f in files if not is_hidden(f))
            total += len(visible)
            named += [printable((Path(folder) / f).as_posix()) for f in visible[: limit - len(named)]]
    return named, total


def walk(root: Path, prefix: str, recursive: bool = True) -> Iterator[Found]:
    """The inputs under the folder ``root``, each displayed as ``prefix`` + its path below ``root``."""
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path, rel: str) -> Iterator[Found]:
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:
                return  # a symlink loop, or a folder reached twice
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as listing:
                # Names and kinds only: a folder of 100,000 files costs a few MB while walked.
                entries = sorted((e.name, _is_dir(e)) for e in listing if not is_hidden(e.name))
        except OSError as exc:  # unreadable or vanished: its files would be missing from the report unsaid
            yield Found(str(folder), printable(f"{prefix}{rel}"), f"cannot list this folder: {exc.strerror or exc}")
            return
        for name, is_dir in entries:
            path = folder / name
            if looks_like_image(path):
                yield Found(str(path), printable(f"{prefix}{rel}{name}"))
            if recursive and is_dir:
                yield from visit(path, f"{rel}{name}/")

    yield from visit(root, "")


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks; loops are caught by the inode set
    except OSError:
        return False
