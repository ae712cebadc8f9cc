"""The shift-aware split (python -m train shift) and validating on listed patients (fit --val-patients)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from train import data, shift
from train.cli import main
from train.config import make_config
from train.run import plan_split

from train_data import make_kermany


def records_and_cue(n_patients: int = 40, seed: int = 0) -> tuple[list[data.Record], np.ndarray]:
    """Two films per patient; every film's sharpness drawn at random, normals sharper on average."""
    rng = np.random.default_rng(seed)
    records, cue = [], []
    for p in range(n_patients):
        label, subtype = ("NORMAL", "NORMAL") if p % 2 else ("PNEUMONIA", "BACTERIAL" if p % 4 else "VIRAL")
        for k in range(2):
            records.append(data.Record(Path(f"{p}-{k}.jpeg"), "train", label, subtype, f"P{p}"))
            cue.append(rng.normal(5.4 if label == "NORMAL" else 4.0, 1.0))  # overlapping, as real films (AUC ~0.85)
    return records, np.array(cue)


def patient_means(records, cue, idx, subtype) -> list[float]:
    by_patient: dict[str, list[float]] = {}
    for i in idx:
        if records[i].subtype == subtype:
            by_patient.setdefault(records[i].patient, []).append(cue[i])
    return [float(np.mean(v)) for v in by_patient.values()]


def test_the_softest_normals_and_the_sharpest_pneumonia_films_of_each_subtype_are_held_out():
    records, cue = records_and_cue()
    train_idx, val_idx = shift.shift_split(records, cue, 0.25)
    assert max(patient_means(records, cue, val_idx, "NORMAL")) <= min(patient_means(records, cue, train_idx, "NORMAL"))
    for subtype in ("BACTERIAL", "VIRAL"):
        assert min(patient_means(records, cue, val_idx, subtype)) >= max(patient_means(records, cue, train_idx, subtype))


def test_every_stratum_gives_its_fraction_of_whole_patients():
    records, cue = records_and_cue()
    train_idx, val_idx = shift.shift_split(records, cue, 0.25)
    assert {records[i].patient for i in train_idx}.isdisjoint(records[i].patient for i in val_idx)
    for subtype in ("NORMAL", "BACTERIAL", "VIRAL"):
        share = sum(records[i].subtype == subtype for i in val_idx) / sum(r.subtype == subtype for r in records)
        assert 0.25 <= share < 0.25 + 0.2  # whole patients: at most one patient's films over


def test_the_split_needs_no_seed_and_comes_out_the_same_every_time():
    records, cue = records_and_cue()
    assert shift.shift_split(records, cue, 0.2) == shift.shift_split(list(records), cue.copy(), 0.2)


def test_the_split_reverses_the_cue_on_the_held_out_side():
    records, cue = records_and_cue(n_patients=80)
    train_idx, val_idx = shift.shift_split(records, cue, 0.2)
    summary = shift.describe(records, cue, train_idx, val_idx, 0.2)
    assert summary["train"]["sharpness_auc"] > summary["all"]["sharpness_auc"] > 0.5 > summary["val"]["sharpness_auc"]


def test_sharpness_is_higher_for_a_detailed_film_than_for_its_blurred_copy():
    rng = np.random.default_rng(0)
    detailed = rng.integers(0, 256, (1, 32, 32)).astype(np.uint8)
    blurred = ((detailed[:, :, :-1].astype(int) + detailed[:, :, 1:]) // 2).astype(np.uint8)
    assert shift.sharpness(detailed)[0] > shift.sharpness(blurred)[0]


def test_shift_command_writes_the_patients_that_fit_then_validates_on(tmp_path):
    root = make_kermany(tmp_path / "data", n_patients=12)
    result = CliRunner().invoke(main, ["shift", "--data", str(root), "--out", str(tmp_path / "shift"),
                                       "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    listed = data.read_val_patients(tmp_path / "shift" / shift.VAL_PATIENTS_FILE)
    assert (tmp_path / "shift" / shift.SHIFT_FILE).is_file()
    cfg = make_config("mobile", str(tmp_path / "run"), data=str(root),
                      val_patients=str(tmp_path / "shift" / shift.VAL_PATIENTS_FILE))
    split = plan_split(cfg)
    assert split.val_patients == listed


def test_a_patient_list_made_for_other_data_is_refused_with_what_to_check(tmp_path):
    records, _ = records_and_cue()
    with pytest.raises(data.DataError, match="0 of 80 images belong to its 2 patients.*made for this data"):
        data.split_by_list(records, {"IM-9999", "person9999"}, tmp_path / "val_patients.txt")
