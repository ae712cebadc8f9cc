"""``python -m convert.add_gate``: give an existing bundle its out-of-distribution gate.

For bundles converted before gates existed (the shipped ``pneumonia`` 2.2.0 and
``subtype`` 2.1.0): the run folder is not needed, only the dataset and the run's patient
split, remade from its seed and checked against the patient fingerprint in the manifest,
so no validation film the cut-offs are chosen on was seen in training.
"""

from __future__ import annotations

from pathlib import Path

import click

from convert import gate
from convert.cli import AMEND_EXIT_CODES_HELP, command, failures, run_split_options
from convert.source import remade_split, split_source
from cxr_edge.bundle import load_bundle
from cxr_edge.discover import looks_like_image

PROG = "python -m convert.add_gate"


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


@command(PROG, AMEND_EXIT_CODES_HELP,
         "python -m convert.add_gate pneumonia --data chest_xray_224 --out build/gated --measure fullres=../fullres "
         "--model-version 2.3.0")
@click.argument("model")
@run_split_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the gated bundle (.tflite, .gate.npz, .json).")
@click.option("--measure", multiple=True, metavar="NAME=FOLDER",
              help="Also measure the rejection rate on FOLDER's images, per category subfolder (repeatable).")
@click.option("--model-version", default=None, help="Version recorded in the new manifest.")
def main(model: str, data: Path, out: Path, seed: int, val_fraction: float, val_patients: Path | None,
         measure: tuple[str, ...], model_version: str | None) -> None:
    """Add an out-of-distribution gate to the bundle MODEL (a bundled name or a .json path)."""
    with failures(PROG, out):
        bundle = load_bundle(model)
        expected = (bundle.manifest.get("training_run") or {}).get("validation_patients")
        train_files, val_files = remade_split(data, val_fraction, seed, expected, val_patients)
        source = split_source(data, seed, val_fraction, val_patients)
        gated = gate.add_gate(bundle, gate.GateData(train_files, val_files, source, _measure_sets(measure)),
                              out, log=lambda m: click.echo(m, err=True), version=model_version)
    click.echo(gate.figures_markdown(gated))
    click.echo(f"wrote {gated.manifest_path}", err=True)


if __name__ == "__main__":
    main()
