"""train.cli: fit's bad options and places are refused in one line, before any training."""

from __future__ import annotations

import pytest

from conftest import train_cli


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
