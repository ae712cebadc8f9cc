"""Issue 26's training-free candidates write what the selection rule reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxr_edge.preprocess import half_and_back
from train import data, rundir, select, shift


def test_the_half_resolution_view_is_softer_but_keeps_the_film_s_grey_levels():
    rng = np.random.default_rng(0)
    films = rng.integers(0, 256, (3, 64, 48)).astype(np.uint8)
    soft = half_and_back(films)
    assert soft.shape == films.shape and soft.dtype == np.uint8
    assert (shift.sharpness(soft) < shift.sharpness(films) / 2).all()
    assert np.allclose(soft.mean(axis=(1, 2)), films.mean(axis=(1, 2)), atol=3)


def test_predictions_written_in_the_run_format_are_what_select_reads(tmp_path):
    root = tmp_path / "data"
    records = [data.Record(root / "train" / label / f"{name}.jpeg", "train", label, subtype, name)
               for label, subtype, name in [("NORMAL", "NORMAL", "IM-1"), ("PNEUMONIA", "VIRAL", "person2"),
                                            ("PNEUMONIA", "BACTERIAL", "person3")]]
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])  # the last: bacterial called viral
    rundir.write_predictions(tmp_path / rundir.PREDICTIONS_FILE, probs, records, root, data.SUBTYPES, "subtype")
    read = select.read_predictions(tmp_path)
    assert list(read["file"]) == ["train/NORMAL/IM-1.jpeg", "train/PNEUMONIA/person2.jpeg", "train/PNEUMONIA/person3.jpeg"]
    assert list(read["label"]) == ["NORMAL", "VIRAL", "BACTERIAL"]
    np.testing.assert_allclose(read["score"], [0.1, 0.8, 0.9])
    assert select.measures(read, np.arange(3))["accuracy"] == 2 / 3


def _write_run(folder: Path, records, probs: np.ndarray, root: Path) -> Path:
    folder.mkdir()
    rundir.write_predictions(folder / rundir.PREDICTIONS_FILE, probs, records, root, data.TASK_LABELS["binary"], "binary")
    return folder


def test_an_ensemble_averages_its_members_film_by_film_and_refuses_different_films(tmp_path):
    from experiments.shift_candidates import main

    root = tmp_path / "data"
    records = [data.Record(root / "train" / label / f"{name}.jpeg", "train", label, subtype, name)
               for label, subtype, name in [("NORMAL", "NORMAL", "IM-1"), ("PNEUMONIA", "VIRAL", "person2")]]
    a = _write_run(tmp_path / "a", records, np.array([[0.6, 0.4], [0.3, 0.7]]), root)
    b = _write_run(tmp_path / "b", records[::-1], np.array([[0.1, 0.9], [1.0, 0.0]]), root)  # row order must not matter
    assert main(["ensemble", str(a), str(b), "--out", str(tmp_path / "ab")]) == 0
    read = select.read_predictions(tmp_path / "ab")
    np.testing.assert_allclose(read["score"], [0.2, 0.8])  # IM-1: (0.4 + 0.0) / 2; person2: (0.7 + 0.9) / 2
    np.testing.assert_allclose(read["probs"].sum(axis=1), 1.0)
    other = _write_run(tmp_path / "c", records[:1], np.array([[0.5, 0.5]]), root)
    with pytest.raises(SystemExit, match="same films"):
        main(["ensemble", str(a), str(other), "--out", str(tmp_path / "ac")])
