"""Issue 26's training-free candidates write what the selection rule reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
