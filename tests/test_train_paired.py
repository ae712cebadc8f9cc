"""Comparing two bundles: a gain counts only when its patient-bootstrap interval lies above zero."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import asset_bundle
from train import paired
from train.cli import main

SAME_SPLIT = "python -m train fit --data d --out o --seed 42 --val-fraction 0.2"


def test_a_gain_seen_across_many_patients_is_better_and_no_gain_is_not():
    patients = np.repeat(np.arange(100), 2)
    a = np.tile([1.0, 0.0], 100)
    b = np.ones(200)
    gained = paired.paired_gain(a, b, patients)
    assert gained["gain"] == pytest.approx(0.5) and gained["better"] and gained["ci95"][0] > 0.4
    same = paired.paired_gain(a, a.copy(), patients)
    assert same["gain"] == 0 and same["ci95"] == [0.0, 0.0] and not same["better"]


def test_films_a_measure_does_not_count_are_left_out_of_it():
    patients = np.arange(4)
    a = np.array([np.nan, 1.0, 0.0, np.nan])
    b = np.array([np.nan, 1.0, 1.0, np.nan])
    assert paired.paired_gain(a, b, patients, n_boot=50)["b"] == 1.0


def test_the_subtype_label_of_a_pneumonia_film_is_scored_whether_or_not_it_was_flagged():
    from cxr_edge.bundle import load_bundle

    bundle = load_bundle(asset_bundle("tiny_subtype_int8"))  # NORMAL, BACTERIAL, VIRAL
    probs = np.array([[0.9, 0.06, 0.04], [0.9, 0.04, 0.06], [0.1, 0.2, 0.7], [0.05, 0.9, 0.05]])
    truth = np.array(["NORMAL", "VIRAL", "VIRAL", "VIRAL"])
    scores = paired.correct_per_image(bundle, probs, truth)
    np.testing.assert_array_equal(scores["accuracy"], [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(scores["positive_label"], [np.nan, 1.0, 1.0, 0.0])


@pytest.fixture
def bundle_trained_with(copy_bundle, tmp_path, run_224):
    """A copy of the tiny binary bundle that says it was trained with ``command`` through the run's contract."""
    from train.rundir import load_run

    def make(command: str, folder: str) -> Path:
        manifest_path = copy_bundle(asset_bundle("tiny_binary_int8"), tmp_path / folder)
        manifest = json.loads(manifest_path.read_text())
        manifest["preprocessing"] = load_run(run_224)[0].contract.to_manifest()
        manifest["training_run"] = {"command": command}
        manifest_path.write_text(json.dumps(manifest))
        return manifest_path

    return make


def test_two_bundles_are_compared_on_the_run_s_validation_patients(run_224, bundle_trained_with):
    a, b = bundle_trained_with(SAME_SPLIT, "a"), bundle_trained_with(SAME_SPLIT, "b")
    result = CliRunner().invoke(main, ["paired", str(run_224), str(a), str(b)])
    assert result.exit_code == 0, result.output
    [written] = run_224.glob("paired-*-vs-*.json")
    report = json.loads(written.read_text())
    assert report["images"] == sum(row["side"] == "val" for row in csv.DictReader((run_224 / "split.csv").open()))
    assert report["measures"]["accuracy"]["gain"] == 0 and not report["measures"]["accuracy"]["better"]


@pytest.mark.parametrize("command, message", [
    ("python -m train fit --seed 7", "has seen some of this run's validation patients"),
    ("", "records no training command"),
])
def test_a_bundle_that_may_have_seen_the_validation_patients_is_refused(run_224, bundle_trained_with, command, message):
    fair, other = bundle_trained_with(SAME_SPLIT, "fair"), bundle_trained_with(command, "other")
    result = CliRunner().invoke(main, ["paired", str(run_224), str(fair), str(other)])
    assert result.exit_code == 3 and message in result.output
