"""``cxr-edge classify`` as a library call: discover -> engine -> report, with a progress bar.

The CLI parses options into :class:`ClassifyOptions` and calls :func:`classify_to_report`;
tests and other commands call it the same way. A run ends at the report; its page and
workbook are then made from the report's rows read back, the one way ``cxr-edge page``
makes them (:class:`Outputs`). Errors that stop the run are raised as
they come (:class:`~cxr_edge.bundle.BundleError`,
:class:`~cxr_edge.runtime.RuntimeUnavailable`, :class:`~cxr_edge.report.ReportError`);
unreadable inputs are not errors here, they are rows. Ctrl-C becomes :class:`Interrupted`,
whose message says what the report keeps and the exact command that carries on.
"""

from __future__ import annotations

import dataclasses
import functools
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from tqdm import tqdm

from cxr_edge import report, spreadsheet, viewer
from cxr_edge.bundle import DEFAULT_MODEL, Bundle, BundleError, list_bundled, load_bundle
from cxr_edge.discover import Found, discover
from cxr_edge.engine import Classifier, Result, Tally, classify_files
from cxr_edge.rows import columns, repeated_films, result_row, row_result

if TYPE_CHECKING:
    from cxr_edge.html_report import PageStats

CPU = "cpu"
EDGETPU = "edgetpu"
DEVICES = (CPU, EDGETPU)


@dataclasses.dataclass
class ClassifyOptions:
    paths: Sequence[str | Path]
    out: str | Path
    model: str | Path | None = None  # None: the bundled default model
    recursive: bool = True
    workers: int | None = None  # None: engine.default_workers()
    threads: int | None = None  # None: one single-threaded interpreter per decoding thread
    device: str = CPU
    overwrite: bool = False
    resume: bool = False
    phi: bool = True  # False: leave patient identifiers out of the report
    progress: bool = False
    threshold: float | None = None  # None: the manifest's
    html: Path | None = None  # also write the HTML page of the whole report here
    excel: Path | None = None  # also write the whole report as an .xlsx workbook here
    explain: bool = False  # with html: an occlusion heatmap per flagged image
    screen_all: bool = False  # screen what the gate rejects too (research), each such row noting it


def open_classifier(
    model: str | Path | None, threads: int | None, device: str = CPU, threshold: float | None = None,
    screen_all: bool = False,
) -> Classifier:
    """Load and verify the bundle, then make its interpreter (on the Edge TPU if asked).

    ``threshold`` replaces the manifest's: a clinic's own operating point, chosen on its own
    labelled films (``cxr-edge evaluate --target-sensitivity``), without editing the bundle.
    """
    if model is None and DEFAULT_MODEL not in list_bundled():
        raise BundleError(
            f"no bundled '{DEFAULT_MODEL}' model is installed with this cxr-edge; "
            "give one with --model PATH (a bundle's .json or .tflite)"
        )
    bundle = load_bundle(model)
    if threshold is not None:
        bundle = dataclasses.replace(bundle, threshold=float(threshold))
    return Classifier(bundle, threads=threads, edgetpu=device == EDGETPU, screen_all=screen_all)


def report_header(bundle: Bundle, phi: bool) -> list[str]:
    return columns(bundle.labels, multiclass=bundle.task == "multiclass", phi=phi)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what the report keeps and how to carry on (the message)."""


@dataclasses.dataclass(frozen=True)
class Outputs:
    """What is made from a whole report, by ``classify`` after its run and by ``cxr-edge page``."""

    html: Path | None = None  # the triage page
    excel: Path | None = None  # the workbook
    explain: bool = False  # heatmaps on the page's flagged films
    phi: bool = True
    progress: bool = False

    def __bool__(self) -> bool:
        return self.html is not None or self.excel is not None


@dataclasses.dataclass
class Run:
    """What one ``classify`` did: this run's counts, the whole report's after a resume, where
    the outputs went, and what the page took."""

    tally: Tally | None  # None: nothing classified (``cxr-edge page``)
    out: str
    whole: Tally | None = None
    page: Path | None = None
    page_stats: PageStats | None = None
    excel: Path | None = None
    repeated: list[str] = dataclasses.field(default_factory=list)  # films with more than one row

    def summary(self) -> str:
        """The lines printed after a run: counts and the classifying rate, the whole report
        after a resume, the heatmaps' own time, and where the report and the page went."""
        lines = [self.tally.summary()] if self.tally else []
        if self.whole is not None:
            lines.append(f"whole report: {self.whole.counts()}")
        if self.repeated:
            lines.append(repeated_line(self.repeated, self.out))
        stats = self.page_stats
        if stats is not None and stats.heatmaps:
            lines.append(f"heatmaps: {stats.heatmaps} in {stats.seconds:.1f} s ({stats.seconds / stats.heatmaps:.1f} s each)")
        where = [f"report: {'standard output' if self.out == report.STDOUT else self.out}"]
        where += [f"{name}: {path}" for name, path in (("page", self.page), ("workbook", self.excel)) if path]
        lines.append("; ".join(where))
        return "\n".join(lines)


#: Films a message names before "and N more".
NAMED = 3


def repeated_line(repeated: Sequence[str], out: str) -> str:
    """The warning of a report that holds films twice (made by a resume of cxr-edge 0.6.0 with
    another spelling of the folder): its counts and page list every row."""
    named = ", ".join(repeated[:NAMED]) + (f" and {len(repeated) - NAMED} more" if len(repeated) > NAMED else "")
    return (f"warning: {count_films(len(repeated))} more than once in {out} (e.g. {named}): the same file "
            "under two spellings of its folder; the counts and the page list each row")


def count_films(n: int) -> str:
    return f"{n} film appears" if n == 1 else f"{n} films appear"


def classify_to_report(options: ClassifyOptions) -> Run:
    """Classify every input into the report; then, if asked, make the page and the workbook of
    the whole report from its rows, read back as ``cxr-edge page`` reads them.

    Inputs stream from discovery to the report: nothing grows with the number of files
    except discovery's set of paths (one row per file), with ``resume`` the set of files
    already done, and with a page the report's rows.
    """
    outputs = Outputs(options.html, options.excel, options.explain, options.phi, options.progress)
    if options.out != report.STDOUT:
        _check_report(Path(options.out), outputs, options.overwrite, options.resume)
    check_outputs(options.out, outputs, overwrite=options.overwrite, resume=options.resume)
    classifier = open_classifier(options.model, options.threads, options.device, options.threshold,
                                 options.screen_all)
    bundle = classifier.bundle
    run = Run(Tally(), str(options.out))
    kept: list[dict[str, str]] = []  # the rows of a report on stdout, which cannot be read back
    with report.ReportWriter(
        options.out,
        report_header(bundle, options.phi),
        bundle.short_id,
        overwrite=options.overwrite,
        resume=options.resume,
        threshold=bundle.threshold,
    ) as writer:
        try:
            listing = functools.partial(discover, options.paths, recursive=options.recursive)
            for cells in _classified(listing, classifier, writer, run.tally, options.workers, options.progress):
                if options.html is not None and writer.path is None:
                    kept.append(cells)
        except KeyboardInterrupt:
            raise Interrupted(_stopped_classifying(options, writer.rows)) from None
    run.tally.stop()
    if writer.path is None:
        rows = kept
    elif outputs or options.resume:
        rows = report.read_rows(writer.path)  # the whole report: a resumed run's outputs cover the runs before it
    else:
        return run
    if options.resume:
        run.whole = _tally(_results(rows, bundle.labels, writer.path))
    try:
        return _made_from(run, rows, writer.header, writer.path, classifier, outputs)
    except KeyboardInterrupt:
        raise Interrupted(_stopped_paging(options, len(rows))) from None


def _results(rows: Sequence[dict[str, str]], labels: Sequence[str], path: Path | None) -> list[Result]:
    """The rows of the report at ``path`` (None: on stdout) as results."""
    base = Path() if path is None else path.parent
    return [row_result(row, labels, base) for row in rows]


def _made_from(run: Run, rows: Sequence[dict[str, str]], header: Sequence[str], path: Path | None,
               classifier: Classifier, outputs: Outputs) -> Run:
    """The run, with the page and the workbook of a whole report's ``rows`` (read back from
    ``path``, or kept from stdout) written where ``outputs`` asks. A report with no row gets
    neither: an empty page would look like a quiet day."""
    run.repeated = repeated_films(rows, Path() if path is None else path.parent)
    if not (outputs and rows):
        return run
    results = _results(rows, classifier.bundle.labels, path)
    if outputs.excel is not None and path is not None:
        _write_workbook(outputs.excel, header, rows, results, path, classifier.bundle)
        run.excel = outputs.excel
    if outputs.html is not None:
        run.page_stats = _write_page(outputs, results, classifier, path, run.repeated)
        run.page = outputs.html
    return run


def _write_workbook(book: Path, header: Sequence[str], rows: Sequence[dict[str, str]], results: Sequence[Result],
                    path: Path, bundle: Bundle) -> None:
    """The workbook: the report's rows in the page's order, in the page's words."""
    from cxr_edge.html_report import order, screening  # local: only runs that ask for a workbook load it

    by_result = {id(result): row for result, row in zip(results, rows)}
    ordered = [{**by_result[id(r)], spreadsheet.SCREENING: screening(r, bundle)}
               for r in order(results, bundle.negative_label)]
    spreadsheet.write_xlsx(book, spreadsheet.worded(header), ordered, path)


def _classified(
    listing: Callable[[], Iterator[Found]], classifier: Classifier, writer: report.ReportWriter, tally: Tally,
    workers: int | None, progress: bool,
) -> Iterator[dict[str, str]]:
    """Classify the inputs ``listing()`` yields that are not yet in the report, writing and counting
    each result; yields each row's cells as the report holds them."""
    bundle = classifier.bundle

    def todo() -> Iterator[Found]:
        for found in listing():
            if writer.is_done(found.path):
                tally.skipped += 1
            else:
                yield found

    # Only a visible progress bar needs the total, at the cost of a second walk.
    total = sum(1 for _ in todo()) if progress else None
    tally.skipped = 0
    with tqdm(total=total, unit="img", file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
        for result in classify_files(todo(), classifier, workers=workers):
            result = viewer.hinted(result)
            cells = result_row(result, bundle.labels, bundle.threshold, bundle.short_id)
            writer.write(cells)
            tally.add(result)
            bar.update()
            yield {column: cells.get(column, "") for column in writer.header}


def _tally(results: Sequence[Result]) -> Tally:
    tally = Tally()
    for result in results:
        tally.add(result)
    return tally


def resume_command(options: ClassifyOptions) -> str:
    """The command that carries on this run: the same inputs, report, model and page, with ``--resume``."""
    words = ["cxr-edge", "classify", *map(str, options.paths), "--out", str(options.out), "--resume"]
    optional = {"--model": options.model, "--threshold": options.threshold, "--html": options.html,
                "--excel": options.excel, "--threads": options.threads, "--workers": options.workers}
    for flag, value in optional.items():
        words += [flag, str(value)] if value is not None else []
    words += ["--device", options.device] if options.device != CPU else []
    words += [flag for flag, on in (("--explain", options.explain), ("--no-phi", not options.phi),
                                     ("--no-recursive", not options.recursive)) if on]
    return shlex.join(words)


def page_command(options: ClassifyOptions) -> str:
    """The command that builds the page of a finished report."""
    words = ["cxr-edge", "page", str(options.out), "--html", str(options.html)]
    words += ["--model", str(options.model)] if options.model is not None else []
    words += [flag for flag, on in (("--explain", options.explain), ("--no-phi", not options.phi)) if on]
    return shlex.join(words)


def _stopped_classifying(options: ClassifyOptions, rows: int) -> str:
    if options.out == report.STDOUT:
        return f"interrupted after {rows} rows on standard output (a report on stdout cannot be resumed)"
    return (f"interrupted: {options.out} keeps {rows} rows; continue with:\n  {resume_command(options)}")


def _stopped_paging(options: ClassifyOptions, rows: int) -> str:
    where = "standard output" if options.out == report.STDOUT else str(options.out)
    return (f"interrupted while writing the page: the report ({where}, {rows} rows) is complete; "
            f"the page {options.html} was not written" + (
                "" if options.out == report.STDOUT else f"; build it with:\n  {page_command(options)}"))


def check_outputs(out: str | Path, outputs: Outputs, overwrite: bool = False, resume: bool = False) -> None:
    """Refuse, before any work, a page or workbook path that would destroy the report ``out`` or a
    file it does not own, or that could only be written after the whole run to fail (missing folder)."""
    if outputs.excel is not None and str(out) == report.STDOUT:
        raise report.NotAFile("--excel needs a report file to read back; --out - writes to stdout")
    if outputs.html is not None and outputs.html == outputs.excel:
        raise report.ReportExists(f"--html and --excel both name {outputs.html}; give each its own file")
    for flag, path, owned in (("--html", outputs.html, _page_of), ("--excel", outputs.excel, spreadsheet.report_of)):
        if path is not None:
            _check_target(flag, path, out, owned, overwrite, resume)


def _check_report(out: Path, outputs: Outputs, overwrite: bool, resume: bool) -> None:
    """A report in a missing folder, or one that exists without --resume or --overwrite: the
    message names the report and its outputs, and what to add."""
    if not out.parent.is_dir():
        raise report.NotAFile(f"--out {out}: the folder {out.parent} does not exist; create it "
                              f"(mkdir -p {shlex.quote(str(out.parent))}) or give another path")
    if overwrite or resume or not _has_bytes(out):
        return
    made = [str(p) for p in (outputs.html, outputs.excel) if p is not None and p.exists()]
    also = f" (and {' and '.join(made)})" if made else ""
    raise report.ReportExists(f"{out}{also} already exists: add --resume to continue it, or --overwrite "
                              "to replace it, or give another --out")


def _has_bytes(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _check_target(flag: str, path: Path, out: str | Path, owned: Callable[[Path], Path | None], overwrite: bool,
                  resume: bool) -> None:
    """``owned(path)``: the report an existing output was made from, which a resume may replace
    (its new version lists every row of the report)."""
    if not path.parent.is_dir():
        raise report.NotAFile(f"{flag} {path}: the folder {path.parent} does not exist; "
                              "create it or give another path")
    if str(out) != report.STDOUT and path.resolve() == Path(out).resolve():
        raise report.ReportExists(f"{flag} {path} is the CSV report itself; give it another name")
    if not path.exists() or overwrite:
        return
    if not resume:
        raise report.ReportExists(f"{path} exists; use --overwrite to replace it (or another {flag} path)")
    if owned(path) != Path(out).absolute():
        raise report.ReportExists(f"{path} exists and was not made from {out}; give it another name")


def _page_of(page: Path) -> Path | None:
    """The report an existing cxr-edge page was made from, if it is one."""
    from cxr_edge.html_report import report_of  # local: only runs that ask for a page load it

    try:
        with open(page, encoding="utf-8", errors="replace") as fh:
            return report_of(fh.read(4096))
    except OSError:
        return None


def _write_page(outputs: Outputs, results: list[Result], classifier: Classifier, path: Path | None,
                repeated: Sequence[str]) -> PageStats:
    """The HTML page of the whole report at ``path`` (None: on stdout), made with the run's own
    classifier (for the thumbnails and heatmaps)."""
    from cxr_edge.html_report import Source, write_html  # local: only runs that ask for a page load it

    assert outputs.html is not None
    source = Source(path, len(results), repeated=len(repeated))
    try:
        return write_html(outputs.html, results, classifier, source, explain_flagged=outputs.explain,
                          progress=outputs.progress, phi=outputs.phi)
    except OSError as exc:
        raise report.ReportError(f"cannot write the HTML report {outputs.html}: {exc.strerror or exc}") from exc


def page_from_report(
    report_path: Path, page: Path, model: str | Path | None = None, explain: bool = False, phi: bool = True,
    overwrite: bool = False, progress: bool = False,
) -> Run:
    """``cxr-edge page``: the page of any report, with the model and threshold its rows were decided by."""
    rows = report.read_rows(report_path)
    if not rows:
        raise report.ReportError(f"{report_path} holds no row with as many cells as its header "
                                 "(or is not a cxr-edge report)")
    outputs = Outputs(html=page, explain=explain, phi=phi, progress=progress)
    check_outputs(report_path, outputs, overwrite=overwrite)
    classifier = open_classifier(model or _bundled_name(rows), None, threshold=_threshold(rows, report_path))
    made_by = _one(rows, "model", report_path)
    if made_by != classifier.bundle.short_id:
        raise report.ReportError(f"{report_path} was written by model {made_by}, not {classifier.bundle.short_id}: "
                                  "give that model's bundle with --model")
    run = Run(None, str(report_path), whole=_tally(_results(rows, classifier.bundle.labels, report_path)))
    return _made_from(run, rows, list(rows[0]), report_path, classifier, outputs)


def _one(rows: list[dict[str, str]], column: str, path: Path) -> str:
    """The one value a column has in every row (the model, the threshold), or a refusal."""
    values = {row.get(column, "") for row in rows}
    if len(values) != 1 or "" in values:
        raise report.ReportError(f"{path}: the {column!r} column holds {len(values)} different values "
                                 f"({', '.join(sorted(values)[:3])}); one page shows one model at one threshold")
    return values.pop()


def _threshold(rows: list[dict[str, str]], path: Path) -> float:
    cell = _one(rows, "threshold", path)
    try:
        return float(cell)
    except ValueError:  # e.g. "0,6993" from a spreadsheet in a comma-decimal language
        raise report.ReportError(f"{path}: the threshold {cell!r} is not a number written with a decimal "
                                 "point; was the report re-saved by a spreadsheet?") from None


def _bundled_name(rows: list[dict[str, str]]) -> str | None:
    """The bundled model a report names (``pneumonia@...`` -> ``pneumonia``), None if not installed."""
    name = rows[0].get("model", "").partition("@")[0]
    return name if name in list_bundled() else None
