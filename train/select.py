"""Does a candidate recipe beat the baseline on the shift-aware validation? The rule, as code.

Written down before any candidate was trained (issue 26; ``docs/shift-validation.md``): both
runs are trained on the same ``python -m train shift`` split and scored on its held-out films
(their ``val_predictions.csv``). The candidate wins only when

1. its screening AUC is higher with the 95% interval of the gain above zero (paired,
   patient-grouped bootstrap, 2,000 resamples: single runs differ by a few points, see
   :mod:`train.paired`), and
2. its specificity at sensitivity >= 0.95 (each run's threshold chosen on these films by the
   shipped rule) is at least the baseline's, and
3. for three-class runs, its three-class accuracy (most likely label) is at least the baseline's.

A winner is then retrained on the usual patient split, where it must not lose (AUC within
0.002, specificity at the shipped threshold within 0.01) before it can ship.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from cxr_edge.review import metrics
from train.rundir import PREDICTIONS_FILE

N_BOOT = 2000
TARGET_SENSITIVITY = 0.95


class SelectError(ValueError):
    """The two runs cannot be compared (different films, missing predictions)."""


def read_predictions(run_dir: Path) -> dict[str, np.ndarray]:
    """file, patient, truth (1: pneumonia), screening score and class probabilities of a run's validation."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        raise SelectError(f"{run_dir} has no {PREDICTIONS_FILE}: is it a finished run?")
    with open(path, newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["file"])
    if not rows:
        raise SelectError(f"{path} lists no films")
    classes = [c for c in rows[0] if c.startswith("p_")]
    return {"file": np.array([r["file"] for r in rows]), "patient": np.array([r["patient"] for r in rows]),
            "label": np.array([r["label"] for r in rows]),
            "truth": np.array([r["label"] != "NORMAL" for r in rows], dtype=int),
            "score": np.array([float(r["score"]) for r in rows]),
            "probs": np.array([[float(r[c]) for c in classes] for r in rows]),
            "classes": np.array([c[2:] for c in classes])}


def measures(p: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, float]:
    """The rule's figures on the films ``idx``."""
    y, s = p["truth"][idx], p["score"][idx]
    if y.min() == y.max():
        return {"auc": np.nan, "specificity_at_0.95": np.nan, "accuracy": np.nan}
    threshold = metrics.threshold_for_sensitivity(y, s, TARGET_SENSITIVITY)
    out = {"auc": metrics.roc_auc(y, s),
           "specificity_at_0.95": metrics.binary_metrics(y, s, threshold)["specificity"]}
    if len(p["classes"]) > 2:
        out["accuracy"] = float(np.mean(p["classes"][np.argmax(p["probs"][idx], axis=1)] == p["label"][idx]))
    return out


def judge(baseline: Path, candidate: Path, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Both runs' figures, the candidate's gains with 95% intervals, and the verdict."""
    a, b = read_predictions(baseline), read_predictions(candidate)
    if not np.array_equal(a["file"], b["file"]):
        raise SelectError(f"{baseline} and {candidate} were validated on different films: train both with the "
                          "same --val-patients")
    every = np.arange(len(a["file"]))
    fig_a, fig_b = measures(a, every), measures(b, every)

    def gains(idx: np.ndarray) -> dict[str, float]:
        ma, mb = measures(a, idx), measures(b, idx)
        return {k: mb[k] - ma[k] for k in ma}

    intervals = metrics.bootstrap(gains, len(every), n_boot=n_boot, seed=seed, groups=a["patient"])
    gain = {k: {"gain": fig_b[k] - fig_a[k], "ci95": list(intervals[k])} for k in fig_a}
    reasons = []
    if not intervals["auc"][0] > 0:
        reasons.append(f"AUC gain {gain['auc']['gain']:+.4f}, interval {intervals['auc'][0]:+.4f} to "
                       f"{intervals['auc'][1]:+.4f}, not above zero")
    for key in ("specificity_at_0.95", "accuracy"):
        if key in fig_a and fig_b[key] < fig_a[key]:
            reasons.append(f"{key} {fig_b[key]:.4f} below the baseline's {fig_a[key]:.4f}")
    return {"baseline": str(baseline), "candidate": str(candidate), "films": len(every),
            "patients": len(set(a["patient"])), "baseline_figures": fig_a, "candidate_figures": fig_b,
            "gain": gain, "wins": not reasons, "why_not": reasons}


def report(result: dict) -> str:
    """A few lines for the console and the card."""
    lines = [f"{result['films']} films of {result['patients']} patients; baseline {result['baseline']}, "
             f"candidate {result['candidate']}"]
    for key, g in result["gain"].items():
        lines.append(f"  {key}: {result['baseline_figures'][key]:.4f} -> {result['candidate_figures'][key]:.4f} "
                     f"(gain {g['gain']:+.4f}, 95% interval {g['ci95'][0]:+.4f} to {g['ci95'][1]:+.4f})")
    verdict = "candidate WINS by the rule" if result["wins"] else "candidate does not win: " + "; ".join(result["why_not"])
    return "\n".join(lines + [verdict])


def write(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=float))
