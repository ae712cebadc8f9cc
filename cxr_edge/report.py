"""The CSV report: one row per input, on disk as soon as it is known, safe to resume.

Each row is formatted in memory and handed to the OS in a single ``write`` (so a crash
cuts at most the row in flight), and the file is fsynced at most every
``FSYNC_SECONDS`` (an SD card is slow to sync per row). The report is locked with
``flock`` while it is written, so two processes cannot interleave rows. ``resume`` keeps
the rows already ``ok`` and drops errors (to retry them) and a half-written last line
before appending; it refuses a report that holds results of another model rather than
drop them. A resumed report is cut in place when only its tail goes, else rewritten to a
temporary file that replaces it once synced, so a power cut during the resume itself
loses nothing. A disk that fails mid-run (full, removed) stops the run with a message;
the rows already written stay. Cells a spreadsheet would run as a formula are
neutralised with a leading apostrophe (OWASP CSV injection).

It knows nothing of models: it is given column names and rows of strings.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence

from cxr_edge.discover import identity
from cxr_edge.rows import BASE_COLUMNS, OK, film_path, threshold_cell

try:
    import fcntl
except ImportError:  # Windows: no flock; the report is then unlocked
    fcntl = None  # type: ignore[assignment]

STDOUT = "-"
FSYNC_SECONDS = 1.0
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ReportError(Exception):
    """The report cannot be written; the message says what to do."""


class ReportExists(ReportError):
    """The report holds results this run would drop; the user must say what to do with them."""


class NotAFile(ReportError):
    """The path given for the report (or the page) cannot hold one; the user must give another."""


def neutralise(cell: str) -> str:
    """Prefix ``'`` to a cell a spreadsheet would read as a formula."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def format_row(cells: Iterable[str]) -> bytes:
    """One RFC 4180 record (CRLF, quotes where needed), UTF-8, with formulas neutralised."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([neutralise(c) for c in cells])
    return buf.getvalue().encode("utf-8")


class ReportWriter:
    """Open, lock and append to a report; use as a context manager.

    ``done`` holds the files (:func:`~cxr_edge.discover.identity`) already reported ``ok`` by
    ``model_id`` (at ``threshold``, when given) when resuming, so the caller can skip them
    whatever spelling of their folder this run is given.
    """

    def __init__(
        self,
        out: str | Path,
        header: Sequence[str],
        model_id: str,
        overwrite: bool = False,
        resume: bool = False,
        threshold: float | None = None,
    ):
        self.header = list(header)
        self.model_id = model_id
        self.threshold = None if threshold is None else threshold_cell(threshold)
        self.done: set[str] = set()
        self.rows = 0  # rows in the report: kept by a resume, then written
        self._last_sync = time.monotonic()
        if str(out) == STDOUT:
            self.path = None
            sys.stdout.flush()
            self._write(format_row(self.header))
            return
        self.path = Path(out)
        _check_regular(self.path)
        self._fd = _open_locked(self.path)
        try:
            self._start(overwrite, resume)
        except BaseException:
            os.close(self._fd)
            raise

    def _start(self, overwrite: bool, resume: bool) -> None:
        existing = _read_all(self._fd)
        body = existing.removeprefix(codecs.BOM_UTF8)  # a report re-saved by Excel as "CSV UTF-8"
        if existing and not (overwrite or resume):
            raise ReportExists(
                f"{self.path} already exists: add --resume to continue it or --overwrite to replace it"
            )
        blob = bytearray(format_row(self.header))
        if resume and not _looks_like_report(body):
            raise ReportError(f"{self.path} is not a cxr-edge report; refusing to resume into it")
        if resume:
            _check_columns(body, self.path)
        for row in _rows_to_keep(body, self.model_id, self.threshold, self.path) if resume else ():
            self.done.add(identity(film_path(unneutralise(row["path"]), self.path.parent)))
            self.rows += 1
            blob += format_row(row.get(c, "") for c in self.header)
        with _disk_errors(self.path):
            if existing and existing.startswith(blob):
                os.ftruncate(self._fd, len(blob))  # only a torn tail or trailing errors go
                os.lseek(self._fd, 0, os.SEEK_END)
            elif existing:
                self._replace(bytes(blob))
            else:
                self._write(bytes(blob))
            self.sync()

    def _replace(self, blob: bytes) -> None:
        """Swap in a synced rewrite, so the old report is whole until the new one is."""
        tmp = self.path.with_name(f".{self.path.name}.resume")
        tmp.write_bytes(blob)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        _sync_folder(self.path.parent)
        fd = _open_locked(self.path)  # the lock was on the replaced file
        os.close(self._fd)
        self._fd = fd
        os.lseek(self._fd, 0, os.SEEK_END)

    def is_done(self, path: str | Path) -> bool:
        """Was the file at ``path``, under any spelling of its folder, reported ``ok`` by the same
        model before (``resume``)?"""
        return identity(path) in self.done

    def _write(self, data: bytes) -> None:
        if self.path is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        view = memoryview(data)
        with _disk_errors(self.path):
            while view:
                view = view[os.write(self._fd, view) :]

    def write(self, cells: dict[str, str]) -> None:
        """Append one row now (a single write), and fsync if the last sync is old."""
        self._write(format_row(cells.get(c, "") for c in self.header))
        self.rows += 1
        if time.monotonic() - self._last_sync >= FSYNC_SECONDS:
            self.sync()

    def sync(self) -> None:
        if self.path is not None:
            with _disk_errors(self.path):
                os.fsync(self._fd)
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self.path is None:
            return
        try:
            self.sync()
        finally:
            os.close(self._fd)  # closing releases the lock

    def __enter__(self) -> "ReportWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def _disk_errors(path: Path) -> Iterator[None]:
    """A disk that fails mid-run (full, removed SD card) is a message, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise ReportError(
            f"cannot write the report {path}: {exc.strerror or exc}; the rows already in it are kept: "
            "fix the disk (free space), then run again with --resume"
        ) from exc


@contextmanager
def written_whole(path: Path, mode: str = "wb", **open_args: Any) -> Iterator[IO[Any]]:
    """A file that appears at ``path`` only once whole: written to a temporary file beside it,
    then renamed over the old one. An interruption leaves the old file (or none), never a cut one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, mode, **open_args) as fh:
            yield fh
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from the clinic's other accounts
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX); folders cannot be opened on Windows, where this is skipped."""
    if os.name == "posix":
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_regular(path: Path) -> None:
    """Refuse an existing folder, device, pipe or socket before opening it: the old report is
    read whole (``/dev/full`` never ends), and a pipe cannot be cut or seeked."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # a new file, or one the open will fail on with its own message
    if stat.S_ISDIR(mode):
        raise NotAFile(f"{path} is a folder; give a file name for the report")
    if not stat.S_ISREG(mode):
        raise NotAFile(
            f"{path} is not a regular file (a device, pipe or socket); give a file name, or --out - for stdout"
        )


def _open_locked(path: Path) -> int:
    """Open ``path`` for read/write without truncating it, and take an exclusive lock."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ReportError(f"cannot write the report {path}: {exc.strerror}") from exc
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise ReportError(
                f"{path} is being written by another cxr-edge process; wait for it or choose another --out"
            ) from exc
    return fd


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _looks_like_report(data: bytes) -> bool:
    """A report starts with its ``path`` column, quoted or not (a spreadsheet may quote every
    field when it saves); a torn first write may have cut even that."""
    first = (BASE_COLUMNS[0] + ",").encode()
    head = data.rstrip(b"\0")[: len(first) + 1].replace(b'"', b"")[: len(first)]
    return first.startswith(head)


#: Columns a resume reads: a report re-saved without them would silently lose its rows.
RESUME_COLUMNS = ("path", "status", "model", "threshold")


def _check_columns(data: bytes, path: Path) -> None:
    """Refuse a report whose header lost a column a resume needs (a spreadsheet renamed it)."""
    text = data.decode("utf-8", errors="replace")
    if "\n" not in text:
        return  # a header cut by a crash: there are no rows to lose
    header = next(csv.reader(io.StringIO(text, newline="")))
    missing = [c for c in RESUME_COLUMNS if c not in header]
    if missing:
        raise ReportError(
            f"{path}: its header lacks the column(s) {', '.join(missing)} (was it re-saved by a spreadsheet "
            "that renamed them?); restore the header or choose another --out"
        )


def _rows_to_keep(data: bytes, model_id: str, threshold: str | None, path: Path) -> Iterator[dict[str, str]]:
    """Complete rows reported ``ok``; a torn last record is dropped.

    Rows ``ok`` for another model, or decided at another threshold, are results that
    resuming would lose or contradict: refuse instead.
    """
    try:
        for row in parse_rows(data):
            if row.get("status") != OK:
                continue
            if row.get("model") != model_id:
                raise ReportExists(
                    f"{path} holds results of model {row.get('model')!r}, not {model_id!r}: resume it with "
                    "that --model, or choose another --out (--overwrite replaces those results)"
                )
            if threshold is not None and row.get("threshold") != threshold:
                raise ReportExists(
                    f"{path} holds results decided at threshold {row.get('threshold')}, not {threshold}: resume it "
                    "with that --threshold, or choose another --out (--overwrite replaces those results)"
                )
            yield row
    except csv.Error:
        return  # unparseable text (a torn quoted cell): keep what came before


def parse_rows(data: bytes) -> Iterator[dict[str, str]]:
    """The complete records of a report's bytes as dicts (a byte-order mark and a torn last
    record are dropped, as are records whose cell count is not the header's); raises
    ``csv.Error`` where a torn quoted cell makes the rest unreadable."""
    text = data.removeprefix(codecs.BOM_UTF8).rstrip(b"\0").decode("utf-8", errors="replace")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a crash cut the last row: drop it
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    for record in reader if header else ():
        if len(record) == len(header):
            yield dict(zip(header, record))


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """Every complete record of the report at ``path``, with formula guards taken off again."""
    try:
        return [{k: unneutralise(v) for k, v in row.items()} for row in parse_rows(Path(path).read_bytes())]
    except csv.Error as exc:
        raise ReportError(f"{path}: not a readable CSV report ({exc})") from exc
    except OSError as exc:
        raise ReportError(f"cannot read the report {path}: {exc.strerror or exc}") from exc


def unneutralise(cell: str) -> str:
    """The cell as it was before :func:`neutralise`."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell
