"""Do two Python environments' interpreters give the same answers, and how fast?

``python benchmarks/backend_agreement.py --python .venv/bin/python --python tflr/bin/python
--model pneumonia FOLDER...`` runs ``cxr-edge classify`` on the same files once per
environment (for example LiteRT with numpy 2 against tflite-runtime 2.14 with numpy 1, the
32-bit Raspberry Pi fallback) and prints each one's interpreter and images per second, then
how many labels agree and how far the probabilities move. int8 kernels may round
differently between runtimes, so a few hundredths of probability is expected; a changed
label is what a clinic would notice. Every environment needs cxr-edge installed.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBABILITY_PREFIXES = ("probability", "p_")
BACKEND = "from cxr_edge import runtime; print(runtime.backend_name(), runtime.backend_version())"


def classify(python: str, inputs: list[str], model: str, out: Path) -> dict[str, object]:
    """Run one environment's ``cxr-edge classify``; its interpreter, rows and wall-clock images/s."""
    backend = subprocess.run([python, "-c", BACKEND], capture_output=True, text=True, check=True).stdout.strip()
    start = time.perf_counter()
    done = subprocess.run([python, "-m", "cxr_edge", "classify", *inputs, "--model", model, "--out", str(out),
                           "--overwrite"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: some files unreadable, their rows say so and are left out
        raise SystemExit(f"{python}: cxr-edge classify exited {done.returncode}: {done.stderr.strip()}")
    rows = {path: row for path, row in read_report(out).items() if row["status"] == "ok"}
    return {"python": python, "backend": backend, "rows": rows, "images_per_s": len(rows) / seconds}


def read_report(path: Path) -> dict[str, dict[str, str]]:
    """Every row of a cxr-edge CSV report, by its ``path`` column (the key ``--resume`` uses too)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def agreement(first: dict[str, dict[str, str]], second: dict[str, dict[str, str]]) -> dict[str, object]:
    """Labels in common and the largest and mean absolute change of any probability column."""
    paths = sorted(first.keys() & second.keys())
    columns = [c for c in next(iter(first.values()), {}) if c.startswith(PROBABILITY_PREFIXES)]
    changes = [abs(float(first[p][c]) - float(second[p][c])) for p in paths for c in columns]
    changed = [p for p in paths if first[p]["prediction"] != second[p]["prediction"]]
    return {
        "files": len(paths),
        "same_label": len(paths) - len(changed),
        "changed": [{"path": p, "labels": [first[p]["prediction"], second[p]["prediction"]]} for p in changed],
        "max_abs_dp": max(changes, default=0.0),
        "mean_abs_dp": sum(changes) / len(changes) if changes else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", help="files or folders, as for cxr-edge classify")
    parser.add_argument("--python", action="append", required=True,
                        help="a Python with cxr-edge installed; give it twice (the first is the reference)")
    parser.add_argument("--model", default="pneumonia")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    if len(args.python) != 2:
        parser.error("give --python exactly twice")
    with tempfile.TemporaryDirectory() as folder:
        runs = [classify(py, args.inputs, args.model, Path(folder) / f"{i}.csv") for i, py in enumerate(args.python)]
    result = agreement(runs[0].pop("rows"), runs[1].pop("rows"))
    result.update(model=args.model, runs=runs, speed_ratio=runs[1]["images_per_s"] / runs[0]["images_per_s"])
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for run in runs:
        print(f"{run['backend']:<28} {run['images_per_s']:8.1f} images/s  ({run['python']})")
    print(f"second / first speed: {result['speed_ratio']:.3f}")
    print(f"{args.model}: same label {result['same_label']} of {result['files']}; "
          f"probability change max {result['max_abs_dp']:.4f}, mean {result['mean_abs_dp']:.4f}")
    for change in result["changed"]:
        print(f"  {change['path']}: {' -> '.join(change['labels'])}")


if __name__ == "__main__":
    sys.exit(main())
