"""python -m train: a smoke run on generated films leaves every artefact the issue lists."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from train import fit
from train.cli import main
from train_data import make_kermany

ARTEFACTS = (
    "model.keras", "best.keras", "last.keras", "history.csv", "metrics.json", "classification_report.txt",
    "data_summary.json", "split.csv", "run.json", "val_predictions.csv", "model_card.md",
    "curves.png", "confusion.png", "roc.png", "pr.png", "histogram.png", "errors.png",
)


@pytest.fixture(scope="module")
def kermany(tmp_path_factory) -> Path:
    return make_kermany(tmp_path_factory.mktemp("kermany"), n_patients=24)


def train_cli(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def smoke_run(kermany: Path, out: Path, *options: str) -> Path:
    """A finished ``fit --smoke`` run in ``out``."""
    result = train_cli("fit", "--data", str(kermany), "--out", str(out), "--smoke",
                       "--cache-dir", str(out.parent / "cache"), *options)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def binary_run(kermany, tmp_path_factory) -> Path:
    return smoke_run(kermany, tmp_path_factory.mktemp("runs") / "binary", "--size", "64")


@pytest.fixture(scope="module")
def run_224(kermany, tmp_path_factory) -> Path:
    """A run reading films as the committed tiny bundles do (224 px, no re-encoding), to score them on."""
    out = tmp_path_factory.mktemp("runs") / "run224"
    return smoke_run(kermany, out, "--size", "224", "--reencode-jpeg", "0")


def test_a_smoke_run_leaves_every_artefact(binary_run):
    missing = [name for name in ARTEFACTS if not (binary_run / name).is_file()]
    assert missing == []


def test_metrics_have_bootstrap_intervals_and_the_chosen_threshold(binary_run):
    summary = json.loads((binary_run / "metrics.json").read_text())
    assert summary["threshold"]["rule"] == "highest specificity at sensitivity >= 0.95 on validation"
    assert summary["at_threshold"]["sensitivity"] >= 0.95
    for name in ("accuracy", "precision", "f1", "specificity", "sensitivity", "auc", "balanced_accuracy"):
        lo, hi = summary["ci95_at_threshold"][name]
        assert lo <= summary["at_threshold"][name] <= hi, name
    assert {"NORMAL", "PNEUMONIA"} == set(summary["per_class"]["per_class"])
    assert summary["loss"]["val_loss"] > 0


def test_evaluate_without_a_pneumonia_fails_with_a_message_and_keeps_the_metrics(binary_run, tmp_path):
    run = shutil.copytree(binary_run, tmp_path / "run")
    predictions = run / "val_predictions.csv"
    rows = list(csv.DictReader(predictions.open()))
    with predictions.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "target": "0"} for row in rows)
    metrics_before = (run / "metrics.json").read_bytes()
    result = train_cli("evaluate", str(run))
    assert result.exit_code == 3 and "no positive samples" in result.output
    assert (run / "metrics.json").read_bytes() == metrics_before


def test_the_recorded_split_is_leak_free(binary_run):
    rows = list(csv.DictReader((binary_run / "split.csv").open()))
    sides = {}
    for row in rows:
        sides.setdefault(row["patient"], set()).add(row["side"])
    assert all(len(s) == 1 for s in sides.values())
    assert {row["side"] for row in rows} == {"train", "val"}


def test_run_json_records_command_versions_seed_and_contract(binary_run):
    record = json.loads((binary_run / "run.json").read_text())
    assert "--smoke" in record["command"] and record["seed"] == 42
    assert {"tensorflow", "keras", "numpy", "cxr_edge"} <= set(record["versions"])
    assert record["preprocessing"]["width"] == 64 and record["labels"] == ["NORMAL", "PNEUMONIA"]
    assert record["preprocessing"]["contract"] == "cxr-gray-squash/2" and "--reencode-jpeg 75" in record["command"]
    assert record["strategy"] == "DefaultStrategy" and record["replicas"] == 1


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


def test_a_run_from_before_contract_2_keeps_contract_1(binary_run, tmp_path):
    """Old run.json files have no reencode_jpeg: they were trained, and must be served, without it."""
    from train.rundir import RUN_FILE, load_run

    record = json.loads((binary_run / RUN_FILE).read_text())
    del record["config"]["reencode_jpeg"]
    (tmp_path / RUN_FILE).write_text(json.dumps(record))
    cfg, _ = load_run(tmp_path)
    assert cfg.contract.reencode_quality is None and cfg.contract.to_manifest()["contract"] == "cxr-gray-squash/1"
    assert "--reencode-jpeg 0" in cfg.command()  # reproducing it must not re-encode (the option's default does)


def test_the_card_cites_the_dataset_and_says_screening_aid(binary_run):
    card = (binary_run / "model_card.md").read_text()
    assert "10.17632/rscbjbr9sj.2" in card and "10.1016/j.cell.2018.02.010" in card
    assert "screening aid" in card and "never a diagnosis" in card


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


def test_rounding_reports_where_int8_would_change_a_runs_labels(binary_run):
    result = train_cli("rounding", str(binary_run))
    assert result.exit_code == 0, result.output
    saved = json.loads((binary_run / "rounding.json").read_text())
    assert set(saved["effects"]) == {"weights", "activations", "both"}
    assert saved["images"] == len([row for row in csv.DictReader((binary_run / "split.csv").open()) if row["side"] == "val"])


@pytest.mark.parametrize("args, message", [
    (["--split-seed", "7"], "seen some of this run's validation patients"),
    (["--arch", "tuned"], "another arch"),
    (["--task", "subtype"], "another task"),
    (["--size", "48"], "another size"),
])
def test_a_start_that_would_leak_or_mismatch_is_refused(binary_run, kermany, tmp_path, args, message):
    result = CliRunner().invoke(main, ["fit", "--data", str(kermany), "--out", str(tmp_path / "r"), "--smoke",
                                       "--size", "64", "--init-from", str(binary_run), *args])
    assert result.exit_code == 3 and message in result.output
    assert not (tmp_path / "r").exists()


def test_a_start_from_a_folder_that_is_no_finished_run_is_refused(kermany, tmp_path):
    result = CliRunner().invoke(main, ["fit", "--data", str(kermany), "--out", str(tmp_path / "r"), "--smoke",
                                       "--init-from", str(tmp_path)])
    assert result.exit_code == 3 and "is not a finished run" in result.output


@pytest.fixture(scope="module")
def subtype_run(kermany, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "subtype"
    result = train_cli("fit", "--data", str(kermany), "--out", str(out), "--smoke", "--size", "48",
                       "--task", "subtype", "--arch", "tuned", "--cache-dir", str(out.parent / "cache"))
    assert result.exit_code == 0, result.output
    return out


def test_a_subtype_run_reports_three_classes_and_bacterial_vs_viral(subtype_run):
    summary = json.loads((subtype_run / "metrics.json").read_text())
    assert summary["labels"] == ["NORMAL", "BACTERIAL", "VIRAL"]
    assert set(summary["per_class"]["per_class"]) == {"NORMAL", "BACTERIAL", "VIRAL"}
    assert summary["bacterial_vs_viral"]["n"] > 0


def test_a_dedicated_bacterial_vs_viral_head_is_compared_on_validation_pneumonias(subtype_run):
    from experiments import subtype_head_probe

    assert subtype_head_probe.main([str(subtype_run)]) == 0
    result = json.loads((subtype_run / subtype_head_probe.RESULT_FILE).read_text())
    split = list(csv.DictReader((subtype_run / "split.csv").open()))
    assert result["n_val"] == sum(row["side"] == "val" and row["label"] == "PNEUMONIA" for row in split)
    for reading in ("own_softmax", "dedicated_head"):
        assert set(result[reading]) == {"accuracy", "balanced_accuracy", "auc"}
        assert all(0.0 <= value <= 1.0 for value in result[reading].values())


def test_the_head_probe_refuses_a_binary_run(binary_run):
    from experiments import subtype_head_probe

    with pytest.raises(SystemExit, match="binary run"):
        subtype_head_probe.main([str(binary_run)])


@pytest.mark.parametrize("args, message", [
    (["--arch", "transfer:NoSuchNet"], "unknown keras.applications model"),
    (["--arch", "transfer:MobileNetV2", "--weights", "/nonexistent.weights.h5"], "not found"),
    (["--arch", "resnet"], "unknown architecture"),
])
def test_bad_architecture_requests_fail_with_a_message(kermany, tmp_path, args, message):
    result = CliRunner().invoke(main, ["fit", "--data", str(kermany), "--out", str(tmp_path / "r"), "--smoke", *args])
    assert result.exit_code == 3 and message in result.output


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


def test_class_weights_balance_the_loss_and_the_bias_follows_the_weighted_prior():
    counts = np.array([100.0, 300.0])
    weights = fit.class_weights(counts)
    np.testing.assert_allclose(counts * weights, [200.0, 200.0])
    assert fit.output_bias(counts, weights) == pytest.approx([0.0])
    assert fit.output_bias(counts, np.ones(2)) == pytest.approx([np.log(3.0)])
    assert fit.output_bias(np.array([1.0, 1.0, 2.0]), np.ones(3)) == pytest.approx(np.log([0.25, 0.25, 0.5]))


@pytest.fixture
def fullres(kermany, tmp_path) -> Path:
    """'Originals' of two copies per class: the copies enlarged, as full-size films would be."""
    from PIL import Image

    folder = tmp_path / "fullres"
    for label in ("NORMAL", "PNEUMONIA"):
        (folder / label).mkdir(parents=True)
        for film in sorted((kermany / "train" / label).glob("*.jpeg"))[:2]:
            Image.open(film).resize((480, 384)).save(folder / label / film.name)
    return folder


def test_robustness_scores_every_shift_and_the_fullres_parity(binary_run, fullres, tmp_path):
    result = train_cli("robustness", str(binary_run), "--fullres", str(fullres))
    assert result.exit_code == 0, result.output
    report = json.loads((binary_run / "robustness.json").read_text())
    from train.robustness import SHIFTS

    assert [r["shift"] for r in report["shifts"]] == ["none", *SHIFTS]
    parity = report["fullres_parity"]
    assert parity["pairs"] == 4 and 0 <= parity["missed"] <= 2 and 0 <= parity["new_flags"] <= 2
    assert 0.0 <= report["calibration"]["ece"] <= 1.0
    md = (binary_run / "robustness.md").read_text()
    assert f"(threshold {report['threshold']:.4f}, chosen on clean validation)" in md
    table = train_cli("table", str(binary_run), "--out", str(tmp_path / "table"))
    assert table.exit_code == 0 and "shift_min_auc" in (tmp_path / "table" / "comparison.md").read_text()


def test_a_bundle_is_scored_under_the_shifts_at_its_own_threshold(run_224, binary_model, fullres):
    before = {path.name: path.stat().st_mtime_ns for path in run_224.iterdir()}
    result = train_cli("robustness", str(run_224), "--bundle", str(binary_model), "--fullres", str(fullres))
    assert result.exit_code == 0, result.output
    after = {path.name: path.stat().st_mtime_ns for path in run_224.iterdir()}
    [written] = run_224.glob("robustness-tiny_binary_int8-*.json")
    assert {name for name in after if after[name] != before.get(name)} == {written.name, written.with_suffix(".md").name}
    report = json.loads(written.read_text())
    manifest = json.loads(binary_model.read_text())
    assert report["threshold"] == manifest["threshold"] and len(report["bundles"]) == 1
    md = written.with_suffix(".md").read_text()
    assert f"(threshold {report['threshold']:.4f}, the bundle's own, from its manifest)" in md
    assert report["split_unchecked"] == [report["bundles"][0]] and "record no training command" in result.output
    assert len(report["shifts"]) == 14 and report["fullres_parity"]["pairs"] == 4


def test_another_operating_point_of_a_bundle_is_scored_beside_its_own(run_224, binary_model):
    result = train_cli("robustness", str(run_224), "--bundle", str(binary_model), "--target-sensitivity", "1")
    assert result.exit_code == 0, result.output
    [written] = run_224.glob("robustness-tiny_binary_int8-*-sens1.json")
    report = json.loads(written.read_text())
    assert report["shifts"][0]["sensitivity"] == 1.0 and f"threshold {report['threshold']:.4f}" in result.output
    assert (f"(threshold {report['threshold']:.4f}, chosen on clean validation for sensitivity >= 1)"
            in written.with_suffix(".md").read_text())
    refused = train_cli("robustness", str(run_224), "--target-sensitivity", "0.9")
    assert refused.exit_code == 2 and "--target-sensitivity needs --bundle" in refused.output


def test_an_ensemble_of_bundles_gets_a_threshold_chosen_on_clean_validation(run_224, binary_model, subtype_model):
    result = train_cli("robustness", str(run_224), "--bundle", str(binary_model), "--bundle", str(subtype_model))
    assert result.exit_code == 0, result.output
    [written] = run_224.glob("robustness-tiny_binary_int8-*+tiny_subtype_int8-*.json")
    report = json.loads(written.read_text())
    assert len(report["bundles"]) == 2 and report["shifts"][0]["sensitivity"] >= 0.95
    assert report["threshold_source"] == "chosen on clean validation for sensitivity >= 0.95"


def test_bundles_with_different_contracts_are_not_averaged(run_224, binary_model, copy_bundle, tmp_path):
    other = copy_bundle(binary_model, tmp_path / "other")
    manifest = json.loads(other.read_text())
    manifest["preprocessing"]["normalize"] = "autocontrast"
    other.write_text(json.dumps(manifest))
    result = CliRunner().invoke(main, ["robustness", str(run_224), "--bundle", str(binary_model), "--bundle", str(other)])
    assert result.exit_code == 3 and "different preprocessing contracts" in result.output


def test_a_bundle_reading_films_otherwise_than_the_run_is_refused(binary_run, binary_model):
    result = CliRunner().invoke(main, ["robustness", str(binary_run), "--bundle", str(binary_model)])
    assert result.exit_code == 3 and "another preprocessing contract than this run" in result.output
    assert "cxr-gray-squash/1, 224x224; the run: cxr-gray-squash/2, 64x64, JPEG q75" in result.output
    assert not list(binary_run.glob("robustness-*"))


def test_a_bundle_trained_on_other_patients_is_not_scored_on_this_run(run_224, binary_model, copy_bundle, tmp_path):
    other = copy_bundle(binary_model, tmp_path / "other")
    manifest = json.loads(other.read_text())
    manifest["training_run"] = {"command": "python -m train fit --seed 7"}
    other.write_text(json.dumps(manifest))
    result = CliRunner().invoke(main, ["robustness", str(run_224), "--bundle", str(other)])
    assert result.exit_code == 3 and "has seen some of this run's validation patients" in result.output


def test_a_bundle_recording_its_validation_patients_is_checked_by_them_not_by_its_seed(binary_run, binary_model,
                                                                                        copy_bundle, tmp_path):
    from cxr_edge.bundle import load_bundle
    from train import leakage, rundir
    from train.rundir import load_run

    cfg, _ = load_run(binary_run)
    patients = rundir.split_patients(binary_run, "val")
    same = copy_bundle(binary_model, tmp_path / "same")
    other = copy_bundle(binary_model, tmp_path / "other")
    for path, recorded in ((same, rundir.fingerprint(patients)), (other, rundir.fingerprint(patients - {min(patients)}))):
        manifest = json.loads(path.read_text())
        manifest["training_run"] = {"command": "python -m train fit", "validation_patients": recorded}  # same seed
        path.write_text(json.dumps(manifest))
    assert leakage.check_split(load_bundle(same), cfg, patients)
    with pytest.raises(ValueError, match="seen some of this run's validation patients"):
        leakage.check_split(load_bundle(other), cfg, patients)


def test_a_bundle_is_checked_on_full_size_originals_as_devices_run_it(binary_model, kermany, fullres):
    result = train_cli("fullres-parity", str(binary_model), "--data", str(kermany), "--fullres", str(fullres))
    assert result.exit_code == 0, result.output
    parity = json.loads(result.output)
    assert parity["pairs"] == 4 and 0 <= parity["decision_agreement"] <= 1 and parity["max_abs_dp"] >= 0


def test_fullres_parity_of_a_missing_bundle_fails_with_a_message(kermany, fullres, tmp_path):
    result = CliRunner().invoke(main, ["fullres-parity", str(tmp_path / "nope.json"), "--data", str(kermany),
                                       "--fullres", str(fullres)])
    assert result.exit_code == 3 and "nope.json" in result.output


def test_shifts_change_the_pixels_they_claim_to():
    from cxr_edge.preprocess import Contract
    from train.robustness import SHIFTS, shifted_inputs

    raw = np.tile(np.linspace(30, 220, 64).astype(np.uint8), (64, 1))[None]
    for name, shift in SHIFTS.items():
        assert not np.array_equal(shifted_inputs(raw, shift, Contract(64, 64)), raw), name
    brighter = shifted_inputs(raw, SHIFTS["exposure +40"], Contract(64, 64))
    assert brighter.mean() > raw.mean() + 30
    normalised = shifted_inputs(raw, SHIFTS["exposure +40"], Contract(64, 64, normalize="autocontrast"))
    assert abs(int(normalised.min()) - 0) <= 3 and normalised.max() >= 250  # the contract undoes exposure


def test_compare_trains_each_architecture_and_writes_one_table(kermany, tmp_path):
    result = train_cli("compare", "--data", str(kermany), "--out", str(tmp_path), "--smoke", "--size", "48",
                       "--arch", "baseline", "--arch", "mobile", "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "comparison.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("run,arch")
    assert [r.split(",")[1] for r in rows[1:]] == ["baseline", "mobile"]
    baseline = json.loads((tmp_path / "baseline" / "run.json").read_text())["config"]
    assert baseline["augment"] is False and baseline["class_weights"] is False  # the seed projects' recipe


@pytest.mark.parametrize("option", ["--target-sensitivity", "--val-fraction"])
def test_a_nan_option_is_refused_before_training(kermany, tmp_path, option):
    result = train_cli("fit", "--data", str(kermany), "--out", str(tmp_path / "run"), "--smoke", option, "nan")
    assert result.exit_code == 2 and "is not a number" in result.output and not (tmp_path / "run").exists()


def test_resume_with_nothing_to_resume_is_refused_before_training(kermany, tmp_path):
    result = train_cli("fit", "--data", str(kermany), "--out", str(tmp_path / "typo"), "--smoke", "--resume")
    assert result.exit_code == 2 and "nothing to resume" in result.output and not (tmp_path / "typo").exists()


def test_freezing_a_backbone_needs_a_pretrained_one(kermany, tmp_path):
    result = train_cli("fit", "--data", str(kermany), "--out", str(tmp_path / "run"), "--smoke",
                       "--arch", "mobile", "--freeze-backbone")
    assert result.exit_code == 2 and "--freeze-backbone needs" in result.output


def test_an_out_folder_that_cannot_be_made_is_one_line(kermany, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    result = train_cli("fit", "--data", str(kermany), "--out", str(tmp_path / "a_file" / "run"), "--smoke")
    assert result.exit_code == 3 and "cannot write" in result.output
