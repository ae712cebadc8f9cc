"""The whole benchmark in one command: ours, the Coral example's loop, the seed way and the machine's limit.

    python benchmarks/run_all.py --data /path/to/fullres --n 400 --json benchmark.json

Prints the command, then a table with the ratios ours/Coral loop, ours/seed and ours/limit and
the targets of issue 35, and writes every measurement as JSON. Everything that is timed runs as
a child process (``cxr-edge`` itself, ``stages.py``, ``coral_loop.py``, ``seed_way.py``), so peak
memory is that of a whole process and the parent's imports cost nothing. Films the bundle's gate
rejects are classified like the others (a row each, exit status 1) and counted. See
docs/performance.md for how to read it.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import datetime
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import procs  # noqa: E402
import summary as summarising  # noqa: E402
import workload  # noqa: E402
from cxr_edge.bundle import Bundle, BundleError, load_bundle  # noqa: E402

DATA_ENV = "CXR_BENCH_DATA"
KERAS_NAMES = ("model.keras", "best.keras")
RUNS = "runs"  # where `python -m train` puts its run folders


@dataclasses.dataclass
class Setup:
    """What every phase needs: the command, the model, the files and a scratch folder."""

    exe: list[str]
    model_args: list[str]  # [] for the bundled default, else ["--model", spec]
    manifest: Path
    seed_model: list[str] | None  # seed_way.py's model: the run's .keras, else an untrained stand-in; None: none
    sources: list[Path]
    files: list[Path]
    folder: Path
    file_list: Path
    scratch: Path
    cores: int


def cxr_edge_command() -> list[str]:
    """The installed ``cxr-edge`` script beside this Python, else ``python -m cxr_edge``."""
    script = Path(sys.executable).parent / "cxr-edge"
    if script.exists():
        return [str(script)]
    found = shutil.which("cxr-edge")
    return [found] if found else [sys.executable, "-m", "cxr_edge"]


def keras_model_of(manifest: dict[str, Any], manifest_path: Path) -> Path | None:
    """The ``.keras`` model of the bundle's training run, if the manifest leads to one."""
    candidates = [v for v in _strings(manifest.get("training_run") or {}) if v.strip() and not any(c.isspace() for c in v)]
    for candidate in candidates:  # e.g. {"folder": "pneumonia-mobile-v1"}: a folder under runs/
        for base in (Path.cwd(), Path.cwd() / RUNS, manifest_path.parent, HERE.parent, HERE.parent / RUNS):
            where = base / candidate
            if where.is_file() and where.suffix == ".keras":
                return where
            for name in KERAS_NAMES:
                if (where / name).is_file():
                    return where / name
    return None


def _strings(data: Any) -> list[str]:
    """Every string in a JSON value (the manifest does not fix where the run's folder is named)."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        data = list(data.values())
    return [s for item in data for s in _strings(item)] if isinstance(data, list) else []


def seed_model_args(keras: Path | None, bundle: Bundle) -> list[str] | None:
    """How ``seed_way.py`` gets the bundle's network: its run's ``.keras``, else the run's architecture built
    untrained (the same time per image; the probabilities then mean nothing), else None."""
    if keras is not None:
        return ["--keras", str(keras)]
    arch = (bundle.manifest.get("training_run") or {}).get("arch")
    return ["--arch", arch, "--size", str(bundle.input_shape[1])] if arch else None


def prepare(args: argparse.Namespace, scratch: Path) -> Setup:
    sources = workload.source_images(Path(args.data))
    bundle = load_bundle(args.model)
    keras = Path(args.keras) if args.keras else keras_model_of(bundle.manifest, bundle.manifest_path)
    for source in sources:
        source.read_bytes()  # into the page cache, so the first measured run does not pay for the disk
    files = workload.link_folder(sources, args.n, scratch / "images")
    return Setup(
        exe=cxr_edge_command(),
        model_args=["--model", str(bundle.manifest_path)] if args.model else [],
        manifest=bundle.manifest_path,
        seed_model=seed_model_args(keras, bundle),
        sources=sources,
        files=files,
        folder=scratch / "images",
        file_list=workload.write_list(files, scratch / "files.txt"),
        scratch=scratch,
        cores=workload.usable_cores(),
    )


def child_env() -> dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


#: ``cxr-edge classify`` exits 1 when some inputs were unreadable or rejected by the gate (each has its row).
CLASSIFY_EXITS = (0, 1)


def classify(setup: Setup, folder: Path, out: str | Path) -> procs.Run:
    """``cxr-edge classify`` of ``folder`` as a whole process; rejected or unreadable films are rows, not failures."""
    argv = [*setup.exe, "classify", folder, *setup.model_args, "--out", out, "--quiet"]
    return procs.run(argv, env=child_env()).check(CLASSIFY_EXITS)


def run_ours(setup: Setup) -> dict[str, Any]:
    """``cxr-edge classify`` on the folder, rows to stdout so each is time-stamped as it comes."""
    load = workload.load()
    run = classify(setup, setup.folder, "-")
    rows = list(csv.DictReader(run.stdout))
    if len(rows) != len(setup.files):
        raise procs.ChildFailed(f"cxr-edge classify wrote {len(rows)} rows for {len(setup.files)} files")
    steady = procs.steady(run, skip=1)
    return {
        "load": load,
        "rows": len(rows),
        "statuses": dict(collections.Counter(r["status"] for r in rows)),
        "errors": sum(r["status"] != "ok" for r in rows),
        "steady": dataclasses.asdict(steady),
        "images_per_s": steady.images_per_s,
        "whole_process_images_per_s": len(rows) / run.wall_s,
        "wall_s": run.wall_s,
        "peak_rss_mib": run.peak_rss_mib,
        "probabilities": [float(r["probability"] or "nan") for r in rows],
    }


def run_stages(setup: Setup, latency_files: int) -> dict[str, Any]:
    argv = [sys.executable, HERE / "stages.py", "--model", setup.manifest, "--files", setup.file_list,
            "--cores", str(setup.cores), "--latency-files", str(latency_files)]
    load = workload.load()
    run = procs.run(argv, env=child_env()).check()
    return {"load": load, **json.loads(run.stdout[-1])}


def run_coral(setup: Setup) -> dict[str, Any]:
    """The Coral example's loop (``coral_loop.py``) on the same files, timed as ours is."""
    argv = [sys.executable, HERE / "coral_loop.py", "--model", setup.manifest, "--files", setup.file_list]
    load = workload.load()
    run = procs.run(argv, env=child_env()).check()
    steady = procs.steady(run, skip=1)
    return {
        "load": load,
        "steady": dataclasses.asdict(steady),
        "images_per_s": steady.images_per_s,
        "rows": len(run.stdout) - 1,
        "whole_process_images_per_s": (len(run.stdout) - 1) / run.wall_s,
        "wall_s": run.wall_s,
        "peak_rss_mib": run.peak_rss_mib,
    }


def run_seed(setup: Setup) -> dict[str, Any] | None:
    if setup.seed_model is None:
        return None
    argv = [sys.executable, HERE / "seed_way.py", *setup.seed_model, "--files", setup.file_list]
    load = workload.load()
    run = procs.run(argv, env=child_env()).check()
    data = json.loads(run.stdout[-1])
    steady = data["per_image_s"][1:] or data["per_image_s"]
    return {
        "load": load,
        "keras": setup.seed_model[1] + (", untrained (the run's .keras is not on disk)" if data["untrained"] else ""),
        "untrained": data["untrained"],
        "images_per_s": len(steady) / sum(steady),
        "whole_process_images_per_s": len(data["per_image_s"]) / run.wall_s,
        "latency_s": steady,
        "cpu_s": run.cpu_s,
        "startup_s": data["startup_s"],
        "wall_s": run.wall_s,
        "peak_rss_mib": run.peak_rss_mib,
        "probabilities": data["probabilities"],
    }


def run_cold(setup: Setup, repeats: int) -> dict[str, Any]:
    """``cxr-edge --help`` and one image classified, each as a whole process, ``repeats`` times."""
    largest = max(setup.sources, key=lambda p: p.stat().st_size)
    one = [*setup.exe, "classify", largest, *setup.model_args, "--out", setup.scratch / "one.csv",
           "--overwrite", "--quiet"]
    load = workload.load()
    help_runs = [procs.run([*setup.exe, "--help"]).check() for _ in range(repeats)]
    one_runs = [procs.run(one).check(CLASSIFY_EXITS) for _ in range(repeats)]
    return {
        "load": load,
        "help_s": [r.wall_s for r in help_runs],
        "help_cpu_s": [r.cpu_s for r in help_runs],
        "one_image_s": [r.wall_s for r in one_runs],
        "one_image_cpu_s": [r.cpu_s for r in one_runs],
        "one_image_peak_rss_mib": max(r.peak_rss_mib for r in one_runs),
        "one_image_file": largest.name,
        "one_image_bytes": largest.stat().st_size,
    }


def run_memory(setup: Setup, sizes: list[int]) -> list[dict[str, Any]]:
    """Peak RSS of ``cxr-edge classify`` as the folder grows (report to a real file)."""
    out = []
    for size in sizes:
        folder = setup.scratch / f"folder_{size}"
        workload.link_folder(setup.sources, size, folder)
        load = workload.load()
        run = classify(setup, folder, setup.scratch / f"report_{size}.csv")
        out.append({"files": size, "load": load, "peak_rss_mib": run.peak_rss_mib, "wall_s": run.wall_s,
                    "whole_process_images_per_s": size / run.wall_s})
        shutil.rmtree(folder)
    return out


def measure(args: argparse.Namespace, setup: Setup) -> dict[str, Any]:
    skip = set(args.skip)
    result: dict[str, Any] = {"rounds": []}
    for _ in range(args.rounds):  # the Coral loop in every round too: its ratio to ours is a target
        result["rounds"].append({"ours": run_ours(setup),
                                 "stages": run_stages(setup, min(args.n, args.latency_files)),
                                 "coral": None if "coral" in skip else run_coral(setup)})
    if setup.seed_model is None and "seed" not in skip:
        print("benchmark: no .keras model found for the seed way (give --keras PATH); skipping it", file=sys.stderr)
    result["seed"] = None if "seed" in skip else run_seed(setup)
    result["cold"] = None if "cold" in skip else run_cold(setup, args.cold_runs)
    result["memory"] = [] if "memory" in skip else run_memory(setup, args.memory_sizes)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get(DATA_ENV),
                        help=f"folder of full-resolution X-rays (searched recursively) [${DATA_ENV}]")
    parser.add_argument("--n", type=int, default=400, help="files per run (the images repeat by symlinks)")
    parser.add_argument("--model", default=None, help="bundle name or manifest path [the bundled default]")
    parser.add_argument("--keras", default=None, help="the seed way's .keras model [the bundle's training run]")
    parser.add_argument("--rounds", type=int, default=6, help="ours and the limit alternate; rates are pooled")
    parser.add_argument("--latency-files", type=int, default=100, help="images timed one at a time, per round")
    parser.add_argument("--cold-runs", type=int, default=7, help="repeats of each cold start (median)")
    parser.add_argument("--memory-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100, 1000, 10000])
    parser.add_argument("--skip", nargs="*", default=[], choices=("coral", "seed", "cold", "memory"))
    parser.add_argument("--json", type=Path, default=None, help="write every measurement here")
    args = parser.parse_args(argv)
    if not args.data:
        parser.error(f"give --data FOLDER or set ${DATA_ENV}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    scratch = Path(tempfile.mkdtemp(prefix="cxr-bench-"))
    try:
        setup = prepare(args, scratch)
        raw = measure(args, setup)
    except (procs.ChildFailed, workload.NoImages, BundleError, OSError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    command = " ".join(["python", "benchmarks/run_all.py", *(sys.argv[1:] if argv is None else argv)])
    summary = summarising.summarise(raw, setup, args, command, started)
    print(summarising.table(summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "raw": raw}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
