"""train.robustness: a run or its bundles scored under shifts, at full size, and refused when they do not fit the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import train_cli
from train.cli import main


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
