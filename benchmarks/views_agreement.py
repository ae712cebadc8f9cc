"""Do two bundles decide alike? Every film of some folders through both, the films that differ named.

``python benchmarks/views_agreement.py REFERENCE CANDIDATE FOLDER [FOLDER ...]`` classifies every
image under the folders with both bundles (a name or a manifest path each; e.g. ``pneumonia`` 2.4.0
from ``git show`` against the cascaded 2.4.1) through the engine, and prints one Markdown row per
folder: films, same status, same decision, the largest change of the written probability, and how
many films the candidate ran through its other test-time views (``engine.Classifier.views_run``).
Each film that differs is listed with both probabilities. Exits 1 when a decision or status differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxr_edge.bundle import load_bundle
from cxr_edge.discover import discover
from cxr_edge.engine import Classifier, Result, classify_files


def results(model: str, folder: Path) -> tuple[list[Result], Classifier]:
    classifier = Classifier(load_bundle(model), threads=1)
    return list(classify_files(discover([folder]), classifier, workers=1)), classifier


def compare(reference: str, candidate: str, folder: Path) -> tuple[dict, list[str]]:
    """One folder's row and the lines naming each film whose status or decision differs."""
    ref, _ = results(reference, folder)
    new, classifier = results(candidate, folder)
    differing = [f"- {a.display}: {a.status} {a.prediction} {a.probability} -> {b.status} {b.prediction} "
                 f"{b.probability}" for a, b in zip(ref, new) if (a.status, a.prediction) != (b.status, b.prediction)]
    moved = [abs(a.probability - b.probability) for a, b in zip(ref, new) if a.probability is not None
             and b.probability is not None]
    return {"folder": str(folder), "films": len(ref), "same_status": sum(a.status == b.status for a, b in zip(ref, new)),
            "same_decision": sum(a.prediction == b.prediction for a, b in zip(ref, new)),
            "largest_change": max(moved, default=0.0), "views_run": classifier.views_run}, differing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", help="the bundle whose decisions count (e.g. every view on every film)")
    parser.add_argument("candidate", help="the bundle checked against it")
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    print("| folder | films | same status | same decision | largest probability change | other views run |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: |")
    listed, failed = [], False
    for folder in args.folders:
        row, differing = compare(args.reference, args.candidate, folder)
        print(f"| {row['folder']} | {row['films']} | {row['same_status']} | {row['same_decision']} "
              f"| {row['largest_change']:.4f} | {row['views_run']} |")
        listed += differing
        failed |= row["same_status"] < row["films"] or row["same_decision"] < row["films"]
    print("\n".join(listed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
