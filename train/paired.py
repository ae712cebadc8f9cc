"""Is bundle B better than bundle A? A paired, patient-grouped bootstrap on one validation split.

Single runs differ by a few points on every measure (a second seed alone moved worst-case
specificity by 4-7 points), so a gain is claimed only when the interval of B's advantage
over A, resampling whole patients and scoring both on the same films, lies above zero.
Both bundles are read as devices run them: the edge's interpreter, their own thresholds
and decision rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from cxr_edge import decision
from cxr_edge.review import metrics
from cxr_edge.bundle import Bundle, load_bundle
from train.distill import bundle_probabilities
from train.leakage import check_bundle
from train.robustness import clean_inputs, validation_images
from train.rundir import load_run, split_records


def correct_per_image(bundle: Bundle, probs: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """1.0 where the bundle is right, per image and measure; nan where a measure does not count the image.

    ``accuracy``: the bundle's label (its threshold and rule) against the truth. With more
    than one positive label also ``positive_label``: among truly positive films, whether the
    more likely positive label is the true one (bacterial vs viral), flagged or not.
    """
    rule = bundle.rule
    out = {"accuracy": (np.asarray(decision.decide_labels(rule, probs)) == truth).astype(float)}
    if len(rule.positive_labels) > 1:
        columns = [rule.labels.index(label) for label in rule.positive_labels]
        likely = np.asarray(rule.positive_labels)[np.argmax(probs[:, columns], axis=1)]
        out["positive_label"] = np.where(truth != bundle.negative_label, (likely == truth).astype(float), np.nan)
    return out


def counted_mean(values: np.ndarray) -> float:
    """Mean of the counted (not nan) values; nan when a resample drew none."""
    counted = values[~np.isnan(values)]
    return float(counted.mean()) if len(counted) else float("nan")


def paired_gain(a: np.ndarray, b: np.ndarray, groups: Sequence, n_boot: int = 1000, seed: int = 0) -> dict:
    """Means of per-image scores ``a`` and ``b`` (nan: not counted) and the 95% interval of b - a by group."""
    def statistic(idx: np.ndarray) -> dict[str, float]:
        return {"gain": counted_mean(b[idx]) - counted_mean(a[idx])}

    low, high = metrics.bootstrap(statistic, len(a), n_boot=n_boot, seed=seed, groups=groups)["gain"]
    mean_a, mean_b = counted_mean(a), counted_mean(b)
    return {"a": mean_a, "b": mean_b, "gain": mean_b - mean_a, "ci95": [low, high], "better": low > 0}


def compare_bundles(run_dir: Path, spec_a: str, spec_b: str, log=print) -> dict:
    """Score bundles A and B on ``run_dir``'s validation split; write ``RUN/paired-<A>-vs-<B>.json``."""
    cfg, _record = load_run(run_dir)
    bundles = [load_bundle(spec_a), load_bundle(spec_b)]
    records = split_records(run_dir)["val"]
    for bundle in bundles:
        check_bundle(bundle, cfg, {r.patient for r in records})
    raw, _ = validation_images(run_dir)
    pixels = clean_inputs(raw, cfg.contract)
    truth = np.asarray([cfg.labels[r.target(cfg.task)] for r in records])
    patients = [r.patient for r in records]
    scores = [correct_per_image(b, bundle_probabilities(b, pixels), truth) for b in bundles]
    result = {"run": run_dir.name, "a": bundles[0].short_id, "b": bundles[1].short_id, "images": len(truth),
              "patients": len(set(patients)),
              "measures": {name: paired_gain(scores[0][name], scores[1][name], patients) for name in scores[0]}}
    tag = "-vs-".join(b.short_id.replace("@", "-") for b in bundles)
    (run_dir / f"paired-{tag}.json").write_text(json.dumps(result, indent=1) + "\n")
    log(f"{result['b']} against {result['a']} on {len(truth)} validation images of {result['patients']} patients:")
    for name, m in result["measures"].items():
        log(f"  {name:15s} {m['a']:.4f} -> {m['b']:.4f}  gain {m['gain']:+.4f} "
            f"(95% CI {m['ci95'][0]:+.4f} to {m['ci95'][1]:+.4f}){'  better' if m['better'] else ''}")
    return result
