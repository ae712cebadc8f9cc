"""Interpreter time of several models measured in one interleaved run, batch 1.

``python benchmarks/compare_models.py pneumonia runs/convert/X/pneumonia_int8.json``
prints each model's median milliseconds per image and its ratio to the first. Rounds
alternate between the models, so a shared, noisy machine slows them alike and the ratios
hold even when the absolute times do not. Decoding is left out (``stages.py`` measures it):
this is the cost that a choice of model changes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

from cxr_edge import runtime
from cxr_edge.bundle import load_bundle

WARMUP = 5  # invokes per model before timing


def invoke_ms(interpreter: Any, pixels: np.ndarray, repeats: int) -> float:
    """Mean milliseconds of one ``run_batch`` over ``repeats`` calls."""
    start = time.perf_counter()
    for _ in range(repeats):
        runtime.run_batch(interpreter, pixels)
    return (time.perf_counter() - start) / repeats * 1000


def compare(specs: list[str], rounds: int = 10, repeats: int = 20, threads: int = 1) -> list[dict[str, Any]]:
    """Time each bundle's interpreter on the same random image, alternating models every round."""
    bundles = [load_bundle(spec) for spec in specs]
    interpreters = [runtime.make_interpreter(b.model_path, threads=threads) for b in bundles]
    height, width = bundles[0].input_shape[1:3]
    pixels = np.random.default_rng(0).integers(0, 256, (1, height, width), dtype=np.uint8)
    for interpreter in interpreters:
        invoke_ms(interpreter, pixels, WARMUP)
    times: list[list[float]] = [[] for _ in bundles]
    for _ in range(rounds):
        for interpreter, series in zip(interpreters, times):
            series.append(invoke_ms(interpreter, pixels, repeats))
    first = statistics.median(times[0])
    return [{"model": b.short_id, "size_kb": round(b.model_path.stat().st_size / 1024),
             "ms": statistics.median(series), "ratio": statistics.median(series) / first}
            for b, series in zip(bundles, times)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="bundle names or manifest paths; ratios are to the first")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20, help="invokes per model per round")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    rows = compare(args.models, args.rounds, args.repeats, args.threads)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'model':40s} {'size KB':>8s} {'ms/image':>9s} {'ratio':>6s}")
    for row in rows:
        print(f"{row['model']:40s} {row['size_kb']:8d} {row['ms']:9.2f} {row['ratio']:6.2f}")


if __name__ == "__main__":
    main()
