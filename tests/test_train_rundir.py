"""train.rundir: run.json records how to repeat a run, and old run folders keep their contract."""

from __future__ import annotations

import json


def test_run_json_records_command_versions_seed_and_contract(binary_run):
    record = json.loads((binary_run / "run.json").read_text())
    assert "--smoke" in record["command"] and record["seed"] == 42
    assert {"tensorflow", "keras", "numpy", "cxr_edge"} <= set(record["versions"])
    assert record["preprocessing"]["width"] == 64 and record["labels"] == ["NORMAL", "PNEUMONIA"]
    assert record["preprocessing"]["contract"] == "cxr-gray-squash/2" and "--reencode-jpeg 75" in record["command"]
    assert record["strategy"] == "DefaultStrategy" and record["replicas"] == 1


def test_a_run_from_before_contract_2_keeps_contract_1(binary_run, tmp_path):
    """Old run.json files have no reencode_jpeg: they were trained, and must be served, without it."""
    from train.rundir import RUN_FILE, load_run

    record = json.loads((binary_run / RUN_FILE).read_text())
    del record["config"]["reencode_jpeg"]
    (tmp_path / RUN_FILE).write_text(json.dumps(record))
    cfg, _ = load_run(tmp_path)
    assert cfg.contract.reencode_quality is None and cfg.contract.to_manifest()["contract"] == "cxr-gray-squash/1"
    assert "--reencode-jpeg 0" in cfg.command()  # reproducing it must not re-encode (the option's default does)


def test_the_threshold_is_read_back_as_evaluate_chose_and_wrote_it(binary_run):
    from train import report
    from train.rundir import Threshold, load_run, load_threshold

    cfg, _ = load_run(binary_run)
    chosen = Threshold(report.evaluation(binary_run).threshold, report.threshold_rule(cfg.target_sensitivity))
    assert load_threshold(binary_run) == chosen


def test_a_split_remade_from_its_seed_is_the_one_fit_makes(kermany, tmp_path):
    """What add_gate and add_views check a bundle's fingerprint against, when its run folder is gone."""
    from train.config import make_config
    from train.run import plan_split
    from train.rundir import seeded_split

    cfg = make_config("mobile", str(tmp_path / "run"), data=str(kermany), split_seed=7)
    split = plan_split(cfg)
    sides = seeded_split(kermany, cfg.val_fraction, cfg.patient_split_seed)
    assert sides == {"train": [split.records[i] for i in split.train_idx],
                     "val": [split.records[i] for i in split.val_idx]}
