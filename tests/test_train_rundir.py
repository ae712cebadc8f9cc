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
