"""``cxr-edge classify`` as a library call: discover -> engine -> report, with a progress bar.

The CLI parses options into :class:`ClassifyOptions` and calls :func:`classify_to_report`;
tests and other commands call it the same way. Errors that stop the run are raised as
they come (:class:`~cxr_edge.bundle.BundleError`,
:class:`~cxr_edge.runtime.RuntimeUnavailable`, :class:`~cxr_edge.report.ReportError`);
unreadable inputs are not errors here, they are rows.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Iterator, Sequence

from tqdm import tqdm

from cxr_edge import report
from cxr_edge.bundle import DEFAULT_MODEL, Bundle, BundleError, list_bundled, load_bundle
from cxr_edge.discover import Found, discover
from cxr_edge.engine import Classifier, Result, Tally, classify

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
    html: Path | None = None  # also write the HTML page of this run's results here
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
    return report.columns(bundle.labels, multiclass=bundle.task == "multiclass", phi=phi)


def classify_to_report(options: ClassifyOptions) -> Tally:
    """Classify every input into the report (and the HTML page, if asked); return the counts.

    Inputs stream from discovery to the report: nothing grows with the number of files
    except discovery's set of absolute paths (one row per file), with ``resume`` the set of
    paths already done, and with ``html`` the results.
    """
    _check_html_target(options)
    classifier = open_classifier(options.model, options.threads, options.device, options.threshold,
                                 options.screen_all)
    bundle = classifier.bundle
    tally = Tally()
    results: list[Result] = []
    with report.ReportWriter(
        options.out,
        report_header(bundle, options.phi),
        bundle.short_id,
        overwrite=options.overwrite,
        resume=options.resume,
        threshold=bundle.threshold,
    ) as writer:

        def todo() -> Iterator[Found]:
            for found in discover(options.paths, recursive=options.recursive):
                if writer.is_done(found.display):
                    tally.skipped += 1
                else:
                    yield found

        # Only a visible progress bar needs the total, at the cost of a second walk.
        total = sum(1 for _ in todo()) if options.progress else None
        tally.skipped = 0
        with tqdm(total=total, unit="img", file=sys.stderr, disable=not options.progress, dynamic_ncols=True) as bar:
            for result in classify(todo(), classifier, workers=options.workers):
                writer.write(report.result_row(result, bundle.labels, bundle.threshold, bundle.short_id))
                tally.add(result)
                if options.html is not None:
                    results.append(result)
                bar.update()
    if options.html is not None:
        _write_page(options, results, classifier)
    return tally


def _check_html_target(options: ClassifyOptions) -> None:
    """Refuse, before any work, an HTML path that would destroy the report or an older page,
    or that could only be written after the whole run to fail (its folder is missing)."""
    page = options.html
    if page is None:
        return
    if not page.parent.is_dir():
        raise report.NotAFile(f"--html {page}: the folder {page.parent} does not exist; "
                              "create it or give another path")
    if options.out != "-" and page.resolve() == Path(options.out).resolve():
        raise report.ReportExists(f"--html {page} is the CSV report itself; give the page another name")
    if not page.exists():
        return
    if options.resume:  # the page shows one run: replacing it would drop the earlier one
        raise report.ReportExists(f"{page} exists, and this resumed run's page would list only the images it "
                           "classifies; give this page another name")
    if not options.overwrite:
        raise report.ReportExists(f"{page} exists; use --overwrite to replace it (or another --html path)")


def _write_page(options: ClassifyOptions, results: list[Result], classifier: Classifier) -> None:
    """The HTML page of this run, made with the run's own classifier (for the heatmaps)."""
    from cxr_edge.html_report import write_html  # local: only runs that ask for a page load it

    try:
        write_html(options.html, results, classifier, explain_flagged=options.explain, progress=options.progress,
                   phi=options.phi)
    except OSError as exc:
        raise report.ReportError(f"cannot write the HTML report {options.html}: {exc.strerror or exc}") from exc
