"""``python -m convert``: a trained Keras model -> TFLite bundles for the edge + a parity report.

Exit codes: 0 converted and every variant passed parity (or ``--accept``); 1 a variant was
flagged (agreement below the bound, or collapsed to one label); 2 usage error; 3 bad
input or a failed conversion (missing or non-Keras model, wrong input, no calibration images);
130 interrupted.

Also what the family's other commands (``python -m convert.add_gate``, ``python -m
convert.add_views``, which amend a shipped bundle) share with it: :func:`command` (``--version``,
Ctrl-C, help layout), :func:`failures` (the error line and exit 3) and :func:`run_split_options`.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import click

from convert.quiet import captured_output  # noqa: F401  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
from convert.bundles import DEFAULT_VERSION
from cxr_edge import commands
from cxr_edge.commands import EXIT_FATAL, EXIT_FINDINGS, FloatRange
from cxr_edge.preprocess import NORMALIZE_CHOICES

if TYPE_CHECKING:
    from convert.source import Source
    from cxr_edge.bundle import Bundle

PROG = "python -m convert"
EXIT_FLAGGED = EXIT_FINDINGS  # a variant was flagged by parity
EXIT_BAD_INPUT = EXIT_FATAL
EXIT_CODES_HELP = (
    "\b\nExit codes: 0 done; 1 a variant flagged by parity (see --accept); 2 usage error;\n"
    "3 bad input, failed conversion, or --install failed (the bundles stay in --out); 130 interrupted."
)
AMEND_EXIT_CODES_HELP = (
    "\b\nExit codes: 0 done; 2 usage error; 3 bad input (bundle, dataset, a split that is not the bundle's run's)\n"
    "or --out cannot be written; 130 interrupted."
)
VARIANT_HELP = "Comma-separated: float32, float16, dynamic, int8."


def command(prog: str, exit_codes: str, *examples: str) -> Callable:
    """A command of the convert family: ``--version``, exit 130 with one line on Ctrl-C, ``-h``, and help
    that ends with its ``exit_codes`` and ``examples``."""

    def decorate(func: Callable) -> click.Command:
        return click.command(cls=commands.interruptible_class(click.Command, prog),
                             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
                             epilog=f"{exit_codes}\n\n{commands.example(*examples)}")(
            commands.version_option(prog)(func))

    return decorate


@contextlib.contextmanager
def failures(prog: str, out: Path) -> Iterator[None]:
    """Bad input (a :class:`ConvertError` or a bad bundle) and an ``out`` that cannot be written: the
    family's error line and exit 3, no traceback."""
    from convert.errors import ConvertError
    from cxr_edge.bundle import BundleError

    try:
        yield
    except (ConvertError, BundleError) as exc:
        commands.fail(prog, str(exc), EXIT_BAD_INPUT)
    except OSError as exc:  # e.g. --out under a file or in a read-only place
        commands.fail(prog, f"cannot write {exc.filename or out}: {exc.strerror or exc}", EXIT_BAD_INPUT)


def run_split_options(func: Callable) -> Callable:
    """--data, --seed, --val-fraction and --val-patients: what remakes a bundle's patient split
    (:func:`convert.source.remade_split`)."""
    for option in reversed([
        click.option("--data", envvar="CXR_DATA", required=True,
                     type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="The dataset the model was trained on ({train,val}/{NORMAL,PNEUMONIA}/), or $CXR_DATA."),
        click.option("--seed", type=int, default=42, show_default=True, help="The run's patient-split seed."),
        click.option("--val-fraction", type=FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
                     show_default=True, help="The run's validation fraction."),
        click.option("--val-patients", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help="The run's validation patients, one per line (its fit --val-patients, e.g. python -m "
                          "train shift's), instead of --seed and --val-fraction."),
    ]):
        func = option(func)
    return func


def _say(message: str) -> None:
    click.echo(message, err=True)


def _progress(items):
    from tqdm import tqdm

    return tqdm(items, unit="img", file=sys.stderr, leave=False, disable=None)


def _variants(_ctx, _param, value: str) -> tuple[str, ...]:
    from convert.quantize import VARIANTS

    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown or not chosen:
        raise click.BadParameter(f"unknown {unknown or 'empty list'}; choose from {', '.join(VARIANTS)}")
    return chosen


@command(PROG, EXIT_CODES_HELP,
         "python -m convert runs/pneumonia-v1 --out build/pneumonia --install cxr_edge/models",
         "python -m convert model.keras --threshold 0.4 --calib-dir data/train --parity-dir data/val --out build/m")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the bundles (<name>_<variant>.tflite/.json), parity.md/.json, convert.log.")
@click.option("--name", default=None, help="Bundle name [pneumonia for binary runs, subtype for multiclass].")
@click.option("--variants", default="float32,float16,dynamic,int8", show_default=True, callback=_variants,
              help=VARIANT_HELP)
@click.option("--data", envvar="CXR_DATA", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset folder the run's split refers to [the run's own, else $CXR_DATA].")
@click.option("--calib-dir", type=click.Path(path_type=Path), default=None,
              help="Calibrate int8 on the images under this folder (class = first subfolder) instead of the "
                   "run's training side.")
@click.option("--calib-size", type=click.IntRange(1), default=300, show_default=True,
              help="Calibration images, drawn evenly across classes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration draw.")
@click.option("--parity-dir", type=click.Path(path_type=Path), default=None,
              help="Labelled folder (class subfolders, as `cxr-edge evaluate` reads) for the parity report "
                   "[the run's validation split].")
@click.option("--no-parity", is_flag=True, help="Skip the parity report.")
@click.option("--min-agreement", type=FloatRange(0, 1), default=0.99, show_default=True,
              help="Least share of labels a variant must share with the Keras model.")
@click.option("--accept", is_flag=True, help="Exit 0 even when a variant is flagged (the flags stay in the report).")
@click.option("--install", "install_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also copy the int8 bundle as <name>.tflite/.json here (e.g. cxr_edge/models) once parity passed (or --accept).")
@click.option("--labels", default="NORMAL,PNEUMONIA", show_default=True,
              help="Bare .keras file only: labels in output order, negative first.")
@click.option("--threshold", type=FloatRange(0, 1), default=None, help="Bare .keras file only: the decision threshold (required).")
@click.option("--normalize", type=click.Choice(NORMALIZE_CHOICES), default="none", show_default=True,
              help="Bare .keras file only: the contract's intensity normalisation the model was trained with.")
@click.option("--reencode-jpeg", type=click.IntRange(1, 95), default=None,
              help="Bare .keras file only: the contract's JPEG quality after a resize (contract 2), if trained with it.")
@click.option("--model-version", default=DEFAULT_VERSION, show_default=True, help="Version recorded in the manifests.")
@click.option("--threads", type=click.IntRange(1), default=None, help="Interpreter threads for the parity run.")
def main(source: Path, out: Path, name: str | None, variants: tuple[str, ...], data: Path | None,
         calib_dir: Path | None, calib_size: int, seed: int, parity_dir: Path | None, no_parity: bool,
         min_agreement: float, accept: bool, install_dir: Path | None, labels: str, threshold: float | None,
         normalize: str, reencode_jpeg: int | None, model_version: str, threads: int | None) -> None:
    """Convert SOURCE (a training run folder, or a bare .keras file) into TFLite model bundles.

    Writes float32, float16, dynamic-range and full-integer int8 (uint8 in/out, Edge-TPU-ready)
    variants, each with its manifest (labels, threshold, contract, sha256, dataset, metrics);
    compiles int8 for the Edge TPU when edgetpu_compiler is on PATH; then runs every variant
    through the edge tool's own code on a labelled set and writes parity.md/parity.json.
    """
    from convert import pipeline, source as sources

    if install_dir is not None and "int8" not in variants:
        raise click.UsageError("--install ships the int8 bundle: add int8 to --variants")
    if install_dir is not None and no_parity and not accept:
        raise click.UsageError("--install ships only a bundle whose parity was checked: drop --no-parity "
                               "(or add --accept to install it unchecked)")
    with failures(PROG, out):
        contract_options = {"normalize": normalize, "reencode_quality": reencode_jpeg}
        src, model = _source(sources, source, name, data, labels, threshold, contract_options, model_version)
        job = pipeline.Job(
            keras_path=src.keras_path, model=model, spec=src.spec, out=out, variants=variants,
            calib_samples=src.calib_samples, calib_source=src.calib_source, calib_dir=calib_dir,
            calib_size=calib_size, seed=seed,
            parity_samples=() if no_parity else src.parity_samples, parity_source=src.parity_source,
            parity_dir=None if no_parity else parity_dir, min_agreement=min_agreement, threads=threads,
        )
        result = pipeline.run(job, log=_say, progress=_progress)
    for flag in result.flags:
        _say(f"!!! PARITY FLAG: {flag}")
    if result.flags and not accept:
        _say(f"!!! {len(result.flags)} flag(s): the bundles are written but not fit to ship; "
             "see parity.md, or rerun with --accept to take them anyway")
        sys.exit(EXIT_FLAGGED)
    if install_dir is not None and "int8" in result.bundles:
        _install(result.bundles["int8"], install_dir, src.spec.name, out)
    _say(f"done: {len(result.bundles)} bundle(s) in {out}")


def _install(bundle: Bundle, folder: Path, name: str, out: Path) -> None:
    """Copy the int8 bundle into ``folder``; a failure says so in one line, the bundles in ``out`` stay."""
    from convert.bundles import install
    from cxr_edge.bundle import BundleError

    try:
        installed = install(bundle, folder, name)
    except (OSError, BundleError) as exc:
        commands.fail(PROG, f"cannot install into {folder} ({exc}); the converted bundles are in {out}", EXIT_BAD_INPUT)
    _say(f"installed {installed.manifest_path}")


def _source(sources, path: Path, name, data, labels: str, threshold, contract_options: dict,
            version: str) -> tuple[Source, Any]:
    """A run folder or a bare .keras file -> its :class:`convert.source.Source`, and the Keras model
    when its input size had to be read from it (so the pipeline does not load it twice; None for a run)."""
    from convert.errors import ConvertError
    from convert.keras_model import KERAS_SUFFIX, load_keras, input_hw
    from cxr_edge.preprocess import Contract

    if path.is_dir():
        return sources.from_run(path, name, data, version), None
    if path.suffix != KERAS_SUFFIX or not path.exists():
        raise ConvertError(f"{path}: neither a training run folder nor an existing {KERAS_SUFFIX} file")
    if threshold is None:
        raise ConvertError("a bare .keras file needs --threshold (the operating point chosen on validation)")
    _say(f"loading {path}")
    model = load_keras(path)
    height, width = input_hw(model)
    contract = Contract(width=width, height=height, **contract_options)
    return sources.from_keras_file(path, tuple(v.strip() for v in labels.split(",") if v.strip()), threshold,
                                   contract, name, version), model
