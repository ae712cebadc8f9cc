"""What the out-of-distribution gate adds to the per-image cost, measured in one interleaved run.

``python benchmarks/gate_cost.py pneumonia --baseline OLD.json`` times, batch 1 and one
interpreter thread, on the same image:

* ``model only``: the gated bundle's interpreter, its first output read (what a bundle
  without a gate costs with this file);
* ``model + gate``: the engine's own path, every output read and the gate's verdict made
  (:meth:`cxr_edge.engine.Classifier.decide`);
* ``baseline`` (optional): another bundle, e.g. the same model before it had a features
  output (``git show 42763e4:cxr_edge/models/pneumonia.tflite``, with its .json).

Ratios are to the first row. Decoding is left out: it is the same for all, and counting it
(``stages.py``) would only shrink the gate's share.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Callable

import numpy as np

from cxr_edge import runtime
from cxr_edge.bundle import load_bundle
from cxr_edge.engine import Classifier

WARMUP = 5


def per_call_ms(call: Callable[[], object], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats * 1000


def measure(model: str, baseline: str | None, rounds: int, repeats: int) -> list[tuple[str, float]]:
    """Median ms per image of each way, rounds alternating so machine noise hits all alike."""
    gated = Classifier(load_bundle(model), threads=1)
    if gated.bundle.gate is None:
        raise SystemExit(f"{model}: this bundle has no gate to measure")
    bare = Classifier(dataclasses.replace(gated.bundle, gate=None, head=None), threads=1)
    height, width = gated.bundle.input_shape[1:3]
    pixels = np.random.default_rng(0).integers(0, 256, (1, height, width), dtype=np.uint8)
    ways = {"model only": lambda: bare.decide(pixels), "model + gate": lambda: gated.decide(pixels)}
    if baseline:
        interpreter = runtime.make_interpreter(load_bundle(baseline).model_path, threads=1)
        ways["baseline"] = lambda: runtime.run_batch(interpreter, pixels)
    for call in ways.values():
        per_call_ms(call, WARMUP)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, call in ways.items():
            times[name].append(per_call_ms(call, repeats))
    return [(name, statistics.median(series)) for name, series in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="pneumonia", help="a gated bundle's name or manifest path")
    parser.add_argument("--baseline", help="another bundle to time alongside (e.g. the model before its gate)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=40, help="images per way per round")
    args = parser.parse_args()
    print(ratio_table("way", measure(args.model, args.baseline, args.rounds, args.repeats)))


def ratio_table(what: str, rows: list[tuple[str, float]]) -> str:
    """A markdown table of ms per image, each row's ratio to the first."""
    first = rows[0][1]
    return "\n".join([f"| {what} | ms per image | ratio |", "|---|---|---|",
                      *(f"| {name} | {ms:.2f} | {ms / first:.3f} |" for name, ms in rows)])


if __name__ == "__main__":
    main()
