"""The ``cxr-edge`` command line: parse options, call the library, map errors to exit codes.

Each command is a thin shell over a library function (``classify.classify_to_report``
and friends); shared options are defined once (``model_option`` ...), so a new command
or option is a few lines. Exceptions from the library become one-line messages and the
documented exit codes, never tracebacks.

The library is imported inside the commands, not here: ``cxr-edge --help`` then starts
without numpy, Pillow, tqdm or the interpreter (see docs/performance.md, cold start).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import click

from cxr_edge import __version__, commands
from cxr_edge.commands import EXIT_FATAL, EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK, FloatRange

if TYPE_CHECKING:
    from cxr_edge.classify import ClassifyOptions
    from cxr_edge.review.evaluate import Evaluation

PROG = "cxr-edge"
DEVICES = ("cpu", "edgetpu")  # = classify.DEVICES, written out so --help needs no import of the engine

# The codes of all three command lines (cxr_edge/commands.py); what they mean here:
EXIT_UNREADABLE = EXIT_FINDINGS  # some inputs could not be read or were rejected by the gate (each has a row saying why)
# 2: usage errors (Click); EXIT_FATAL: model missing/damaged, report not writable,
# no interpreter or Edge TPU
EXIT_CODES_HELP = (
    "\b\nExit codes:\n"
    "  0  every image was classified\n"
    "  1  some inputs could not be read (status=error) or are not upright frontal chest films\n"
    "     (status=rejected); each still has a row saying why; or no image files found\n"
    "  2  usage error (bad option, missing path, report exists without --resume/--overwrite,\n"
    "     --out that is a folder, device or pipe)\n"
    "  3  fatal: model missing or damaged, report not writable or locked, no interpreter or Edge TPU\n"
    "  130  interrupted (Ctrl-C); continue with --resume"
)


def fail(message: str, code: int = EXIT_FATAL) -> None:
    commands.fail(PROG, message, code)


@contextlib.contextmanager
def fatal_errors(interrupted: str = "interrupted") -> Iterator[None]:
    """Turn the library's known failures into a message and an exit code.

    ``interrupted`` is the Ctrl-C message: only a command that can resume should say how.
    """
    from cxr_edge import runtime
    from cxr_edge.bundle import BundleError
    from cxr_edge.report import NotAFile, ReportError, ReportExists

    try:
        yield
    except (ReportExists, NotAFile) as exc:
        raise click.UsageError(str(exc)) from exc
    except (BundleError, runtime.RuntimeUnavailable, ReportError) as exc:
        fail(str(exc))
    except KeyboardInterrupt as exc:
        fail(str(exc) or interrupted, EXIT_INTERRUPTED)  # classify.Interrupted says what is kept and how to go on
    except BrokenPipeError:
        sys.stderr.close()  # e.g. `--out - | head`: the reader left, nothing more to say
        sys.exit(EXIT_OK)


def model_option(func: Callable) -> Callable:
    """``--model NAME|PATH``, shared by every command that loads a model."""
    return click.option(
        "--model",
        "-m",
        metavar="NAME|PATH",
        default=None,
        help="A bundled model name or the path of a bundle (.json or .tflite). Default: the bundled 'pneumonia'.",
    )(func)


def model_run_options(func: Callable) -> Callable:
    """Options of every command that runs a model over images."""
    for option in reversed(
        [
            model_option,
            click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
                         help="Run on the CPU or on a Coral Edge TPU (needs libedgetpu and a compiled bundle)."),
            click.option("--threads", type=click.IntRange(min=1), default=None,
                         help="Threads of one shared interpreter [default: one single-threaded interpreter per decoding thread]."),
            click.option("--workers", type=click.IntRange(min=1), default=None,
                         help="Image decoding threads [default: the CPU count, at most 4]."),
            click.option("--recursive/--no-recursive", default=True, show_default=True,
                         help="Walk folders recursively."),
            click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary."),
        ]
    ):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@commands.version_option(PROG)
def main() -> None:
    """Screen chest X-rays for pneumonia with a small TFLite model, on a Raspberry Pi or a Coral."""


@main.command(epilog=EXIT_CODES_HELP + "\n\n" + commands.example("cxr-edge classify ./folder --out report.csv --html page.html"))
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", required=True, metavar="FILE|-", help="The CSV report to write ('-' for stdout).")
@click.option("--overwrite", is_flag=True, help="Replace an existing report.")
@click.option("--resume", is_flag=True,
              help="Continue an existing report of this model and threshold: skip images already 'ok', retry errors.")
@click.option("--no-phi", is_flag=True, help="Leave patient identifiers (DICOM patient_id, study_date) out.")
@click.option("--html", "html", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a self-contained HTML page of the whole report, most suspicious image first.")
@click.option("--explain", is_flag=True, help="With --html: add an occlusion heatmap for each flagged image.")
@click.option("--excel", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="BOOK.xlsx",
              help="Also write the whole report as an .xlsx workbook: names and numbers open right in Excel "
                   "and LibreOffice in any language (a CSV's decimal points do not).")
@click.option("--threshold", type=FloatRange(0, 1), default=None,
              help="Flag at this probability instead of the model's threshold (one chosen on your own labelled "
                   "films with 'cxr-edge evaluate --target-sensitivity'); every row records the threshold used.")
@click.option("--screen-all", is_flag=True,
              help="Research only: screen the images the model's gate rejects too (documents, other body parts, "
                   "sideways films); each such row is screened with a warning saying so in its note.")
@model_run_options
def classify(paths: tuple[Path, ...], out: str, overwrite: bool, resume: bool, no_phi: bool, html: Path | None,
             explain: bool, excel: Path | None, threshold: float | None, screen_all: bool, model: str | None,
             device: str, threads: int | None, workers: int | None, recursive: bool, quiet: bool) -> None:
    """Classify the images in PATHS (folders or files) into a CSV report, one row per image.

    JPEG, PNG (8/16 bit), BMP, TIFF and DICOM files are read; hidden files are skipped.
    Rows are written as results arrive, so an interrupted run can be continued with --resume.
    An image the model's gate finds is not an upright frontal chest film (a document, a photo,
    another body part, a lateral view, a film turned sideways or upside down) is not screened:
    its row has status=rejected and says in 'error' what was measured and what to do.
    """
    from cxr_edge.classify import ClassifyOptions, classify_to_report

    if overwrite and resume:
        raise click.UsageError("--overwrite and --resume exclude each other")
    if out == "-" and (overwrite or resume):
        raise click.UsageError("--overwrite and --resume need a report file; --out - writes to stdout")
    if explain and html is None:
        raise click.UsageError("--explain needs --html")
    options = ClassifyOptions(
        paths=paths, out=out, model=model, recursive=recursive, workers=workers, threads=threads,
        device=device, overwrite=overwrite, resume=resume, phi=not no_phi,
        progress=not quiet and sys.stderr.isatty(), threshold=threshold, html=html, explain=explain, excel=excel,
        screen_all=screen_all,
    )
    with fatal_errors(interrupted="interrupted; run again with --resume to continue"):
        run = classify_to_report(options)
    tally = run.tally
    assert tally is not None  # classify always classifies
    if not quiet:
        click.echo(run.summary(), err=True)
    if tally.inputs == 0:  # even with --quiet: an unmounted share must not look like a quiet day
        fail(no_images(paths, recursive), EXIT_UNREADABLE)
    sys.exit(EXIT_UNREADABLE if tally.errors else EXIT_OK)


def no_images(paths: tuple[Path, ...], recursive: bool) -> str:
    """Why nothing was classified: no image file, and the first few files passed over."""
    from cxr_edge.discover import passed_over

    named, total = passed_over(paths, recursive)
    message = f"no image files found in {', '.join(map(str, paths))}"
    if not named:
        return message
    more = f" and {total - len(named)} more" if total > len(named) else ""
    return (f"{message}; passed over {', '.join(named)}{more} (read are JPEG, PNG, BMP, TIFF and DICOM files: "
            "convert the films to one of them)")


PAGE_EXIT_HELP = (
    "\b\nExit codes:\n"
    "  0  the page was written\n"
    "  2  usage error (bad option, missing report, page exists without --overwrite)\n"
    "  3  fatal: report unreadable or written by another model, model missing, page not writable"
)


@main.command(epilog=PAGE_EXIT_HELP + "\n\n" + commands.example("cxr-edge page report.csv --html page.html --explain"))
@click.argument("report_csv", metavar="REPORT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--html", "html", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The HTML page to write.")
@click.option("--explain", is_flag=True, help="Add an occlusion heatmap for each flagged image.")
@click.option("--overwrite", is_flag=True, help="Replace an existing page.")
@click.option("--no-phi", is_flag=True, help="Leave patient identifiers (DICOM patient_id, study_date) out.")
@model_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
def page(report_csv: Path, html: Path, explain: bool, overwrite: bool, no_phi: bool, model: str | None,
         quiet: bool) -> None:
    """Build the HTML triage page of any REPORT (a classify CSV): every row, most suspicious first.

    The model is the bundled one the report names, or --model; the threshold is the report's.
    """
    from cxr_edge.classify import page_from_report

    with fatal_errors():
        run = page_from_report(report_csv, html, model=model, explain=explain, phi=not no_phi, overwrite=overwrite,
                               progress=not quiet and sys.stderr.isatty())
    if not quiet:
        click.echo(run.summary(), err=True)


INFO_EXIT_HELP = (
    "\b\nExit codes:\n"
    "  0  the summary (or with --json the model's manifest) was printed\n"
    "  2  usage error (bad option)\n"
    "  3  fatal: model missing or damaged, no interpreter"
)


@main.command(epilog=INFO_EXIT_HELP + "\n\n" + commands.example("cxr-edge info --model pneumonia",
                                                                 "cxr-edge info --json > manifest.json"))
@model_option
@click.option("--json", "as_json", is_flag=True, help="Print the model's whole manifest as JSON instead.")
def info(model: str | None, as_json: bool) -> None:
    """Summarise the model (name, version, labels, threshold, gate, views, origin) and the software that runs it."""
    import json
    import platform

    import numpy
    import PIL

    from cxr_edge import runtime
    from cxr_edge.bundle import list_bundled, load_bundle
    from cxr_edge.html_report import model_name

    with fatal_errors():
        bundle = load_bundle(model)
        if as_json:
            click.echo(json.dumps(bundle.manifest, indent=2))
            return
        click.echo(f"model: {model_name(bundle)} ({bundle.short_id}, {bundle.quantization}; {bundle.manifest_path})")
        click.echo(f"labels: {', '.join(bundle.labels)}; flagged when {bundle.rule.score_name} >= {bundle.threshold:g}"
                   f" ({bundle.manifest.get('threshold_rule', 'rule not recorded')})")
        click.echo(f"gate: {gate_line(bundle)}")
        click.echo(f"test-time views: {', '.join(bundle.views)}{views_note(bundle)}")
        click.echo(f"adapted: {adapted_line(bundle.manifest.get('adapted'))}")
        click.echo(f"interpreter: {runtime.backend_name()} {runtime.backend_version()}")
        click.echo(f"cxr-edge {__version__}; python {platform.python_version()} ({platform.system()} "
                   f"{platform.machine()}); numpy {numpy.__version__}, pillow {PIL.__version__}")
        click.echo(f"bundled models: {', '.join(list_bundled()) or 'none installed'}")
        click.echo("the whole manifest: cxr-edge info --json" + (f" --model {model}" if model else ""))


def adapted_line(record: object) -> str:
    """What ``info`` says of the manifest's ``adapted`` record (``cxr-edge adapt``): the bundle a
    model was adapted from, read defensively, as a manifest may come from another version."""
    if record is None:
        return "no (as converted)"
    base = record.get("base") if isinstance(record, dict) else None
    if not isinstance(base, dict):
        return f"{record} (a record this cxr-edge cannot read)"
    named = " ".join(str(base[k]) for k in ("name", "version") if base.get(k)) or "another bundle"
    sha = f" (sha256 {str(base['sha256'])[:12]})" if base.get("sha256") else ""
    date = f" on {record['date']}" if record.get("date") else ""
    return f"from {named}{sha}{date}"


def views_note(bundle) -> str:
    """What ``info`` adds to the views line: how many invokes, and which probabilities they average."""
    n = len(bundle.views)
    if n == 1:
        return ""
    cascade = bundle.cascade
    only = "" if cascade is None else (f"; the other views run only for films whose own probability lies in "
                                       f"[{bundle.threshold - cascade.below:.3f}, {bundle.threshold + cascade.above:.3f})")
    if bundle.view_average == "negative":
        return (f" (the {bundle.negative_label} probability averaged over {n} invokes per film; the other labels "
                f"split as the film alone splits them{only})")
    return f" (probabilities averaged over {n} invokes per film{only})"


def gate_line(bundle) -> str:
    """What ``info`` says of the bundle's out-of-distribution gate."""
    if bundle.gate is None:
        return ("none: this bundle screens every readable image, documents and sideways films included "
                f"(manifest schema {bundle.manifest.get('schema_version')}; rebuild it with "
                "'python -m convert.add_gate' to add one)")
    return (f"on ({bundle.gate_path.name}): rejects images whose features lie farther than "
            f"{bundle.gate.max_distance:.0f} from the training films' or whose upright-film score is below "
            f"{bundle.gate.min_upright:.2f}")


EXIT_DATA = 4  # evaluate: the labelled folder does not fit the model
EVALUATE_EXIT_HELP = (
    "\b\nExit codes:\n"
    "  0  every image was classified and the metrics printed\n"
    "  1  some images could not be read (left out of the metrics, listed in predictions.csv)\n"
    "  2  usage error (bad option, missing folder)\n"
    "  3  fatal: model missing or damaged, output not writable, no interpreter or Edge TPU\n"
    "  4  the folder does not fit the model: no class subfolders, a folder name that is no label\n"
    "     of the model, no images in the class folders, or none of them readable"
)


@main.command(epilog=EVALUATE_EXIT_HELP + "\n\n" + commands.example("cxr-edge evaluate labelled/ --out-dir eval/ --target-sensitivity 0.97"))
@click.argument("data_dir", metavar="DIR", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write metrics.json, predictions.csv and PNG plots (ROC, confusion, histogram) here.")
@click.option("--threshold", type=FloatRange(0, 1), default=None,
              help="Evaluate this operating point instead of the model's threshold.")
@click.option("--target-sensitivity", type=FloatRange(0, 1, min_open=True), default=None, metavar="S",
              help="Also report the threshold that reaches sensitivity S on DIR, and its specificity.")
@click.option("--prevalence", "prevalences", type=FloatRange(0, 1, min_open=True, max_open=True),
              multiple=True, metavar="P",
              help="Also report the accuracy, PPV and NPV to expect where a fraction P of the films are "
                   "positive (your clinic's mix rather than DIR's); repeatable.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots (they need matplotlib).")
@model_run_options
def evaluate(data_dir: Path, out_dir: Path | None, threshold: float | None, target_sensitivity: float | None,
             prevalences: tuple[float, ...], no_plots: bool, model: str | None, device: str, threads: int | None,
             workers: int | None, recursive: bool, quiet: bool) -> None:
    """Measure the model on labelled images: DIR holds one subfolder per class, named by its labels.

    For a binary model: DIR/NORMAL and DIR/PNEUMONIA. For a subtype model: DIR/NORMAL,
    DIR/BACTERIAL, DIR/VIRAL, or a Kermany-style DIR/PNEUMONIA whose file names say
    'bacteria' or 'virus'. Prints accuracy, sensitivity, specificity, precision, F1, balanced
    accuracy and AUC with bootstrap 95% intervals, and the confusion matrix.
    """
    from cxr_edge.review import evaluate as evaluation

    with fatal_errors():
        try:
            ev = evaluation.run(data_dir, model=model, threshold=threshold, target_sensitivity=target_sensitivity,
                                prevalences=prevalences,
                                threads=threads, workers=workers, edgetpu=device == "edgetpu", recursive=recursive,
                                progress=not quiet and sys.stderr.isatty())
        except evaluation.DataLayoutError as exc:
            fail(str(exc), EXIT_DATA)
        click.echo(evaluation.format_table(ev))
        for result in ev.errors + ev.rejected:
            click.echo(f"cxr-edge: warning: {result.display}: {result.error}", err=True)
        if out_dir is not None:
            _evaluation_files(ev, out_dir, plots=not no_plots, quiet=quiet)
    sys.exit(EXIT_UNREADABLE if ev.errors or ev.rejected else EXIT_OK)


def _evaluation_files(ev: Evaluation, out_dir: Path, plots: bool, quiet: bool) -> None:
    from cxr_edge.review import evaluate as evaluation
    from cxr_edge.review import plots as plotting
    from cxr_edge.report import NotAFile

    try:
        plotting.remove_plots(out_dir)
        written = evaluation.write_outputs(ev, out_dir)
        if plots:
            written += plotting.evaluation_plots(ev, out_dir)
    except plotting.PlotsUnavailable as exc:
        click.echo(f"cxr-edge: warning: {exc}", err=True)
    except (OSError, NotAFile) as exc:
        fail(f"cannot write into {out_dir}: {getattr(exc, 'strerror', None) or exc}")
    else:
        if not quiet:
            click.echo(f"wrote {', '.join(p.name for p in written)} to {out_dir}", err=True)


EXPLAIN_EXIT_HELP = (
    "\b\nExit codes:\n"
    "  0  a heatmap was written for every image\n"
    "  1  some inputs could not be read or are not upright frontal chest films (the gate rejects\n"
    "     them, as classify does; each named on stderr with why), or no image files found\n"
    "  2  usage error (bad option, missing path)\n"
    "  3  fatal: model missing or damaged, output folder not writable, no interpreter"
)


@main.command(epilog=EXPLAIN_EXIT_HELP + "\n\n" + commands.example("cxr-edge explain film.jpg --out-dir heatmaps/"))
@click.argument("paths", metavar="IMAGE...", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the heatmap PNGs (one per image: <name>.occlusion.png).")
@click.option("--window", type=click.IntRange(min=2), default=32, show_default=True,
              help="Side of the hidden square, in model-input pixels.")
@click.option("--stride", type=click.IntRange(min=1), default=16, show_default=True,
              help="Step between hidden squares; smaller is finer and slower (passes grow as 1/stride^2).")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True,
              help="Occluded copies per interpreter call.")
@click.option("--screen-all", is_flag=True,
              help="Research only: draw heatmaps of the images the model's gate rejects too; each such "
                   "figure says so.")
@model_option
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Interpreter threads [default: the CPU count].")
@click.option("--recursive/--no-recursive", default=True, show_default=True, help="Walk folders recursively.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no per-image lines.")
def explain(paths: tuple[Path, ...], out_dir: Path, window: int, stride: int, batch: int, screen_all: bool,
            model: str | None, threads: int | None, recursive: bool, quiet: bool) -> None:
    """Write occlusion heatmaps: where hiding the image lowers the model's evidence of pneumonia most.

    Each square of the image is hidden in turn (filled with the image's mean grey) and the
    model is run again through the TFLite interpreter; no TensorFlow is needed. An image the
    model's gate rejects (not an upright frontal chest film) gets no heatmap, as it gets no
    screening in classify.
    """
    from cxr_edge import explain as explaining
    from cxr_edge.classify import open_classifier
    from cxr_edge.discover import discover
    from cxr_edge.engine import default_threads

    errors = 0
    with fatal_errors():
        classifier = open_classifier(model, threads or default_threads(), screen_all=screen_all)
        inputs = list(discover(paths, recursive=recursive))
        if not inputs:
            fail("no image files found", EXIT_UNREADABLE)
        try:
            outcomes = explaining.explain_to_dir(inputs, classifier, out_dir, window=window, stride=stride,
                                                 batch=batch, progress=not quiet and sys.stderr.isatty())
            for done in outcomes:
                if done.error:
                    errors += 1
                    click.echo(f"cxr-edge: {done.status}: {done.display}: {done.error}", err=True)
                elif not quiet:
                    heat = done.heatmap
                    warning = f" ({done.warning})" if done.warning else ""
                    click.echo(f"{done.display}: probability {heat.probability:.3f}, {heat.passes} passes "
                               f"in {heat.seconds:.2f} s -> {done.written}{warning}")
        except OSError as exc:
            fail(f"cannot write into {out_dir}: {exc.strerror or exc}")
    sys.exit(EXIT_UNREADABLE if errors else EXIT_OK)


# --- cxr-edge adapt (issue 33): its own block, apart from the other commands' edits.
EXIT_NOT_ADAPTED = 5  # adapt: the refitted head did not beat the shipped bundle out of fold; only the report is written
ADAPT_EXIT_HELP = (
    "\b\nExit codes:\n"
    "  0  the adapted bundle and its report were written\n"
    "  1  the same, but some films could not be read or were rejected by the gate (named on stderr,\n"
    "     never fitted on)\n"
    "  2  usage error (bad option, missing folder, --out that exists and is not an empty folder)\n"
    "  3  fatal: model missing or damaged, or without a features output or head (the message names the\n"
    "     command that adds one), output not writable, no interpreter\n"
    "  4  the folder does not fit: no class subfolders, a folder name that is no label of the model,\n"
    "     mostly rejected by the gate, or too few films or patients of a class (40 films of 25 patients)\n"
    "  5  not adapted: out of fold the refitted head did not beat the shipped bundle; only the report\n"
    "     (adapt-report.md/.json, with the threshold for the shipped bundle on these films) is written"
)


@main.command(epilog=ADAPT_EXIT_HELP + "\n\n" + commands.example(
    "cxr-edge adapt labelled/ --out site-bundle/ --patients patients.csv"))
@click.argument("data_dir", metavar="LABELLED_DIR", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="A new (or empty) folder for the adapted bundle and its report.")
@model_option
@click.option("--target-sensitivity", type=FloatRange(0, 1, min_open=True), default=None, metavar="S",
              help="Choose the adapted threshold for sensitivity S out of fold [default: the target the model's "
                   "own threshold was chosen for].")
@click.option("--patients", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="FILE.csv",
              help="A file,patient list (file as below LABELLED_DIR, or its bare name), for films without a DICOM "
                   "PatientID: the folds never split a patient.")
@click.option("--name", default=None, help="The adapted bundle's name [default: <model>-adapted-<8 hex of the new head>].")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Image decoding threads [default: the CPU count, at most 4].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
def adapt(data_dir: Path, out: Path, model: str | None, target_sensitivity: float | None, patients: Path | None,
          name: str | None, workers: int | None, quiet: bool) -> None:
    """Refit the model's last layer on a site's labelled films (LABELLED_DIR, one subfolder per label, as
    'evaluate' reads them), check it out of fold against the shipped bundle, and write an adapted bundle
    only if it does better there.

    The report (adapt-report.md and .json in --out) shows both on the same films with intervals.
    """
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: small fits, 100x slower when threads wait
    from cxr_edge.review import adapt as adapting

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise click.UsageError(f"--out {out} exists and is not an empty folder: give a new one")
    with fatal_errors():
        try:
            adaptation = adapting.adapt(data_dir, model=model, target_sensitivity=target_sensitivity,
                                        patients=patients, workers=workers, progress=not quiet and sys.stderr.isatty())
        except adapting.DataLayoutError as exc:
            fail(str(exc), EXIT_DATA)
        for result in adaptation.not_used:
            click.echo(f"cxr-edge: warning: {result.display}: {adapting.left_out_reason(result)}", err=True)
        if adapting.one_per_file(adaptation):
            click.echo(f"cxr-edge: warning: {adapting.one_per_file(adaptation)} films have no known patient and "
                       "count as their own: the figures may be optimistic (give --patients)", err=True)
        try:
            written = adapting.write(adaptation, out, name)
        except OSError as exc:
            fail(f"cannot write into {out}: {getattr(exc, 'strerror', None) or exc}")
        click.echo("\n".join(adapting.table(adaptation) + [""] + adapting.verdict_lines(
            adaptation, written[0] if adaptation.improved else None)))
        if not quiet:
            click.echo(f"wrote {', '.join(p.name for p in written)} to {out}", err=True)
    if not adaptation.improved:
        sys.exit(EXIT_NOT_ADAPTED)
    sys.exit(EXIT_UNREADABLE if any(r.status != "ok" for r in adaptation.results) else EXIT_OK)
