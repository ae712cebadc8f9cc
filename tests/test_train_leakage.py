"""train.leakage: a start or a bundle that may have seen the run's validation patients is refused."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from train.cli import main


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
