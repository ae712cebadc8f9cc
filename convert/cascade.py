"""The test-time views' cascade: the band of film probabilities where the other views can change a decision.

Averaging a film's views moves its probability by ``average - film``. Where the film's own
probability lies farther from the threshold than averaging ever moved one, the average falls
on the same side, so the other views' invokes (half the work of a two-view bundle) cannot
change the decision and are skipped. The band is measured on the run's validation films the
gate passes, both ways (the largest move up sets how far below the threshold the views still
run, the largest move down how far above), plus a margin for films that move more than any
validation film did. The manifest's ``test_time_cascade`` records it with the figures that
re-verify it (``python -m convert.add_views ... --cascade MARGIN``).
"""

from __future__ import annotations

import numpy as np

from cxr_edge.decision import Cascade
from cxr_edge.review import metrics

#: The default margin: five steps of the int8 output (1/256 each). On the 200 full-size originals one film moved
#: 0.002 more than any validation film; a margin near 0.04 would reach the output's top step (255/256) above
#: pneumonia's threshold and send every confidently flagged film through both views.
DEFAULT_MARGIN = 0.02


def band(film: np.ndarray, averaged: np.ndarray, margin: float) -> dict[str, float]:
    """``below`` and ``above``: how far under and over the threshold the film's own probability still needs the
    other views: the largest move up and down that averaging gave ``film`` (one per validation film), plus
    ``margin``."""
    move = np.asarray(averaged, dtype=np.float64) - np.asarray(film, dtype=np.float64)
    return {"below": float(max(move.max(initial=0.0), 0.0) + margin),
            "above": float(max(-move.min(initial=0.0), 0.0) + margin)}


def manifest_record(film: np.ndarray, averaged: np.ndarray, positive: np.ndarray, threshold: float,
                    margin: float) -> dict:
    """The manifest's ``test_time_cascade``: the band, how it was derived, and what it did on validation."""
    edges = band(film, averaged, margin)
    needed = Cascade(**edges).needs_views(film, threshold)
    cascaded = np.where(needed, averaged, film)
    same = int(np.sum((cascaded >= threshold) == (np.asarray(averaged) >= threshold)))
    move = np.asarray(averaged, dtype=np.float64) - np.asarray(film, dtype=np.float64)
    return {
        **edges,
        "margin": margin,
        "rule": "the other test-time views run only for films whose own probability p lies in "
                "[threshold - below, threshold + above); elsewhere p decides alone and is the probability written. "
                "below and above: the largest move up and down that averaging the views gave a validation film the "
                "gate passes, plus margin. The rank score is the head's on the film view for every film",
        "validation": {
            "films": int(len(film)),
            "views_run": int(needed.sum()),
            "same_decisions": same,
            "largest_move_up": float(move.max(initial=0.0)),
            "largest_move_down": float(-move.min(initial=0.0)),
            "auc": metrics.finite_or_none(metrics.binary_metrics(np.asarray(positive), cascaded, threshold))["auc"],
        },
    }
