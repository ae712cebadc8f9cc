"""Distillation: one student learns from an ensemble of bundles trained on the same patients."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import asset_bundle
from train import distill, leakage
from train.cli import main
from train.pipeline import one_hot_targets
from train.config import RunConfig

SHIPPED_STYLE = "python -m train fit --data d --out o --seed 42 --val-fraction 0.2"


def run_config(tmp_path: Path, **options) -> RunConfig:
    """A 224-px run config, the size of the committed tiny bundles."""
    return RunConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), size=224, **options)


@pytest.fixture
def make_teacher(copy_bundle, tmp_path):
    """A copy of a tiny bundle whose manifest says how (and on which patients) it was trained."""

    def make(command: str = SHIPPED_STYLE, name: str = "tiny_binary_int8", folder: str = "teacher") -> Path:
        manifest_path = copy_bundle(asset_bundle(name), tmp_path / folder)
        manifest = json.loads(manifest_path.read_text())
        manifest["preprocessing"] = run_config(tmp_path).contract.to_manifest()
        manifest["training_run"] = {"command": command}
        manifest_path.write_text(json.dumps(manifest))
        return manifest_path

    return make


def fit(*args: str):
    return CliRunner().invoke(main, ["fit", *args], catch_exceptions=False)


def test_targets_blend_the_labels_with_the_teachers_probabilities():
    sigmoid = distill.blend(one_hot_targets(np.array([0, 1]), 1), np.array([[0.8, 0.2], [0.4, 0.6]]), 0.5)
    np.testing.assert_allclose(sigmoid, [[0.1], [0.8]])
    softmax = distill.blend(one_hot_targets(np.array([2]), 3), np.array([[0.1, 0.2, 0.7]]), 0.25)
    np.testing.assert_allclose(softmax, [[0.025, 0.05, 0.925]])


def test_a_teacher_s_patient_split_is_read_from_its_training_command():
    def split(command: str) -> tuple[int, float]:
        return leakage.training_split({"training_run": {"command": command}})

    assert split("python -m train fit --seed 7 --split-seed 42") == (42, 0.2)
    assert split("python -m train fit --seed 7 --val-fraction 0.25") == (7, 0.25)
    assert split("python -m train fit") == (42, 0.2)
    with pytest.raises(ValueError, match="no training command"):
        leakage.training_split({"training_run": {"script": "tests/assets/make_assets.py"}})


@pytest.mark.parametrize("command, name, message", [
    ("python -m train fit --seed 7", "tiny_binary_int8", "has seen some of this run's validation patients"),
    ("python -m train fit --val-fraction 0.3", "tiny_binary_int8", "has seen some of this run's validation patients"),
    (SHIPPED_STYLE, "tiny_subtype_int8", "predicts ['NORMAL', 'BACTERIAL', 'VIRAL']"),
])
def test_a_teacher_that_would_leak_or_mislead_is_refused(make_teacher, tmp_path, command, name, message):
    from cxr_edge.bundle import load_bundle

    cfg = run_config(tmp_path, teacher=(str(make_teacher(command, name)),))
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        leakage.check_bundle(load_bundle(cfg.teacher[0]), cfg, set(), role="teacher")


def test_a_teacher_read_through_another_contract_is_refused(make_teacher, tmp_path):
    from cxr_edge.bundle import load_bundle

    cfg = run_config(tmp_path, reencode_jpeg=None)
    with pytest.raises(ValueError, match="another preprocessing contract"):
        leakage.check_bundle(load_bundle(make_teacher()), cfg, set(), role="teacher")


def test_a_teacher_without_a_recorded_split_is_refused_before_the_run_folder_exists(kermany, make_teacher, tmp_path):
    out = tmp_path / "student"
    result = fit("--data", str(kermany), "--out", str(out), "--smoke", "--size", "224",
                 "--teacher", str(make_teacher(command="")))
    assert result.exit_code == 3
    assert "may have seen this run's validation patients" in result.output
    assert not out.exists()


def test_the_student_trains_on_the_mean_of_its_teachers(make_teacher, tmp_path):
    from cxr_edge.bundle import load_bundle
    from train.run import training_targets

    teachers = [load_bundle(make_teacher(folder=f"teacher{k}")) for k in (1, 2)]
    pixels = np.random.default_rng(0).integers(0, 256, (5, 224, 224), dtype=np.uint8)
    cfg = run_config(tmp_path, teacher=tuple(str(t.manifest_path) for t in teachers), distill_weight=0.5)
    (tmp_path / "run").mkdir()
    targets = training_targets(cfg, np.array([0, 1, 1, 0, 1]), pixels, teachers, tmp_path / "run")
    p = distill.bundle_probabilities(teachers[0], pixels)[:, 1:]
    np.testing.assert_allclose(targets, 0.5 * np.array([[0], [1], [1], [0], [1]]) + 0.5 * p, atol=1e-6)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["teachers"] == [t.short_id for t in teachers]


def test_a_distilled_smoke_run_records_its_teachers_and_the_command_that_remakes_it(kermany, make_teacher, tmp_path):
    out = tmp_path / "student"
    teacher = make_teacher()
    result = fit("--data", str(kermany), "--out", str(out), "--smoke", "--size", "224", "--teacher", str(teacher),
                 "--distill-weight", "0.7", "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["teachers"] == [f"tiny_binary_int8@{json.loads(teacher.read_text())['sha256'][:12]}"]
    assert f"--teacher {teacher}" in record["command"] and "--distill-weight 0.7" in record["command"]
