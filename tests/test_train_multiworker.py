"""python -m train fit on a cluster: two local CPU workers (TF_CONFIG) train one model into one run folder.

The cluster tests are ``slow``: two sessions of two TensorFlow processes, about 110 s here.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from train_data import make_kermany

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
TIMEOUT_S = 300
DIGEST = re.compile(r"^worker (\d): trained weights sha256 ([0-9a-f]{16}) after epoch (\d+)$", re.M)


def free_ports(n: int) -> list[int]:
    """``n`` localhost ports free now (the OS picks them; closed again for the workers to bind)."""
    sockets = [socket.socket() for _ in range(n)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def fit_on_cluster(tmp: Path, out: Path, *options: str) -> list[str]:
    """Run ``fit`` as every worker of a fresh localhost cluster, all on ``out``; return each one's stderr.

    The logs go to files, not pipes: a worker blocked on a full pipe would stall the others.
    """
    hosts = [f"localhost:{port}" for port in free_ports(WORKERS)]
    (tmp / "tmp").mkdir(exist_ok=True)
    logs = [tempfile.TemporaryFile("w+") for _ in range(WORKERS)]
    workers = []
    for index, log in enumerate(logs):
        task = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(task), "TMPDIR": str(tmp / "tmp"), "CUDA_VISIBLE_DEVICES": ""}
        command = ["-m", "train", "fit", "--out", str(out), "--cache-dir", str(tmp / f"cache{index}"), *options]
        workers.append(subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                        stderr=log, text=True))
    try:
        for worker in workers:
            worker.wait(timeout=TIMEOUT_S)
    finally:
        for worker in workers:
            worker.kill()  # a worker whose peer failed waits for it (and ignores SIGTERM)
    texts = []
    for worker, log in zip(workers, logs):
        log.seek(0)
        texts.append(log.read())
        assert worker.returncode == 0, texts[-1]
    return texts


def digests(logs: list[str]) -> dict[int, tuple[str, int]]:
    """Each worker's logged (weights digest, epoch)."""
    found = {}
    for log in logs:
        for worker, digest, epoch in DIGEST.findall(log):
            found[int(worker)] = (digest, int(epoch))
    return found


def saved_digest(path: Path) -> str:
    import keras

    from train import fit

    return fit.trained_digest(keras.models.load_model(path, compile=False))


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory) -> tuple[Path, list[str], list[str]]:
    """One epoch on two workers, then resumed by both for a second: the run folder and both sessions' logs."""
    tmp = tmp_path_factory.mktemp("cluster")
    kermany = make_kermany(tmp / "kermany", n_patients=12)
    out = tmp / "run"
    options = ("--data", str(kermany), "--size", "48", "--arch", "mobile", "--batch-size", "8")
    first = fit_on_cluster(tmp, out, *options, "--epochs", "1")
    resumed = fit_on_cluster(tmp, out, *options, "--epochs", "2", "--resume")
    return out, first, resumed


@pytest.mark.slow
def test_two_workers_train_one_model_and_the_chief_records_the_strategy(cluster_run):
    out, _, _ = cluster_run
    record = json.loads((out / "run.json").read_text())
    assert record["strategy"] == "MultiWorkerMirroredStrategy" and record["replicas"] == WORKERS
    assert (out / "model.keras").is_file() and (out / "metrics.json").is_file()


@pytest.mark.slow
def test_both_workers_end_each_session_with_the_weights_the_chief_saved(cluster_run):
    out, first, resumed = cluster_run
    assert set(digests(first).values()) == {(digests(first)[0][0], 1)} and len(digests(first)) == WORKERS
    last = saved_digest(out / "last.keras")
    assert digests(resumed) == {0: (last, 2), 1: (last, 2)}
    assert last != digests(first)[0][0]  # the second session trained on


@pytest.mark.slow
def test_a_resumed_cluster_run_goes_on_from_the_chiefs_checkpoint(cluster_run):
    out, _, resumed = cluster_run
    assert all(f"resuming after epoch 1 from {out / 'last.keras'}" in log for log in resumed)
    assert json.loads((out / "train_state.json").read_text())["epoch"] == 2
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 2  # header, one row per epoch


@pytest.mark.slow
def test_the_other_worker_writes_into_a_temporary_folder_and_deletes_it(cluster_run):
    out, first, resumed = cluster_run
    for logs in (first, resumed):
        [folder] = re.findall(rf"^worker 1: the chief writes {re.escape(str(out))}; this worker writes into (\S+), deleted",
                              logs[1], re.M)
        assert Path(folder).parent == out.parent / "tmp" and not Path(folder).exists()
        assert "the chief writes" not in logs[0]
    assert not list((out.parent / "tmp").iterdir()) and not list(out.glob(".partial-*"))


@pytest.mark.parametrize("tf_config, size", [
    (None, 0),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, 1),
    ({"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 1}}, 3),
])
def test_only_a_tf_config_naming_several_workers_makes_a_cluster(monkeypatch, tf_config, size):
    from train import fit

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert fit.cluster_size() == size


def test_single_machine_strategies_are_recorded_by_their_public_names():
    import tensorflow as tf

    from train import fit

    assert fit.strategy_name(tf.distribute.get_strategy()) == "DefaultStrategy"
    assert fit.strategy_name(tf.distribute.MirroredStrategy()) == "MirroredStrategy"
    assert fit.cluster_task(tf.distribute.get_strategy()) is None
