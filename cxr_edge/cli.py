"""The ``cxr-edge`` command line: parse options, call the library, map errors to exit codes.

Each command is a thin shell over a library function (``classify.classify_to_report``
and friends); shared options are defined once (``model_option`` ...), so a new command
or option is a few lines. Exceptions from the library become one-line messages and the
documented exit codes, never tracebacks.
"""

from __future__ import annotations

import contextlib
import json
import platform
import sys
from pathlib import Path
from typing import Callable, Iterator

import click

from cxr_edge import __version__, runtime
from cxr_edge.bundle import BundleError, list_bundled, load_bundle
from cxr_edge.classify import DEVICES, ClassifyOptions, classify_to_report
from cxr_edge.engine import default_threads, default_workers
from cxr_edge.report import ReportError, ReportExists

EXIT_OK = 0
EXIT_UNREADABLE = 1  # some inputs could not be read (each has an error row)
EXIT_USAGE = 2  # Click's code for usage errors
EXIT_FATAL = 3  # model missing/damaged, report not writable, no interpreter or Edge TPU
EXIT_CODES_HELP = (
    "\b\nExit codes:\n"
    "  0  every image was classified\n"
    "  1  some inputs could not be read (each still has a row with status=error)\n"
    "  2  usage error (bad option, missing path, report exists without --resume/--overwrite)\n"
    "  3  fatal: model missing or damaged, report not writable or locked, no interpreter or Edge TPU"
)


def fail(message: str, code: int = EXIT_FATAL) -> None:
    click.echo(f"cxr-edge: error: {message}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def fatal_errors() -> Iterator[None]:
    """Turn the library's known failures into a message and an exit code."""
    try:
        yield
    except ReportExists as exc:
        raise click.UsageError(str(exc)) from exc
    except (BundleError, runtime.RuntimeUnavailable, ReportError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; run again with --resume to continue", 130)
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
                         help=f"Interpreter threads [default: {default_threads()}, the CPU count]."),
            click.option("--workers", type=click.IntRange(min=1), default=None,
                         help=f"Image decoding threads [default: {default_workers()}]."),
            click.option("--recursive/--no-recursive", default=True, show_default=True,
                         help="Walk folders recursively."),
            click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary."),
        ]
    ):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="cxr-edge")
def main() -> None:
    """Screen chest X-rays for pneumonia with a small TFLite model, on a Raspberry Pi or a Coral."""


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", required=True, metavar="FILE|-", help="The CSV report to write ('-' for stdout).")
@click.option("--overwrite", is_flag=True, help="Replace an existing report.")
@click.option("--resume", is_flag=True,
              help="Continue an existing report: skip images already 'ok' with this model, retry errors.")
@click.option("--no-phi", is_flag=True, help="Leave patient identifiers (DICOM patient_id, study_date) out.")
@model_run_options
def classify(paths: tuple[Path, ...], out: str, overwrite: bool, resume: bool, no_phi: bool, model: str | None,
             device: str, threads: int | None, workers: int | None, recursive: bool, quiet: bool) -> None:
    """Classify the images in PATHS (folders or files) into a CSV report, one row per image.

    JPEG, PNG (8/16 bit), BMP, TIFF and DICOM files are read; hidden files are skipped.
    Rows are written as results arrive, so an interrupted run can be continued with --resume.
    """
    if overwrite and resume:
        raise click.UsageError("--overwrite and --resume exclude each other")
    options = ClassifyOptions(
        paths=paths, out=out, model=model, recursive=recursive, workers=workers, threads=threads,
        device=device, overwrite=overwrite, resume=resume, phi=not no_phi,
        progress=not quiet and sys.stderr.isatty(),
    )
    with fatal_errors():
        tally = classify_to_report(options)
    if not quiet:
        click.echo(tally.summary(), err=True)
        if tally.classified + tally.errors + tally.skipped == 0:
            click.echo("cxr-edge: warning: no image files found", err=True)
    sys.exit(EXIT_UNREADABLE if tally.errors else EXIT_OK)


@main.command(epilog=EXIT_CODES_HELP)
@model_option
def info(model: str | None) -> None:
    """Print the interpreter backend, library versions and the model's manifest."""
    import numpy
    import PIL

    click.echo(f"cxr-edge {__version__}")
    click.echo(f"python {platform.python_version()} ({platform.system()} {platform.machine()})")
    click.echo(f"numpy {numpy.__version__}, pillow {PIL.__version__}")
    with fatal_errors():
        click.echo(f"interpreter: {runtime.backend_name()} {runtime.backend_version()}")
        click.echo(f"bundled models: {', '.join(list_bundled()) or 'none installed'}")
        bundle = load_bundle(model)
        click.echo(f"model: {bundle.short_id} ({bundle.manifest_path})")
        click.echo(json.dumps(bundle.manifest, indent=2))
