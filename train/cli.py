"""``python -m train``: fit, evaluate, compare and stress-test models.

Exit codes are those of all three command lines (:mod:`cxr_edge.commands`): 0 done, 2 usage
error, 3 bad input (data, bundle, run folder, architecture), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from cxr_edge import commands
from cxr_edge.commands import EXIT_FATAL, EXIT_INTERRUPTED, Float, FloatRange
from train.config import RunConfig, make_config, parse_arch


# Each command imports its library inside itself: `--help` and the other commands do not wait
# for TensorFlow (the trainer, the measurements and Keras load it). None of these imports hides
# a circle: train/ imports nothing from here (tests/test_layering.py).


def _setup_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


PROG = "python -m train"


@click.group(cls=commands.interruptible_class(click.Group, PROG), context_settings={"help_option_names": ["-h", "--help"]})
@commands.version_option(PROG)
def main() -> None:
    """Train and evaluate cxr-edge models (Keras 3 / TensorFlow)."""
    _setup_tf()


def _click_option(field: dataclasses.Field) -> Callable:
    """The Click option of one :class:`RunConfig` field, from its metadata (help, type, default written once)."""
    meta = field.metadata
    flag = "--" + field.name.replace("_", "-")
    default = field.default
    if meta.get("by_arch") or default is dataclasses.MISSING:
        default = None  # by_arch: make_config fills it from the architecture
    elif meta.get("multiple"):
        default = []
    kwargs: dict[str, Any] = {"help": meta["help"] or None, "default": default,
                              "show_default": default is not None and default != []}
    if "choices" in meta:
        kwargs["type"] = click.Choice(meta["choices"])
    elif "range" in meta:
        lo, hi = meta["range"]
        kwargs["type"] = (FloatRange if isinstance(field.default, float) else click.IntRange)(lo, hi)
    elif meta.get("path"):
        kwargs["type"] = click.Path(file_okay=False)
    elif meta.get("file"):
        kwargs["type"] = click.Path(exists=True, dir_okay=False)
    elif "type" in meta:
        kwargs["type"] = meta["type"]
    elif isinstance(field.default, float):
        kwargs["type"] = Float()  # NaN refused, as in the other command lines
    elif isinstance(field.default, int) and not isinstance(field.default, bool):
        kwargs["type"] = int
    for key in ("envvar", "required", "multiple"):
        if key in meta:
            kwargs[key] = meta[key]
    if meta.get("zero_is_none"):
        kwargs["callback"] = lambda _ctx, _param, value: value or None
    if isinstance(field.default, bool):
        if meta.get("switch"):
            flag = f"{flag}/--no-{flag[2:]}"
        else:
            kwargs["is_flag"] = True
            kwargs.pop("show_default")
    return click.option(flag, **kwargs)


#: fit's options, one per RunConfig field (``--arch`` and ``--out`` are each command's own).
FIT_OPTIONS = [_click_option(f) for f in dataclasses.fields(RunConfig) if f.metadata.get("cli", True)]


#: The fields of fit's options that decide what ``eda`` shows: the split, the contract, the augmentation.
EDA_FIELDS = ("size", "normalize", "reencode_jpeg", "augment", "hflip", "jpeg_augment", "val_fraction", "seed",
              "split_seed")
EDA_OPTIONS = [_click_option(f) for f in dataclasses.fields(RunConfig) if f.name in EDA_FIELDS]


def _apply(options: list[Callable], func: Callable) -> Callable:
    for option in reversed(options):
        func = option(func)
    return func


def fit_options(func):
    return _apply(FIT_OPTIONS, func)


def eda_options(func):
    return _apply(EDA_OPTIONS, func)


def _fail(message: str) -> None:
    commands.fail(PROG, message, EXIT_FATAL)


@contextlib.contextmanager
def _input_errors(*more: type[Exception]) -> Iterator[None]:
    """Exit 3 with the message of bad input (data, bundle, value, or ``more``) instead of a traceback."""
    from cxr_edge.bundle import BundleError
    from train.data import DataError

    try:
        yield
    except (BundleError, DataError, ValueError, *more) as exc:
        _fail(str(exc))


@contextlib.contextmanager
def _fit_errors() -> Iterator[None]:
    """:func:`_input_errors` and an architecture that cannot be built (only training loads Keras)."""
    from train.models import ModelError

    try:
        with _input_errors(ModelError):
            yield
    except OSError as exc:  # e.g. --out in a read-only place
        _fail(f"cannot write {exc.filename or 'the run'}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        commands.fail(PROG, "interrupted: finished epochs are checkpointed; run the command again to continue "
                      "(fit: with --resume; compare resumes by itself)", EXIT_INTERRUPTED)


@contextlib.contextmanager
def _run_errors(run_dir: str) -> Iterator[None]:
    """:func:`_input_errors`, and a missing file of ``run_dir`` said to be an unfinished run."""
    try:
        with _input_errors():
            yield
    except FileNotFoundError as exc:
        _fail(f"{run_dir} is not a finished run ({exc.filename} missing)")


@main.command("fit", epilog=commands.example("python -m train fit --data $CXR_DATA --arch mobile --out runs/pneumonia-mobile-v1"))
@click.option("--arch", default=RunConfig.arch, show_default=True, help=RunConfig.__dataclass_fields__["arch"].metadata["help"])
@click.option("--out", required=True, type=click.Path(file_okay=False), help=RunConfig.__dataclass_fields__["out"].metadata["help"])
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@fit_options
def fit_command(arch: str, out: str, resume: bool, **kw) -> None:
    """Train one model and write everything about it into --out."""
    from train import run  # lazy: the trainer loads TensorFlow; --help should not wait for it
    from train.rundir import RUN_FILE

    if resume and not (Path(out) / RUN_FILE).is_file():
        raise click.UsageError(f"--resume: nothing to resume in {out} (no {RUN_FILE}); "
                               "leave out --resume to start a run there")
    if kw["freeze_backbone"] and not parse_arch(arch).pretrained:
        raise click.UsageError(f"--freeze-backbone needs a pretrained backbone (--arch transfer:<name>), not {arch}")
    with _fit_errors():
        run.train(make_config(arch, out, **kw), resume=resume, log=lambda m: click.echo(m, err=True))


@main.command("evaluate", epilog=commands.example("python -m train evaluate runs/pneumonia-mobile-v1"))
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def evaluate_command(run_dir: str) -> None:
    """(Re)write metrics, plots and the model card of a finished run."""
    from train import report

    with _run_errors(run_dir):
        report.write_report(run_dir, log=click.echo)


@main.command("robustness", epilog=commands.example("python -m train robustness runs/pneumonia-mobile-v1 --fullres ../shared/data/fullres"))
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--fullres", envvar="CXR_FULLRES", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of full-resolution originals ({NORMAL,PNEUMONIA}/*.jpeg) for the parity check [$CXR_FULLRES].")
@click.option("--bundle", "bundles", multiple=True,
              help="Score this TFLite bundle (name or manifest) on the run's validation split instead of its Keras "
                   "model, as devices run it; repeat to average several (an ensemble).")
@click.option("--target-sensitivity", type=FloatRange(0, 1, min_open=True), default=None, metavar="S",
              help="With --bundle: score at the threshold reaching sensitivity S on the clean validation split "
                   "instead of the bundle's own (another operating point, before it goes into a manifest).")
def robustness_command(run_dir: str, fullres: str | None, bundles: tuple[str, ...],
                       target_sensitivity: float | None) -> None:
    """Validation metrics under exposure/contrast/gamma/blur/noise/resolution shifts, fullres parity, calibration."""
    from train import card, robustness

    if target_sensitivity is not None and not bundles:
        raise click.UsageError("--target-sensitivity needs --bundle: a run's Keras model is scored at the threshold "
                               "its training chose")
    fullres_dir = Path(fullres) if fullres else None
    with _run_errors(run_dir):
        if bundles:
            robustness.measure_bundles(Path(run_dir), bundles, fullres_dir, log=click.echo,
                                       target_sensitivity=target_sensitivity)
        else:
            robustness.measure(Path(run_dir), fullres_dir, log=click.echo)
            card.write_card(Path(run_dir))  # the card quotes robustness.json


@main.command("paired", epilog=commands.example("python -m train paired runs/pneumonia-mobile-v1 pneumonia build/candidate/pneumonia_int8.json"))
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("bundle_a")
@click.argument("bundle_b")
def paired_command(run_dir: str, bundle_a: str, bundle_b: str) -> None:
    """Is BUNDLE_B better than BUNDLE_A on RUN_DIR's validation split? Paired patient bootstrap of the gain."""
    from train import paired

    with _run_errors(run_dir):
        paired.compare_bundles(Path(run_dir), bundle_a, bundle_b, log=click.echo)


@main.command("rounding", epilog=commands.example("python -m train rounding runs/pneumonia-mobile-v1"))
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def rounding_command(run_dir: str) -> None:
    """Where int8 would change RUN_DIR's labels: its weights' rounding, its activations', or both."""
    import json

    from train import quant_aware

    with _run_errors(run_dir):
        result = quant_aware.measure_rounding(Path(run_dir), log=click.echo)
    click.echo(json.dumps(result["effects"], indent=1))


@main.command("fullres-parity", epilog=commands.example("python -m train fullres-parity pneumonia --data $CXR_DATA --fullres ../shared/data/fullres"))
@click.argument("bundle")
@click.option("--data", envvar="CXR_DATA", required=True, type=click.Path(exists=True, file_okay=False),
              help="Kermany-style folder holding the 224-px copies under train/ (or $CXR_DATA).")
@click.option("--fullres", envvar="CXR_FULLRES", required=True, type=click.Path(exists=True, file_okay=False),
              help="Full-resolution originals {NORMAL,PNEUMONIA}/*.jpeg [$CXR_FULLRES].")
def fullres_parity_command(bundle: str, data: str, fullres: str) -> None:
    """A TFLite BUNDLE (name or manifest) on full-size originals against their copies, as devices run it."""
    import json

    from train import robustness

    with _input_errors():
        result = robustness.bundle_fullres_parity(bundle, Path(fullres), Path(data))
    if result is None:
        _fail(f"no file in {fullres} has a copy under {data}/train")
    click.echo(json.dumps(result, indent=1))


@main.command("compare", epilog=commands.example("python -m train compare --data $CXR_DATA --arch baseline --arch mobile --out runs/compare"))
@click.option("--arch", "archs", multiple=True, default=("baseline", "tuned", "mobile"), show_default=True,
              help="Architecture to train (repeat the option for several).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the runs and the table.")
@click.option("--fullres", envvar="CXR_FULLRES", type=click.Path(exists=True, file_okay=False), default=None,
              help="Full-resolution originals for the robustness parity check [$CXR_FULLRES].")
@fit_options
def compare_command(archs: tuple[str, ...], out: str, fullres: str | None, **kw) -> None:
    """Train several architectures the same way (resuming any already there) and write one table."""
    from train import compare

    with _fit_errors():
        table = compare.compare(Path(out), list(archs), Path(fullres) if fullres else None,
                                log=lambda m: click.echo(m, err=True), **kw)
    click.echo(table)


@main.command("table", epilog=commands.example("python -m train table runs/compare/baseline runs/compare/mobile --out runs/compare"))
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Where comparison.md/.csv go.")
@click.option("--columns", default=None, help="Comma-separated subset of the columns [all].")
def table_command(run_dirs: tuple[str, ...], out: str, columns: str | None) -> None:
    """One comparison table of finished runs (validation and robustness columns)."""
    from train import compare

    chosen = tuple(c.strip() for c in columns.split(",")) if columns else compare.COLUMNS
    try:
        click.echo(compare.write_table([Path(d) for d in run_dirs], Path(out), chosen))
    except FileNotFoundError as exc:
        _fail(f"not a finished run: {exc.filename} missing")
    except ValueError as exc:
        _fail(str(exc))


@main.command("shift", epilog=commands.example("python -m train shift --data $CXR_DATA --out runs/shift"))
@click.option("--data", required=True, envvar="CXR_DATA", type=click.Path(exists=True, file_okay=False),
              help=RunConfig.__dataclass_fields__["data"].metadata["help"])
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Where val_patients.txt and shift.json go.")
@click.option("--fraction", default=0.2, show_default=True, type=commands.FloatRange(0.05, 0.5),
              help="Share of each stratum's images held out.")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help=RunConfig.__dataclass_fields__["cache_dir"].metadata["help"])
def shift_command(data: str, out: str, fraction: float, cache_dir: str | None) -> None:
    """Carve a validation split that sees acquisition shift (train/shift.py says how and why).

    Train a recipe on it with fit --val-patients runs/shift/val_patients.txt; its validation figures
    are the shift-aware ones, and train select compares two such runs.
    """
    from train import shift

    cfg = make_config(RunConfig.arch, out, data=data, cache_dir=cache_dir)
    with _input_errors():
        summary = shift.make(Path(data), Path(out), fraction, cfg.contract, Path(cfg.cache_dir))
    for side in ("train", "val"):
        s = summary[side]
        click.echo(f"{side}: {s['images']} images of {s['patients']} patients; {s['label']}; median sharpness "
                   f"{s['median_sharpness']}; sharpness alone ranks pneumonia with AUC {s['sharpness_auc']:.3f}")
    click.echo(f"wrote {Path(out) / shift.VAL_PATIENTS_FILE} and {Path(out) / shift.SHIFT_FILE}")


@main.command("select", epilog=commands.example(
    "python -m train select runs/pneumonia-shift-base runs/pneumonia-shift-candidate --out runs/select.json"))
@click.argument("baseline", type=click.Path(exists=True, file_okay=False))
@click.argument("candidate", type=click.Path(exists=True, file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Also write the figures as JSON here.")
def select_command(baseline: str, candidate: str, out: str | None) -> None:
    """Judge a candidate run against the baseline by the pre-declared rule (train/select.py).

    Both must be trained on the same shift-aware split (fit --val-patients).
    """
    from train import select

    with _input_errors():
        result = select.judge(Path(baseline), Path(candidate))
    if out:
        select.write(result, Path(out))
    click.echo(select.report(result))


@main.command("eda", epilog=commands.example("python -m train eda $CXR_DATA --out eda/chest_xray_224"))
@click.argument("data", envvar="CXR_DATA", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for eda.md, eda.json and the figures.")
@click.option("--arch", default=RunConfig.arch, show_default=True,
              help="Show the augmentation this architecture trains with (baseline: none).")
@eda_options
def eda_command(data: str, out: str, arch: str, **kw) -> None:
    """Look at DATA as fit would train on it: class balance per split and subtype, film sizes, samples, augmentation."""
    from cxr_edge.review.plots import PlotsUnavailable
    from train import eda

    with _input_errors(OSError, PlotsUnavailable):
        eda.write_eda(make_config(arch, out, data=data, **kw), Path(out), log=click.echo)
