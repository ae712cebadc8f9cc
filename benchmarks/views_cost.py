"""What test-time views cost per image against a bundle without them, in one interleaved run.

``python benchmarks/views_cost.py CANDIDATE --baseline BASELINE`` times, batch 1 and one
interpreter thread (one x86 core, as issue 26's budget reads), on the same image:

* ``baseline``: the baseline bundle through the engine (every output, the gate, the rank score);
* ``candidate``: the candidate through the same path, one invoke per test-time view and the
  views' resampling (:meth:`cxr_edge.engine.Classifier.decide`).

Ratios are to the first row; the budget is 2.0. Decoding is left out: it is the same for both.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from gate_cost import WARMUP, per_call_ms, ratio_table

from cxr_edge.bundle import load_bundle
from cxr_edge.engine import Classifier


def measure(candidate: str, baseline: str, rounds: int, repeats: int) -> list[tuple[str, float]]:
    """Median ms per image of each bundle, rounds alternating so machine noise hits both alike."""
    classifiers = {"baseline": Classifier(load_bundle(baseline), threads=1),
                   "candidate": Classifier(load_bundle(candidate), threads=1)}
    height, width = classifiers["baseline"].bundle.input_shape[1:3]
    pixels = np.random.default_rng(0).integers(0, 256, (1, height, width), dtype=np.uint8)
    for classifier in classifiers.values():
        per_call_ms(lambda: classifier.decide(pixels), WARMUP)
    times: dict[str, list[float]] = {name: [] for name in classifiers}
    for _ in range(rounds):
        for name, classifier in classifiers.items():
            times[name].append(per_call_ms(lambda: classifier.decide(pixels), repeats))
    return [(f"{name} ({', '.join(classifiers[name].bundle.views)})", statistics.median(series))
            for name, series in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidate", help="a bundle's name or manifest path, with test_time_views")
    parser.add_argument("--baseline", required=True, help="the bundle it would replace")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=40, help="images per bundle per round")
    args = parser.parse_args()
    print(ratio_table("bundle (views)", measure(args.candidate, args.baseline, args.rounds, args.repeats)))


if __name__ == "__main__":
    main()
