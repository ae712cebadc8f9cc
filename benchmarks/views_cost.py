"""What test-time views cost per image against a bundle without them, in one interleaved run.

``python benchmarks/views_cost.py CANDIDATE --baseline BASELINE`` times, batch 1 and one
interpreter thread (one x86 core, as issue 26's budget reads), on the same image:

* ``baseline``: the baseline bundle through the engine (every output, the gate, the rank score);
* ``candidate``: the candidate through the same path, one invoke per test-time view and the
  views' resampling (:meth:`cxr_edge.engine.Classifier.run`);
* ``views one by one`` and ``views in one invoke``: the candidate's interpreter alone, on its views
  made one invoke each, or stacked into one batch (``resize_tensor_input``), to see whether the
  runtime does two films in one invoke for less than two invokes.

Ratios are to the first row; the budget is 2.0. Decoding is left out: it is the same for both.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from gate_cost import WARMUP, per_call_ms, ratio_table

from cxr_edge import preprocess, runtime
from cxr_edge.bundle import load_bundle
from cxr_edge.discover import Found
from cxr_edge.engine import Classifier
from cxr_edge.preprocess import Prepared


def measure(candidate: str, baseline: str, rounds: int, repeats: int) -> list[tuple[str, float]]:
    """Median ms per image of each bundle, rounds alternating so machine noise hits both alike."""
    classifiers = {"baseline": Classifier(load_bundle(baseline), threads=1),
                   "candidate": Classifier(load_bundle(candidate), threads=1)}
    height, width = classifiers["baseline"].bundle.input_shape[1:3]
    pixels = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
    film, found = Prepared(pixels, width, height), Found("film", "film")
    views = classifiers["candidate"].bundle.views
    one_by_one = runtime.make_interpreter(classifiers["candidate"].bundle.model_path, threads=1)
    stacked = runtime.make_interpreter(classifiers["candidate"].bundle.model_path, threads=1)
    made = [preprocess.view(name, pixels[None]) for name in views]
    ways = {f"{name} ({', '.join(c.bundle.views)})": (lambda c=c: c.run(found, film)) for name, c in classifiers.items()}
    ways[f"views one by one ({len(views)} invokes, interpreter only)"] = \
        lambda: [runtime.run_outputs(one_by_one, v) for v in made]
    ways[f"views in one invoke (batch {len(views)}, interpreter only)"] = \
        lambda: runtime.run_outputs(stacked, np.concatenate(made))
    for call in ways.values():
        per_call_ms(call, WARMUP)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, call in ways.items():
            times[name].append(per_call_ms(call, repeats))
    return [(name, statistics.median(series)) for name, series in times.items()]


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
