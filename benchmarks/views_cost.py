"""What test-time views cost per image against a bundle without them, in one interleaved run.

``python benchmarks/views_cost.py CANDIDATE --baseline BASELINE [--data FOLDER]`` times, batch 1 and
one interpreter thread (one x86 core, as issue 26's budget reads), on the same films (``--data``:
the first ``--films`` images of a folder, decoded once; else one image of random grey levels):

* ``baseline`` (repeatable): the baseline bundle through the engine (every output, the gate, the rank score);
* ``candidate``: the candidate through the same path, one invoke per test-time view and the
  views' resampling (:meth:`cxr_edge.engine.Classifier.run`);
* ``views one by one`` and ``views in one invoke``: the candidate's interpreter alone, on its views
  made one invoke each, or stacked into one batch (``resize_tensor_input``), to see whether the
  runtime does two films in one invoke for less than two invokes.

Rows are named by bundle, version and views. Ratios are to the first row; the budget is 2.0. Decoding is
left out: it is the same for all.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
from gate_cost import WARMUP, per_call_ms, ratio_table
from workload import source_images

from cxr_edge import preprocess, runtime
from cxr_edge.bundle import load_bundle
from cxr_edge.discover import Found
from cxr_edge.engine import Classifier
from cxr_edge.preprocess import Contract, Prepared, load_image


def _name(classifier: Classifier) -> str:
    bundle = classifier.bundle
    cascade = ", cascade" if bundle.manifest.get("test_time_cascade") else ""
    return f"{bundle.name} {bundle.manifest.get('version', '')} ({', '.join(bundle.views)}{cascade})"


def films_of(data: Path | None, count: int, contract: Contract) -> list[Prepared]:
    """Decoded films to classify: up to ``count`` images under ``data``, else one of random grey levels."""
    if data is None:
        pixels = np.random.default_rng(0).integers(0, 256, (contract.height, contract.width), dtype=np.uint8)
        return [Prepared(pixels, contract.width, contract.height)]
    return [load_image(path, contract) for path in source_images(data)[:count]]


def measure(candidate: str, baselines: list[str], rounds: int, repeats: int, data: Path | None = None,
            films: int = 50) -> list[tuple[str, float]]:
    """Median ms per film of each bundle (the baselines first), rounds alternating so machine noise hits all alike.

    On real films (``data``) a cascade's cost shows: it invokes the other views only for some of them."""
    classifiers = [Classifier(load_bundle(b), threads=1) for b in [*baselines, candidate]]
    decoded = films_of(data, films, classifiers[0].bundle.contract)
    found = Found("film", "film")
    views = classifiers[-1].bundle.views
    one_by_one = runtime.make_interpreter(classifiers[-1].bundle.model_path, threads=1)
    stacked = runtime.make_interpreter(classifiers[-1].bundle.model_path, threads=1)
    made = [[preprocess.view(name, film.pixels[None]) for name in views] for film in decoded]
    ways = {_name(c): (lambda c=c: [c.run(found, film) for film in decoded]) for c in classifiers}
    ways[f"views one by one ({len(views)} invokes, interpreter only)"] = \
        lambda: [runtime.run_outputs(one_by_one, v) for film in made for v in film]
    ways[f"views in one invoke (batch {len(views)}, interpreter only)"] = \
        lambda: [runtime.run_outputs(stacked, np.concatenate(film)) for film in made]
    for call in ways.values():
        per_call_ms(call, WARMUP)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, call in ways.items():
            times[name].append(per_call_ms(call, repeats) / len(decoded))
    return [(name, statistics.median(series)) for name, series in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidate", help="a bundle's name or manifest path, with test_time_views")
    parser.add_argument("--baseline", required=True, action="append",
                        help="a bundle it would replace (repeatable; the first is the ratios' reference)")
    parser.add_argument("--data", type=Path, default=None, help="classify these films (decoded once) [one of noise]")
    parser.add_argument("--films", type=int, default=50, help="how many films of --data")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=40, help="passes over the films per bundle per round")
    args = parser.parse_args()
    rows = measure(args.candidate, args.baseline, args.rounds, args.repeats, args.data, args.films)
    print(ratio_table("bundle (views)", rows))


if __name__ == "__main__":
    main()
