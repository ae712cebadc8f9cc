"""train.run: a smoke run on generated films leaves every artefact the issue lists, resumes, repeats, and refuses bad starts."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from conftest import train_cli
from train import fit
from train.cli import main

ARTEFACTS = (
    "model.keras", "best.keras", "last.keras", "history.csv", "metrics.json", "classification_report.txt",
    "data_summary.json", "split.csv", "run.json", "val_predictions.csv", "model_card.md",
    "curves.png", "confusion.png", "roc.png", "pr.png", "histogram.png", "errors.png",
)


def test_a_smoke_run_leaves_every_artefact(binary_run):
    missing = [name for name in ARTEFACTS if not (binary_run / name).is_file()]
    assert missing == []


def test_the_recorded_split_is_leak_free(binary_run):
    rows = list(csv.DictReader((binary_run / "split.csv").open()))
    sides = {}
    for row in rows:
        sides.setdefault(row["patient"], set()).add(row["side"])
    assert all(len(s) == 1 for s in sides.values())
    assert {row["side"] for row in rows} == {"train", "val"}


def test_a_second_training_seed_can_keep_the_same_validation_patients(kermany, tmp_path):
    from train import config, run

    def val_files(name: str, **seeds) -> list[str]:
        out = tmp_path / name
        out.mkdir()
        cfg = config.make_config("mobile", str(out), data=str(kermany), size=64, cache_dir=str(tmp_path / "cache"), **seeds)
        records, _, val_idx, _ = run.prepare_data(cfg, log=lambda message: None)
        return sorted(str(records[i].path) for i in val_idx)

    assert val_files("a", seed=42) == val_files("b", seed=7, split_seed=42) != val_files("c", seed=7)


def test_a_deterministic_run_repeats_bit_for_bit(kermany, tmp_path):
    """--deterministic: the same command twice gives the same weights, and run.json says how to repeat it.

    Each run is its own process: TensorFlow's determinism cannot be switched off again.
    """
    import keras

    def weights(name: str) -> list[np.ndarray]:
        out = tmp_path / name
        subprocess.run([sys.executable, "-m", "train", "fit", "--data", str(kermany), "--out", str(out), "--smoke",
                        "--size", "64", "--cache-dir", str(tmp_path / "cache"), "--deterministic"],
                       cwd=Path(__file__).resolve().parent.parent, check=True, capture_output=True)
        assert "--deterministic" in json.loads((out / "run.json").read_text())["command"]
        return keras.models.load_model(out / "model.keras", compile=False).get_weights()

    first, second = weights("a"), weights("b")
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_the_saved_model_takes_raw_grey_levels_and_holds_no_augmentation(binary_run):
    import keras

    model = keras.models.load_model(binary_run / "model.keras", compile=False)
    assert model.input_shape == (None, 64, 64, 1)
    assert not [layer for layer in model.layers if layer.__class__.__name__.startswith("Random")]
    out = model.predict(np.full((2, 64, 64, 1), 128.0, np.float32), verbose=0)
    assert out.shape == (2, 1) and np.all((out >= 0) & (out <= 1))


def test_an_existing_run_is_not_overwritten_but_resumes(binary_run, kermany):
    result = CliRunner().invoke(main, ["fit", "--data", str(kermany), "--out", str(binary_run), "--smoke"])
    assert result.exit_code == 3 and "--resume" in result.output
    state = json.loads((binary_run / fit.STATE_FILE).read_text())
    before = json.loads((binary_run / "run.json").read_text())
    result = train_cli("fit", "--data", str(kermany), "--out", str(binary_run), "--smoke", "--size", "64",
                       "--resume", "--epochs", "1", "--lr", "0.5", "--cache-dir", str(binary_run.parent / "cache"))
    assert result.exit_code == 0, result.output
    assert json.loads((binary_run / fit.STATE_FILE).read_text())["epoch"] == state["epoch"]  # nothing left to train
    after = json.loads((binary_run / "run.json").read_text())
    assert after["config"] == before["config"] and after["command"] == before["command"]  # the run stays what it was
    assert after["started"] == before["started"] and after["wall_s"] >= before["wall_s"]
    assert (binary_run / "metrics.json").is_file()


def test_a_quant_aware_fine_tune_starts_from_a_run_and_saves_a_float_model_on_the_int8_grid(binary_run, kermany, tmp_path):
    import keras

    from train import quant_aware

    out = tmp_path / "qat"
    result = train_cli("fit", "--data", str(kermany), "--out", str(out), "--smoke", "--size", "64", "--lr", "1e-4",
                       "--init-from", str(binary_run), "--quant-aware", "--cache-dir", str(binary_run.parent / "cache"))
    assert result.exit_code == 0, result.output
    assert "quantization-aware" in result.output
    model = keras.models.load_model(out / "model.keras", compile=False)
    assert not [layer for layer in quant_aware.flat_layers(model) if isinstance(layer, quant_aware.FakeQuant)]
    kernels = quant_aware.quantized_kernels(model)
    assert kernels and all(np.array_equal(quant_aware.snap(v.numpy(), axis), v.numpy()) for v, axis in kernels)
    command = json.loads((out / "run.json").read_text())["command"]
    assert f"--init-from {binary_run}" in command and "--quant-aware" in command


def test_a_subtype_run_refuses_pneumonia_films_named_without_a_subtype_before_it_starts(kermany, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(kermany, data)
    first = next((data / "train" / "PNEUMONIA").iterdir())
    shutil.copy(first, first.with_name("scan_0001.jpeg"))
    result = CliRunner().invoke(main, ["fit", "--data", str(data), "--out", str(tmp_path / "r"), "--smoke",
                                       "--task", "subtype"])
    assert result.exit_code == 3 and "neither bacteria nor virus (e.g. scan_0001.jpeg)" in result.output
    assert not (tmp_path / "r").exists()


def test_a_missing_data_folder_fails_with_a_message(tmp_path):
    result = CliRunner().invoke(main, ["fit", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 3 and "does not exist" in result.output
