"""What one occlusion heatmap costs, and how often it comes out blank, measured three ways in one interleaved run.

``python benchmarks/heatmap_cost.py sample_data/films/PNEUMONIA --threads 1`` maps every film of
the folders given with the defaults of ``cxr-edge explain`` (32 px window, 16 px stride, 170
passes), films and ways alternating so that machine noise hits all alike:

* ``probability, every view`` (cxr-edge 0.6.0): the model's 8-bit probability, averaged over the
  bundle's test-time views; blank when no hidden square lowers it by 0.01 (0.6.0's cut-off);
* ``evidence, every view``: the float head's log-odds (:func:`cxr_edge.explain.log_odds`),
  averaged over the views;
* ``evidence, film view`` (``cxr-edge explain`` now: :func:`cxr_edge.explain.evidence`): the same
  on the film alone; blank below :data:`cxr_edge.explain.FLAT_DROP`.

Prints, per way, the median seconds per heatmap, the blank maps, and the median correlation of
its drops with those of ``evidence, every view`` (what the film view leaves out), over the maps
that are not flat (a map without a single step correlates with nothing).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Callable

import numpy as np

from cxr_edge import explain
from cxr_edge.bundle import load_bundle
from cxr_edge.discover import discover
from cxr_edge.engine import Classifier
from cxr_edge.preprocess import load_image

OLD_FLAT_DROP = 0.01  # cxr-edge 0.6.0: a largest drop in probability below this left the overlay blank
REFERENCE = "evidence, every view"
Measure = Callable[[Classifier, np.ndarray], np.ndarray]


def evidence_every_view(classifier: Classifier, batch: np.ndarray) -> np.ndarray:
    return np.mean([explain.log_odds(classifier.bundle, f) for f in classifier.features(batch)], axis=0)


WAYS: dict[str, tuple[Measure, float]] = {
    "probability, every view": (lambda classifier, batch: classifier.positive_scores(batch), OLD_FLAT_DROP),
    REFERENCE: (evidence_every_view, explain.FLAT_DROP),
    "evidence, film view": (explain.evidence, explain.FLAT_DROP),
}


def measure(paths: list[Path], model: str, threads: int, batch: int) -> list[dict[str, object]]:
    """One row per way: median seconds per heatmap, blank maps, median correlation with the reference."""
    classifier = Classifier(load_bundle(model), threads=threads)
    if classifier.bundle.head is None:
        raise SystemExit(f"{model}: this bundle has no head, so every way is its probability")
    films = [load_image(found.path, classifier.bundle.contract).pixels for found in discover(paths)]
    seconds: dict[str, list[float]] = {name: [] for name in WAYS}
    blank = dict.fromkeys(WAYS, 0)
    correlation: dict[str, list[float]] = {name: [] for name in WAYS}
    for pixels in films:
        drops = {}
        for name, (way, flat) in WAYS.items():
            heat = explain.occlusion_map(classifier, pixels, batch=batch, measure=way)
            seconds[name].append(heat.seconds)
            blank[name] += float(heat.drop.max()) < flat
            drops[name] = heat.drop.ravel()
        for name, drop in drops.items():
            if drop.std() > 0:
                correlation[name].append(float(np.corrcoef(drop, drops[REFERENCE])[0, 1]))
    return [{"way": name, "s_per_heatmap": statistics.median(seconds[name]), "blank": blank[name],
             "films": len(films), "correlation": statistics.median(correlation[name] or [float("nan")]),
             "correlated": len(correlation[name])} for name in WAYS]


def table(rows: list[dict[str, object]]) -> str:
    return "\n".join(["| way | s per heatmap | blank maps | correlation with evidence, every view (maps not flat) |",
                      "|---|---|---|---|",
                      *(f"| {r['way']} | {r['s_per_heatmap']:.2f} | {r['blank']} of {r['films']} | "
                        f"{r['correlation']:.3f} ({r['correlated']}) |" for r in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="films or folders of films")
    parser.add_argument("--model", default="pneumonia", help="a bundle with a head (name or manifest path)")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads")
    parser.add_argument("--batch", type=int, default=explain.BATCH, help="occluded copies per invoke")
    args = parser.parse_args()
    print(table(measure(args.paths, args.model, args.threads, args.batch)))


if __name__ == "__main__":
    main()
