"""train.cli: fit's bad options and places are refused in one line, before any training; the commands that
only read a run folder load no TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import train_cli

ROOT = Path(__file__).resolve().parents[1]


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


def run_loading(*args: str) -> tuple[int, list[str]]:
    """``python -m train ARGS`` in a fresh interpreter: its exit code and which of TensorFlow and Keras it loaded."""
    probe = (
        "import json, runpy, sys\n"
        f"sys.argv = ['python -m train', *{list(args)!r}]\n"
        "try:\n"
        "    runpy.run_module('train', run_name='__main__')\n"
        "    code = 0\n"
        "except SystemExit as exc:\n"
        "    code = exc.code or 0\n"
        "print(json.dumps([code, [m for m in ('tensorflow', 'keras') if m in sys.modules]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.stdout.strip(), done.stderr
    code, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    return code, loaded


@pytest.mark.parametrize("command", ["evaluate", "compare", "table"])
def test_the_help_of_the_commands_that_read_run_folders_loads_no_tensorflow(command):
    assert run_loading(command, "--help") == (0, [])


def test_evaluate_and_table_read_a_finished_run_without_tensorflow_and_write_what_fit_wrote(binary_run, tmp_path):
    run = shutil.copytree(binary_run, tmp_path / binary_run.name)  # the card is titled by the folder's name
    for name in ("metrics.json", "classification_report.txt", "model_card.md"):
        (run / name).unlink()
    assert run_loading("evaluate", str(run)) == (0, [])
    for name in ("metrics.json", "classification_report.txt", "model_card.md"):
        assert (run / name).read_bytes() == (binary_run / name).read_bytes(), name
    assert run_loading("table", str(run), "--out", str(tmp_path / "table")) == (0, [])
    assert f"| {run.name} |" in (tmp_path / "table" / "comparison.md").read_text()
