"""The benchmark runs end to end on a few generated images (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import procs  # noqa: E402
from summary import pipeline_limit  # noqa: E402


def test_limit_adds_the_machine_time_of_both_stages() -> None:
    # Decoding alone at 40/s and invoking alone at 120/s on all cores: 1/40 + 1/120 s per image.
    assert pipeline_limit(40.0, 120.0) == pytest.approx(30.0)
    assert pipeline_limit(50.0, 50.0) == pytest.approx(25.0)


def lines_at(times: list[float], cpu: list[float]) -> procs.Run:
    return procs.Run(["x"], 0, times[-1], 50.0, cpu[-1], times, cpu, ["row"] * len(times), "")


def test_steady_rate_and_cpu_leave_out_start_up_and_the_first_burst() -> None:
    # Header at 1.0 s; rows in bursts of two every 0.1 s from 2.0 s: 6 rows after the first burst in 0.3 s,
    # during which the child used 0.45 CPU seconds (1.5 cores).
    times = [1.0, 2.0, 2.0, 2.1, 2.1, 2.2, 2.2, 2.3, 2.3]
    cpu = [0.8, 1.0, 1.0, 1.15, 1.15, 1.3, 1.3, 1.45, 1.45]
    steady = procs.steady(lines_at(times, cpu), skip=1)
    assert steady.images_per_s == pytest.approx(6 / 0.3)
    assert steady.cpu_ms_per_image == pytest.approx(1000 * 0.45 / 6)
    assert procs.steady(lines_at([1.0, 2.0, 2.0], [0.1] * 3), skip=1).images_per_s is None  # one burst: no rate


def test_cpu_seconds_of_a_live_process_grow() -> None:
    import os

    before = procs.cpu_seconds(os.getpid())
    sum(i * i for i in range(3_000_000))
    assert procs.cpu_seconds(os.getpid()) > before


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert procs.percentile(values, 50) == pytest.approx(50.5)
    assert procs.percentile(values, 95) == pytest.approx(95.05)


def test_run_all_on_five_generated_images(tmp_path, make_image, binary_model) -> None:
    data = tmp_path / "data"
    for i in range(5):
        make_image(data / f"xray_{i}.jpg", size=(640 + 32 * i, 520), seed=i)
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, BENCHMARKS / "run_all.py", "--data", data, "--n", "7", "--rounds", "1",
         "--cold-runs", "1", "--memory-sizes", "3,6", "--skip", "seed", "--model", binary_model,
         "--latency-files", "3", "--json", out],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "ours / limit" in done.stdout and "- targets:" in done.stdout
    result = json.loads(out.read_text())
    summary, raw = result["summary"], result["raw"]
    assert raw["rounds"][0]["ours"]["rows"] == 7 and summary["ours"]["errors"] == 0
    assert summary["ours"]["whole_process_images_per_s"] > 0 and summary["limit"]["images_per_s"] > 0
    assert [m["files"] for m in summary["memory"]] == [3, 6]
    assert set(summary["targets"]) == {"ours_vs_limit", "ours_vs_coral", "ours_vs_seed", "peak_rss_mib", "help_s",
                                       "one_image_s"}
    assert summary["targets"]["ours_vs_seed"]["met"] is None  # skipped, so not claimed
    assert summary["coral"]["whole_process_images_per_s"] > 0 and summary["targets"]["ours_vs_coral"]["value"] > 0
    assert summary["coral"]["cpu_ms_per_image"] > 0 and "coral_vs_ours_cpu" in summary["ratios"]  # 7 files: ours
    # may come in one burst, leaving no steady rate to divide by
    assert summary["cold"]["one_image_cpu_s"] > 0 and summary["cold"]["help_cpu_s"] > 0
    assert summary["machine"]["cores"] >= 1 and summary["command"].startswith("python benchmarks/run_all.py")
    assert done.stdout.splitlines()[0] == f"$ {summary['command']}"  # the command above the table


def test_run_all_counts_the_films_the_gate_rejects_and_the_bundle_s_whole_work(tmp_path, make_image) -> None:
    # Generated gradients are no chest films: the shipped bundle's gate rejects them and classify exits 1.
    data = tmp_path / "data"
    for i in range(3):
        make_image(data / f"not_a_film_{i}.png", size=(300, 260), seed=i)
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, BENCHMARKS / "run_all.py", "--data", data, "--n", "4", "--rounds", "1", "--cold-runs", "1",
         "--memory-sizes", "2", "--skip", "seed", "--latency-files", "2", "--json", out],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())["summary"]
    assert summary["ours"]["statuses"] == {"rejected": 4} and "ours: 4 rejected" in done.stdout
    assert summary["limit"]["views"] == ["film", "half_and_back"]  # the limit classifies with every view
    per_film = summary["limit"]["per_film_ms"]
    assert {"decode", "invoke film", "invoke half_and_back", "classify (Classifier.run)"} <= set(per_film)


def test_the_coral_loop_prints_one_probability_per_file(tmp_path, make_image, binary_model) -> None:
    files = [make_image(tmp_path / f"xray_{i}.jpg", size=(320, 300), seed=i) for i in range(2)]
    listing = tmp_path / "files.txt"
    listing.write_text("".join(f"{f}\n" for f in files))
    done = subprocess.run([sys.executable, BENCHMARKS / "coral_loop.py", "--model", binary_model, "--files", listing],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "path,probability" and [line.split(",")[0] for line in lines[1:]] == [str(f) for f in files]
    assert all(0.0 <= float(line.split(",")[1]) <= 1.0 for line in lines[1:])


def test_the_source_images_may_be_named_through_dot_dot_and_hidden_files_below_are_skipped(tmp_path, make_image):
    import workload

    make_image(tmp_path / "data" / "NORMAL" / "a.png")
    make_image(tmp_path / "data" / ".cache" / "b.png")
    make_image(tmp_path / "data" / "PNEUMONIA" / ".c.png")
    (tmp_path / "here").mkdir()
    assert workload.source_images(tmp_path / "here" / ".." / "data") == [tmp_path / "here/../data/NORMAL/a.png"]


def test_run_all_says_what_is_missing(tmp_path) -> None:
    done = subprocess.run([sys.executable, BENCHMARKS / "run_all.py", "--data", tmp_path, "--n", "2"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no .jpg/.jpeg/.png images" in done.stderr


def test_the_seed_way_finds_the_keras_model_of_the_bundle_s_training_run(tmp_path) -> None:
    import run_all

    run = tmp_path / "runs" / "pneumonia-x"
    run.mkdir(parents=True)
    (run / "model.keras").write_bytes(b"")
    manifest = {"training_run": {"folder": str(run), "command": "python -m train fit --out runs/x", "seed": 42}}
    assert run_all.keras_model_of(manifest, tmp_path / "pneumonia.json") == run / "model.keras"
    assert run_all.keras_model_of({"training_run": {"folder": "no-such-run"}}, tmp_path / "p.json") is None


def test_without_the_run_s_keras_the_seed_way_builds_the_bundle_s_architecture_untrained(tmp_path) -> None:
    import run_all

    from cxr_edge.bundle import load_bundle

    bundle = load_bundle("pneumonia")
    assert run_all.seed_model_args(tmp_path / "m.keras", bundle) == ["--keras", str(tmp_path / "m.keras")]
    assert run_all.seed_model_args(None, bundle) == ["--arch", "transfer:EfficientNetLite0:11", "--size", "224"]


def test_compare_models_times_each_model_against_the_first(binary_model) -> None:
    done = subprocess.run([sys.executable, BENCHMARKS / "compare_models.py", binary_model, binary_model,
                           "--rounds", "2", "--repeats", "2", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [row["ratio"] for row in rows][0] == 1.0 and len(rows) == 2
    assert all(row["ms"] > 0 and row["model"].startswith("tiny") for row in rows)


def test_determinism_cost_times_both_modes_and_checks_the_deterministic_weights_repeat() -> None:
    done = subprocess.run([sys.executable, BENCHMARKS / "determinism_cost.py", "--arch", "mobile", "--size", "32",
                           "--warmup", "2", "--steps", "3", "--rounds", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [len(r) for r in result["rates"].values()] == [2, 2] and result["deterministic_time_ratio"] > 0
    assert result["same_weights_in_every_child"]["deterministic"] is True


def test_backend_agreement_of_one_environment_with_itself_is_total(tmp_path, make_image, binary_model) -> None:
    for i in range(3):
        make_image(tmp_path / f"xray_{i}.png", size=(300, 280), seed=i)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")  # an error row is left out, not compared
    done = subprocess.run([sys.executable, BENCHMARKS / "backend_agreement.py", tmp_path, "--model", binary_model,
                           "--python", sys.executable, "--python", sys.executable, "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["files"], result["same_label"], result["changed"]) == (3, 3, [])
    assert result["max_abs_dp"] == 0.0 and result["speed_ratio"] > 0
    assert result["runs"][0]["backend"] == result["runs"][1]["backend"] != ""


def test_backend_agreement_counts_changed_labels_and_probability_moves() -> None:
    from backend_agreement import agreement

    first = {"a": {"prediction": "PNEUMONIA", "probability": "0.80"}, "b": {"prediction": "NORMAL", "probability": "0.10"}}
    second = {"a": {"prediction": "NORMAL", "probability": "0.60"}, "b": {"prediction": "NORMAL", "probability": "0.10"}}
    result = agreement(first, second)
    assert result["same_label"] == 1 and result["changed"] == [{"path": "a", "labels": ["PNEUMONIA", "NORMAL"]}]
    assert result["max_abs_dp"] == pytest.approx(0.2) and result["mean_abs_dp"] == pytest.approx(0.1)


def test_gate_cost_times_the_gated_model_against_itself_without_the_gate():
    import gate_cost

    rows = dict(gate_cost.measure("pneumonia", None, rounds=1, repeats=2))
    assert set(rows) == {"model only", "model + gate"} and all(ms > 0 for ms in rows.values())


def test_views_cost_times_a_bundle_with_views_against_the_one_it_replaces(tmp_path, copy_bundle, binary_model, make_image):
    import json

    import gate_cost
    import views_cost

    manifest = copy_bundle(binary_model, tmp_path / "views")
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "test_time_views": ["film", "half_and_back"]}))
    rows = views_cost.measure(str(manifest), [str(binary_model)], rounds=1, repeats=2)
    assert [name for name, _ in rows] == ["tiny_binary_int8 0.0.1 (film)", "tiny_binary_int8 0.0.1 (film, half_and_back)",
                                          "views one by one (2 invokes, interpreter only)",
                                          "views in one invoke (batch 2, interpreter only)"]
    assert gate_cost.ratio_table("bundle", rows).splitlines()[3].endswith(f"| {rows[1][1] / rows[0][1]:.3f} |")
    for n in range(3):
        make_image(tmp_path / "films" / f"xray_{n}.png", size=(300, 260), seed=n)
    newer = copy_bundle(binary_model, tmp_path / "newer")
    newer.write_text(json.dumps({**json.loads(manifest.read_text()), "version": "0.0.2"}))
    on_films = views_cost.measure(str(newer), [str(binary_model), str(manifest)], rounds=1, repeats=1,
                                  data=tmp_path / "films", films=2)
    assert [name for name, _ in on_films][:3] == ["tiny_binary_int8 0.0.1 (film)",
                                                  "tiny_binary_int8 0.0.1 (film, half_and_back)",
                                                  "tiny_binary_int8 0.0.2 (film, half_and_back)"]
    assert all(ms > 0 for _, ms in on_films)


def test_backbone_cost_converts_and_times_each_architecture(tmp_path) -> None:
    done = subprocess.run([sys.executable, BENCHMARKS / "backbone_cost.py", "mobile", "transfer:EfficientNetLite2:2",
                           "--size", "64", "--rounds", "1", "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line.split("|") for line in done.stdout.splitlines() if line.startswith("| mobile") or "Lite2:2" in line]
    assert len(rows) == 2 and float(rows[0][4]) == 1.0 and float(rows[1][2]) > 0  # ratio to the first; MB


def test_heatmap_cost_maps_a_film_at_the_ceiling_three_ways_and_counts_blank_maps():
    import heatmap_cost

    film = BENCHMARKS.parent / "sample_data/films/PNEUMONIA/person434_virus_884.jpeg"  # P = 255/256
    rows = {row["way"]: row for row in heatmap_cost.measure([film], "pneumonia", threads=1, batch=32)}
    assert list(rows) == ["probability, every view", "evidence, every view", "evidence, film view"]
    assert rows["evidence, film view"]["blank"] == rows["evidence, every view"]["blank"] == 0
    assert rows["evidence, every view"]["correlation"] == pytest.approx(1.0) and all(r["s_per_heatmap"] > 0 for r in rows.values())
    assert heatmap_cost.table(list(rows.values())).count("\n") == 4
