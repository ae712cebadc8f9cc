"""``python -m convert`` from a training run folder: what it reads, writes and exits with."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.slow

keras = pytest.importorskip("keras")

from convert.cli import EXIT_BAD_INPUT, EXIT_FLAGGED, main  # noqa: E402
from cxr_edge.bundle import load_bundle  # noqa: E402
from train.rundir import fingerprint  # noqa: E402
from cxr_edge.preprocess import Contract, load_image  # noqa: E402
from cxr_edge.testing.synthetic import synthetic_xray  # noqa: E402

SIZE = 64
LABELS = ("NORMAL", "PNEUMONIA")
CONTRACT = Contract(SIZE, SIZE)


def lesion_model(bias: float | None = None) -> keras.Model:
    """Raw 0..255 in, rescaled inside; ``bias`` alone (zero kernel) makes a constant model."""
    inputs = keras.Input((SIZE, SIZE, 1), dtype="float32")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for filters in (8, 12):
        x = keras.layers.Conv2D(filters, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(12, 3, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    dense = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inputs, dense(x))
    if bias is not None:
        dense.set_weights([np.zeros((12, 1)), np.array([bias])])
    return model


def write_run(folder: Path, data: Path, model: keras.Model, threshold: float = 0.5) -> Path:
    """A training run folder laid out as ``python -m train fit`` leaves it."""
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    rows = []
    for side, seeds in (("train", range(0, 60)), ("val", range(1000, 1012))):
        for label in LABELS:
            rel = f"{side}/{label}/{label}_{seeds[0]}"
            for seed in seeds:
                path = data / f"{rel}_{seed}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                synthetic_xray(seed, (80, 80), lesion=label == "PNEUMONIA").save(path)
                rows.append({"file": path.relative_to(data).as_posix(), "patient": str(seed), "label": label,
                             "subtype": label, "official_split": "train", "side": side})
    with open(folder / "split.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(folder / "val_predictions.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "label"])
        writer.writeheader()
        writer.writerows({"file": r["file"], "label": r["label"]} for r in rows if r["side"] == "val")
    (folder / "run.json").write_text(json.dumps({
        "config": {"data": str(data), "arch": "test"}, "task": "binary", "labels": list(LABELS),
        "negative_label": "NORMAL", "preprocessing": CONTRACT.to_manifest(), "seed": 7, "command": "python -m train fit ..."}))
    (folder / "metrics.json").write_text(json.dumps({
        "split": "synthetic", "threshold": {"value": threshold, "rule": "test rule"}, "at_threshold": {"auc": 1.0}}))
    (folder / "data_summary.json").write_text(json.dumps({"total_images": len(rows)}))
    return folder


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("run")
    data = work / "data"
    run = write_run(work / "run", data, lesion_model())
    rows = list(csv.DictReader(open(run / "split.csv")))
    x = np.stack([load_image(data / r["file"], CONTRACT).pixels for r in rows])[..., None].astype(np.float32)
    y = np.array([r["label"] == "PNEUMONIA" for r in rows], dtype=np.float32)
    keras.utils.set_random_seed(0)
    model = lesion_model()
    model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
    model.fit(x, y, epochs=25, batch_size=24, verbose=0)
    model.save(run / "model.keras")
    return run


def convert(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_a_run_folder_becomes_bundles_that_carry_its_meaning(trained_run, tmp_path):
    out, models = tmp_path / "out", tmp_path / "models"
    result = convert(trained_run, "--out", out, "--variants", "float32,int8", "--calib-size", "20",
                     "--install", models, "--min-agreement", "0.9")
    assert result.exit_code == 0, result.output
    for variant in ("float32", "int8"):
        bundle = load_bundle(out / f"pneumonia_{variant}.json")
        assert bundle.threshold == 0.5 and bundle.manifest["threshold_rule"] == "test rule"
        assert bundle.labels == LABELS and bundle.contract == CONTRACT
        assert bundle.manifest["metrics"]["at_threshold"] == {"auc": 1.0}
        assert bundle.manifest["dataset"] == {"total_images": 144}
        assert bundle.manifest["training_run"]["seed"] == 7
        assert bundle.manifest["training_run"]["validation_patients"] == fingerprint(map(str, range(1000, 1012)))
    calib = load_bundle(out / "pneumonia_int8.json").manifest["calibration"]
    assert calib["size"] == 20 and calib["per_class"] == {"NORMAL": 10, "PNEUMONIA": 10}  # training side only
    report = json.loads((out / "parity.json").read_text())
    assert report["set"]["images"] == 24 and list(report["rows"]) == ["keras", "float32", "int8"]
    installed = load_bundle(models / "pneumonia.json")
    assert installed.name == "pneumonia" and installed.quantization == "int8"
    assert "TensorFlow" not in result.stderr.replace("TensorFlow messages go to", "")  # no TF log noise


def test_a_collapsed_variant_fails_the_run_unless_accepted(tmp_path):
    run = write_run(tmp_path / "run", tmp_path / "data", lesion_model(bias=3.0))  # always PNEUMONIA
    flagged = convert(run, "--out", tmp_path / "a", "--variants", "float32")
    assert flagged.exit_code == EXIT_FLAGGED and "collapsed" in flagged.stderr and "--accept" in flagged.stderr
    assert (tmp_path / "a" / "pneumonia_float32.json").exists()  # written, but not fit to ship
    accepted = convert(run, "--out", tmp_path / "b", "--variants", "float32", "--accept")
    assert accepted.exit_code == 0 and "PARITY FLAG" in accepted.stderr


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "absent", "neither a training run folder nor an existing .keras file"),
    (lambda p: (p / "m.h5").write_bytes(b"x") and p / "m.h5", "neither a training run folder"),
    (lambda p: (p / "r").mkdir() or p / "r", "run.json is missing"),
])
def test_bad_sources_are_refused_with_a_message(tmp_path, make, message):
    result = convert(make(tmp_path), "--out", tmp_path / "out")
    assert result.exit_code == EXIT_BAD_INPUT and message in result.stderr and "Traceback" not in result.stderr


def test_a_bare_keras_file_needs_a_threshold_and_calibration_images(tmp_path):
    lesion_model().save(tmp_path / "m.keras")
    no_threshold = convert(tmp_path / "m.keras", "--out", tmp_path / "o")
    assert no_threshold.exit_code == EXIT_BAD_INPUT and "--threshold" in no_threshold.stderr
    (tmp_path / "calib" / "NORMAL").mkdir(parents=True)
    empty = convert(tmp_path / "m.keras", "--threshold", "0.5", "--calib-dir", tmp_path / "calib", "--out", tmp_path / "o")
    assert empty.exit_code == EXIT_BAD_INPUT and "no image files" in empty.stderr


def test_unknown_variants_are_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, [str(tmp_path), "--out", str(tmp_path / "o"), "--variants", "int4"])
    assert result.exit_code == 2 and "int4" in result.output


@pytest.mark.parametrize("args, message", [
    (["--no-parity"], "parity was checked"),
    (["--variants", "float32"], "add int8 to --variants"),
])
def test_install_ships_only_a_parity_checked_int8_bundle(tmp_path, args, message):
    result = CliRunner().invoke(main, [str(tmp_path), "--out", str(tmp_path / "o"), "--install", str(tmp_path / "m"), *args])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "m").exists()


def test_a_bare_keras_file_records_the_contract_it_was_trained_with_and_is_loaded_once(tmp_path, monkeypatch):
    from convert import keras_model

    real_load, loaded = keras_model.load_keras, []

    def counting_load(path):
        loaded.append(path)
        return real_load(path)

    monkeypatch.setattr(keras_model, "load_keras", counting_load)
    lesion_model().save(tmp_path / "m.keras")
    result = convert(tmp_path / "m.keras", "--threshold", "0.5", "--reencode-jpeg", "75", "--variants", "float32",
                     "--no-parity", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.stderr
    (manifest,) = (tmp_path / "o").glob("*_float32.json")
    assert load_bundle(manifest).contract == Contract(SIZE, SIZE, reencode_quality=75)
    assert loaded == [tmp_path / "m.keras"]


def test_an_install_that_fails_says_so_and_keeps_the_converted_bundles(tmp_path):
    run = write_run(tmp_path / "run", tmp_path / "data", lesion_model())
    (tmp_path / "a_file").write_text("not a folder")
    result = convert(run, "--out", tmp_path / "out", "--variants", "int8", "--calib-size", "8", "--no-parity",
                     "--accept", "--install", tmp_path / "a_file" / "models")
    assert result.exit_code == EXIT_BAD_INPUT and "Traceback" not in result.stderr
    assert f"cannot install into {tmp_path / 'a_file' / 'models'}" in result.stderr
    assert load_bundle(tmp_path / "out" / "pneumonia_int8.json").quantization == "int8"


def test_an_out_folder_that_cannot_be_made_is_one_line_and_exit_3(tmp_path):
    run = write_run(tmp_path / "run", tmp_path / "data", lesion_model())
    (tmp_path / "a_file").write_text("not a folder")
    result = convert(run, "--out", tmp_path / "a_file" / "out", "--variants", "int8", "--no-parity")
    assert result.exit_code == EXIT_BAD_INPUT and "Traceback" not in result.stderr
    assert f"cannot write {tmp_path / 'a_file' / 'out'}" in result.stderr


def test_a_conversion_without_parity_leaves_no_earlier_parity_report_beside_its_bundles(tmp_path):
    run = write_run(tmp_path / "run", tmp_path / "data", lesion_model())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "parity.md").write_text("an earlier conversion's report")
    result = convert(run, "--out", tmp_path / "out", "--variants", "int8", "--calib-size", "8", "--no-parity")
    assert result.exit_code == 0, result.stderr
    assert not (tmp_path / "out" / "parity.md").exists() and "removed" in result.stderr
