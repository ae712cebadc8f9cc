"""Classification metrics in plain numpy, shared by ``train``, ``convert`` and ``cxr-edge evaluate``.

The edge device has no scikit-learn, so the numbers a clinic sees come from here; the tests
check every one against scikit-learn on the same predictions. Conventions:

* ``y_true`` is 0/1 (1 = positive, i.e. not the model's negative label), ``score`` is the
  positive probability, and an image is flagged when ``score >= threshold``
  (the bundle's decision rule);
* a ratio whose denominator is zero (sensitivity without positives, AUC with one class...)
  is ``nan``: undefined, never silently 0 or 1.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

NAN = float("nan")
#: The metrics that :func:`bootstrap_ci` gives intervals for, in display order.
CI_METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "balanced_accuracy", "auc")
#: Metrics that are a count out of a count, as (successes, trials) from the confusion counts:
#: :func:`bootstrap_ci` never reports them narrower than the exact binomial interval.
PROPORTIONS: dict[str, Callable[[dict], tuple[int, int]]] = {
    "accuracy": lambda m: (m["tp"] + m["tn"], m["n"]),
    "sensitivity": lambda m: (m["tp"], m["tp"] + m["fn"]),
    "specificity": lambda m: (m["tn"], m["tn"] + m["fp"]),
    "precision": lambda m: (m["tp"], m["tp"] + m["fp"]),
}
#: What :func:`at_prevalence` carries to another class mix, in display order.
PREVALENCE_METRICS = ("accuracy", "ppv", "npv")


def _binary_inputs(y_true: Sequence, score: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert: y_true to bool, score to finite float64, same non-zero length."""
    y = np.asarray(y_true)
    s = np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or len(y) != len(s):
        raise ValueError(f"y_true and score must be 1-D of the same length, got {y.shape} and {s.shape}")
    if len(y) == 0:
        raise ValueError("no samples")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    if not np.isfinite(s).all():
        raise ValueError("score holds NaN or infinite values")
    return y.astype(bool), s


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else NAN


def _cumulative_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives flagged at each distinct score, highest score first.

    ``tps[i], fps[i]`` are the counts for threshold ``thresholds[i]``; tied scores are one
    threshold, which is what makes ties count half in the AUC (as in scikit-learn).
    """
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    return tps, fps, s[last_of_tie]


def roc_curve(y_true: Sequence, score: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), one point per distinct score plus the (0, 0) start at ``inf``.

    Same points as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``; fpr or tpr
    is all ``nan`` when that class is absent.
    """
    y, s = _binary_inputs(y_true, score)
    tps, fps, thresholds = _cumulative_counts(y, s)
    tps, fps = np.r_[0, tps], np.r_[0, fps]
    n_pos, n_neg = tps[-1], fps[-1]
    fpr = fps / n_neg if n_neg else np.full(len(fps), np.nan)
    tpr = tps / n_pos if n_pos else np.full(len(tps), np.nan)
    return fpr, tpr, np.r_[np.inf, thresholds]


def roc_auc(y_true: Sequence, score: Sequence) -> float:
    """Area under the ROC curve (ties count half); ``nan`` when only one class is present."""
    fpr, tpr, _ = roc_curve(y_true, score)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return NAN
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision(y_true: Sequence, score: Sequence) -> float:
    """Area under the precision-recall curve as a step sum (scikit-learn's definition)."""
    y, s = _binary_inputs(y_true, score)
    tps, fps, _ = _cumulative_counts(y, s)
    if tps[-1] == 0:
        return NAN
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def binary_metrics(y_true: Sequence, score: Sequence, threshold: float) -> dict[str, float]:
    """Every operating-point metric at ``threshold`` plus the threshold-free AUC and AP."""
    y, s = _binary_inputs(y_true, score)
    flagged = s >= threshold
    tp = int(np.sum(flagged & y))
    fp = int(np.sum(flagged & ~y))
    fn = int(np.sum(~flagged & y))
    tn = int(np.sum(~flagged & ~y))
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {
        "n": len(y),
        "threshold": float(threshold),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "accuracy": _ratio(tp + tn, len(y)),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "balanced_accuracy": (sensitivity + specificity) / 2.0,
        "auc": roc_auc(y, s),
        "average_precision": average_precision(y, s),
    }


def confusion_matrix(y_true: Sequence, y_pred: Sequence, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): row = true class index, column = predicted class index."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of the same length, got {t.shape} and {p.shape}")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise ValueError(f"class indices must lie in 0..{n_classes - 1}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def multiclass_metrics(y_true: Sequence, y_pred: Sequence, labels: Sequence[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, their macro averages and the confusion.

    Takes predicted class indices rather than probabilities, because the prediction is the
    bundle's decision rule (threshold first), not a plain argmax.
    """
    cm = confusion_matrix(y_true, y_pred, len(labels))
    n = int(cm.sum())
    if n == 0:
        raise ValueError("no samples")
    per_class = {}
    for i, label in enumerate(labels):
        tp, predicted, support = cm[i, i], cm[:, i].sum(), cm[i, :].sum()
        per_class[label] = {
            "precision": _ratio(tp, predicted),
            "recall": _ratio(tp, support),
            "f1": _ratio(2 * tp, predicted + support),
            "support": int(support),
        }
    present = [label for label in labels if per_class[label]["support"]]
    return {
        "n": n,
        "accuracy": _ratio(np.trace(cm), n),
        "per_class": per_class,
        **{f"macro_{k}": _nanmean([per_class[c][k] for c in present]) for k in ("precision", "recall", "f1")},
        "confusion": cm.tolist(),
    }


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else NAN


def bootstrap(
    statistic: Callable[[np.ndarray], dict[str, float]],
    n: int,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    groups: Sequence | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of ``statistic(indices)`` over ``n_boot`` resamples of ``n`` items.

    With ``groups`` (one key per item, e.g. the patient), whole groups are resampled, so
    several images of one patient do not pass for independent evidence. A resample where a
    metric is undefined (``nan``, e.g. AUC with one class drawn) is left out of that
    metric's interval only.
    """
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie strictly between 0 and 1")
    rng = np.random.default_rng(seed)
    if groups is None:
        draws = [statistic(rng.integers(0, n, n)) for _ in range(n_boot)]
    else:
        members = _group_members(n, groups)
        picks = (rng.integers(0, len(members), len(members)) for _ in range(n_boot))
        draws = [statistic(np.concatenate([members[g] for g in pick])) for pick in picks]
    tail = (1.0 - level) / 2.0 * 100.0
    intervals = {}
    for key in draws[0] if draws else ():
        values = np.array([d[key] for d in draws], dtype=np.float64)
        values = values[~np.isnan(values)]
        lo, hi = np.percentile(values, [tail, 100.0 - tail]) if len(values) else (NAN, NAN)
        intervals[key] = (float(lo), float(hi))
    return intervals


def _group_members(n: int, groups: Sequence) -> list[np.ndarray]:
    """Item indices of each group, groups in order of first appearance."""
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} keys for {n} items")
    members: dict = {}
    for i, key in enumerate(groups):
        members.setdefault(key, []).append(i)
    return [np.asarray(v) for v in members.values()]


def bootstrap_ci(
    y_true: Sequence,
    score: Sequence,
    threshold: float,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    metrics: Sequence[str] | None = None,
    groups: Sequence | None = None,
    prevalence: float | None = None,
) -> dict[str, tuple[float, float]]:
    """Bootstrap ``level`` intervals for ``metrics`` of :func:`binary_metrics` (default
    :data:`CI_METRICS`), resampling images, or whole ``groups`` (e.g. patients) when given.

    With ``prevalence``, of :func:`at_prevalence` instead (default :data:`PREVALENCE_METRICS`):
    the uncertainty of the sensitivity and specificity measured here, carried to that mix.

    Each interval is widened to contain the exact one of :func:`_exact_intervals` where
    there is one: a percentile bootstrap of 20 positives all found is "1.000-1.000", which
    reads as certainty, while 20 of 20 is compatible with a sensitivity of 0.83.
    """
    y, s = _binary_inputs(y_true, score)
    names = metrics or (CI_METRICS if prevalence is None else PREVALENCE_METRICS)

    def statistic(idx: np.ndarray) -> dict[str, float]:
        values = binary_metrics(y[idx], s[idx], threshold)
        if prevalence is not None:
            values = at_prevalence(values["sensitivity"], values["specificity"], prevalence)
        return {m: values[m] for m in names}

    intervals = bootstrap(statistic, len(y), n_boot=n_boot, seed=seed, level=level, groups=groups)
    exact = _exact_intervals(binary_metrics(y, s, threshold), prevalence, level)
    for name in set(names) & set(exact):
        (lo, hi), (exact_lo, exact_hi) = intervals[name], exact[name]
        intervals[name] = (float(np.fmin(lo, exact_lo)), float(np.fmax(hi, exact_hi)))
    return intervals


def _exact_intervals(counts: dict, prevalence: float | None, level: float) -> dict[str, tuple[float, float]]:
    """Clopper-Pearson intervals of the :data:`PROPORTIONS`; with ``prevalence``, the bounds of
    sensitivity and specificity carried to that mix (accuracy, PPV and NPV rise with both)."""
    exact = {name: clopper_pearson(*count(counts), level=level) for name, count in PROPORTIONS.items()}
    if prevalence is None:
        return exact
    (sens_lo, sens_hi), (spec_lo, spec_hi) = exact["sensitivity"], exact["specificity"]
    low, high = at_prevalence(sens_lo, spec_lo, prevalence), at_prevalence(sens_hi, spec_hi, prevalence)
    return {name: (low[name], high[name]) for name in PREVALENCE_METRICS}


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """The exact binomial interval of ``successes / trials`` (``nan`` without trials).

    Each bound is where the binomial tail beyond the observed count is ``(1 - level) / 2``;
    it never collapses to a point, which a bootstrap does when the sample has no errors.
    """
    if trials == 0:
        return NAN, NAN
    tail = (1.0 - level) / 2.0
    lower = 0.0 if successes == 0 else _binomial_root(successes - 1, trials, 1.0 - tail)
    upper = 1.0 if successes == trials else _binomial_root(successes, trials, tail)
    return lower, upper


def _binomial_root(k: int, n: int, target: float) -> float:
    """The ``p`` where P(X <= k) = ``target`` for X ~ Binomial(n, p), by bisection (it falls with p)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if _binomial_cdf(k, n, mid) > target else (lo, mid)
    return (lo + hi) / 2.0


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), 0 < p < 1, summed in log space (no overflow for large n)."""
    i = np.arange(1, k + 1)
    log_choose = np.r_[0.0, np.cumsum(np.log(n - i + 1) - np.log(i))]
    j = np.arange(k + 1)
    return float(np.sum(np.exp(log_choose + j * math.log(p) + (n - j) * math.log1p(-p))))


def at_prevalence(sensitivity: float, specificity: float, prevalence: float) -> dict[str, float]:
    """Accuracy, PPV (precision) and NPV where a fraction ``prevalence`` of the films are positive.

    Sensitivity and specificity describe the model at its threshold; accuracy, PPV and NPV
    also depend on the class mix, so measured on a labelled set they hold for that set's mix
    only. Bayes' rule carries them to another mix (a clinic's, a test split's), assuming
    sensitivity and specificity carry over unchanged, which new equipment need not honour.
    """
    if not 0.0 <= prevalence <= 1.0:
        raise ValueError("prevalence must lie in [0, 1]")
    tp, fn = sensitivity * prevalence, (1.0 - sensitivity) * prevalence
    tn, fp = specificity * (1.0 - prevalence), (1.0 - specificity) * (1.0 - prevalence)
    accuracy, ppv, npv = tp + tn, _ratio(tp, tp + fp), _ratio(tn, tn + fn)
    return {"prevalence": prevalence, "accuracy": accuracy, "ppv": ppv, "npv": npv}


def threshold_for_sensitivity(y_true: Sequence, score: Sequence, target: float = 0.95) -> float:
    """The threshold with the highest specificity among those reaching sensitivity >= ``target``.

    It is one of the observed scores (the highest one that still flags enough positives).
    """
    if not 0.0 < target <= 1.0:
        raise ValueError("target sensitivity must lie in (0, 1]")
    y, s = _binary_inputs(y_true, score)
    tps, _, thresholds = _cumulative_counts(y, s)
    if tps[-1] == 0:
        raise ValueError("no positive samples: sensitivity is undefined")
    return float(thresholds[np.argmax(tps >= target * tps[-1] - 1e-9)])


def threshold_interval(
    y_true: Sequence, score: Sequence, target: float, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
    groups: Sequence | None = None,
) -> tuple[float, float]:
    """Bootstrap ``level`` interval of :func:`threshold_for_sensitivity`: how far the threshold
    tuned on this sample would move on another like it (resamples without positives left out)."""
    y, s = _binary_inputs(y_true, score)

    def statistic(idx: np.ndarray) -> dict[str, float]:
        return {"threshold": threshold_for_sensitivity(y[idx], s[idx], target) if y[idx].any() else NAN}

    return bootstrap(statistic, len(y), n_boot=n_boot, seed=seed, level=level, groups=groups)["threshold"]


def brier_score(y_true: Sequence, prob: Sequence) -> float:
    """Mean squared difference between the probability and the 0/1 outcome."""
    y, p = _binary_inputs(y_true, prob)
    return float(np.mean((p - y) ** 2))


def expected_calibration_error(y_true: Sequence, prob: Sequence, n_bins: int = 10) -> float:
    """Weighted mean |observed rate - mean probability| over ``n_bins`` equal-width bins.

    Bins follow ``sklearn.calibration.calibration_curve(strategy="uniform")``: a probability
    on an inner edge belongs to the lower bin.
    """
    y, p = _binary_inputs(y_true, prob)
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError("probabilities must lie in [0, 1]")
    bins = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], p)
    total = np.bincount(bins, minlength=n_bins)
    observed = np.bincount(bins, weights=y, minlength=n_bins)
    gap = np.abs(observed - np.bincount(bins, weights=p, minlength=n_bins))
    return float(gap.sum() / total.sum())


def finite_or_none(value: Any) -> Any:
    """NaN/inf -> None recursively, so a metrics file is strict JSON (``null`` = undefined)."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
