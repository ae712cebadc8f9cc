"""The pre-declared rule that picks the next model (python -m train select)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from train import select
from train.cli import main
from train.rundir import PREDICTIONS_FILE


def write_run(folder: Path, scores: np.ndarray, labels: list[str], files: list[str] | None = None) -> Path:
    """A finished run's val_predictions.csv: one patient per two films."""
    folder.mkdir(parents=True)
    files = files or [f"f{i:04d}.jpeg" for i in range(len(scores))]
    lines = ["file,patient,label,target,score,p_NORMAL,p_PNEUMONIA"]
    for i, (name, score, label) in enumerate(zip(files, scores, labels)):
        lines.append(f"{name},P{i // 2},{label},{int(label != 'NORMAL')},{score},{1 - score},{score}")
    (folder / PREDICTIONS_FILE).write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def films() -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    truth = rng.random(400) < 0.6
    return truth, ["PNEUMONIA" if t else "NORMAL" for t in truth]


def noisy(truth: np.ndarray, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(np.where(truth, 1.0, -1.0) + rng.normal(0, noise, len(truth)))))


def test_a_clearly_better_candidate_wins(tmp_path, films):
    truth, labels = films
    base = write_run(tmp_path / "a", noisy(truth, 1.5, 1), labels)
    cand = write_run(tmp_path / "b", noisy(truth, 0.4, 2), labels)
    result = select.judge(base, cand)
    assert result["wins"], result["why_not"]
    assert result["gain"]["auc"]["ci95"][0] > 0


def test_the_same_model_again_does_not_win(tmp_path, films):
    truth, labels = films
    scores = noisy(truth, 1.0, 1)
    result = select.judge(write_run(tmp_path / "a", scores, labels), write_run(tmp_path / "b", scores, labels))
    assert not result["wins"]
    assert "not above zero" in result["why_not"][0]


def test_a_higher_auc_with_lower_specificity_at_the_screening_sensitivity_does_not_win(tmp_path, films):
    truth, labels = films
    base_scores = noisy(truth, 2.0, 1)  # AUC about 0.76, errors spread evenly
    cand_scores = np.where(truth, 0.9, 0.1)  # separates all films ...
    missed = np.flatnonzero(truth)[::10]
    cand_scores[missed] = 0.01  # ... but a tenth of the pneumonia films lie below every normal
    result = select.judge(write_run(tmp_path / "a", base_scores, labels), write_run(tmp_path / "b", cand_scores, labels))
    assert result["gain"]["auc"]["ci95"][0] > 0
    assert not result["wins"]
    assert any("specificity_at_0.95" in why for why in result["why_not"])


def test_runs_validated_on_different_films_are_refused_by_the_command(tmp_path, films):
    truth, labels = films
    base = write_run(tmp_path / "a", noisy(truth, 1.0, 1), labels)
    other = write_run(tmp_path / "b", noisy(truth, 1.0, 1), labels, files=[f"g{i}.jpeg" for i in range(len(truth))])
    result = CliRunner().invoke(main, ["select", str(base), str(other)])
    assert result.exit_code == 3
    assert "same --val-patients" in result.output


def test_the_command_prints_the_verdict_and_writes_the_figures(tmp_path, films):
    truth, labels = films
    base = write_run(tmp_path / "a", noisy(truth, 1.5, 1), labels)
    cand = write_run(tmp_path / "b", noisy(truth, 0.4, 2), labels)
    result = CliRunner().invoke(main, ["select", str(base), str(cand), "--out", str(tmp_path / "select.json")])
    assert result.exit_code == 0, result.output
    assert "candidate WINS by the rule" in result.output
    assert (tmp_path / "select.json").is_file()


def test_a_run_whose_predictions_list_no_films_is_refused_with_its_path(tmp_path, films):
    truth, labels = films
    base = write_run(tmp_path / "a", noisy(truth, 1.0, 1), labels)
    empty = write_run(tmp_path / "b", np.array([]), [])
    with pytest.raises(select.SelectError, match="lists no films"):
        select.judge(base, empty)
