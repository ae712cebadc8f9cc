"""``python -m convert.add_gate``: give an existing bundle its out-of-distribution gate.

For bundles converted before gates existed (the shipped ``pneumonia`` 2.2.0 and
``subtype`` 2.1.0): the run folder is not needed, only the dataset and the run's patient
split, remade from its seed and checked against the patient fingerprint in the manifest,
so no validation film the cut-offs are chosen on was seen in training.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from convert import gate
from convert.errors import ConvertError
from cxr_edge.bundle import BundleError, load_bundle
from cxr_edge.discover import looks_like_image

EXIT_BAD_INPUT = 3


def split_files(data: Path, val_fraction: float, seed: int, expected: str | None) -> tuple[list[str], list[str]]:
    """(training side, validation side) file paths of the run's patient split, remade from its seed."""
    from train import data as train_data  # local: the split's one definition lives with training
    from train.rundir import fingerprint

    records, _ = train_data.scan(data)
    train_idx, val_idx = train_data.patient_split(records, val_fraction, seed)
    found = fingerprint(records[i].patient for i in val_idx)
    if expected and found != expected:
        raise ConvertError(f"the split remade from seed {seed} and fraction {val_fraction} has validation patients "
                           f"{found}, the bundle's run had {expected}: give the run's --seed and --val-fraction")
    return [str(records[i].path) for i in train_idx], [str(records[i].path) for i in val_idx]


def category_files(folder: Path) -> dict[str, list[str]]:
    """Image files under ``folder``, by first subfolder (the category)."""
    return {sub.name: sorted(str(p) for p in sub.rglob("*") if p.is_file() and looks_like_image(p))
            for sub in sorted(folder.iterdir()) if sub.is_dir()}


def _measure_sets(values: tuple[str, ...]) -> dict[str, dict[str, list[str]]]:
    sets = {}
    for value in values:
        name, _, folder = value.partition("=")
        if not folder or not Path(folder).is_dir():
            raise click.BadParameter(f"{value!r}: give NAME=FOLDER with a category subfolder per kind of image")
        sets[name] = category_files(Path(folder))
    return sets


def run_split_options(func):
    """--data, --seed and --val-fraction: what remakes a bundle's patient split (:func:`split_files`)."""
    for option in reversed([
        click.option("--data", envvar="CXR_DATA", required=True,
                     type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="The dataset the model was trained on ({train,val}/{NORMAL,PNEUMONIA}/), or $CXR_DATA."),
        click.option("--seed", type=int, default=42, show_default=True, help="The run's patient-split seed."),
        click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
                     show_default=True, help="The run's validation fraction."),
    ]):
        func = option(func)
    return func


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("model")
@run_split_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the gated bundle (.tflite, .gate.npz, .json).")
@click.option("--measure", multiple=True, metavar="NAME=FOLDER",
              help="Also measure the rejection rate on FOLDER's images, per category subfolder (repeatable).")
@click.option("--model-version", default=None, help="Version recorded in the new manifest.")
def main(model: str, data: Path, out: Path, seed: int, val_fraction: float, measure: tuple[str, ...],
         model_version: str | None) -> None:
    """Add an out-of-distribution gate to the bundle MODEL (a bundled name or a .json path).

    \b
    Example:
      python -m convert.add_gate pneumonia --data chest_xray_224 --out build/gated \\
          --measure fullres=../fullres --model-version 2.3.0
    """
    try:
        bundle = load_bundle(model)
        expected = (bundle.manifest.get("training_run") or {}).get("validation_patients")
        train_files, val_files = split_files(data, val_fraction, seed, expected)
        source = f"patient split of {data.name} (seed {seed}, validation fraction {val_fraction})"
        gated = gate.add_gate(bundle, gate.GateData(train_files, val_files, source, _measure_sets(measure)),
                              out, log=lambda m: click.echo(m, err=True), version=model_version)
    except (BundleError, ConvertError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(gate.figures_markdown(gated))
    click.echo(f"wrote {gated.manifest_path}", err=True)


if __name__ == "__main__":
    main()
