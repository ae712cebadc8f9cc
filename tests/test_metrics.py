"""cxr_edge.review.metrics agrees with scikit-learn on random data and on the edge cases that bite."""

from __future__ import annotations

import math

import numpy as np
import pytest

sk = pytest.importorskip("sklearn.metrics")
from sklearn.calibration import calibration_curve  # noqa: E402

from cxr_edge.review import metrics  # noqa: E402


def random_case(seed: int, n: int = 300, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.0, 1.0)
    if ties:  # uint8-quantized outputs, as int8 models give
        score = np.round(score * 255) / 255
    return y, score


CASES = [random_case(seed) for seed in range(4)] + [random_case(seed, ties=True) for seed in range(4, 8)] + [
    (np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])),  # perfect separation
    (np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1])),  # perfectly wrong
    (np.array([0, 1, 0, 1, 1]), np.array([0.5, 0.5, 0.5, 0.5, 0.5])),  # all tied
    (np.array([1, 0, 1, 0]), np.array([0.3, 0.3, 0.7, 0.1])),  # a tie across classes
]


@pytest.mark.parametrize("y, score", CASES)
def test_auc_roc_and_ap_match_sklearn(y, score):
    assert metrics.roc_auc(y, score) == pytest.approx(sk.roc_auc_score(y, score), abs=1e-12)
    expected_ap = sk.average_precision_score(y, score)
    assert metrics.average_precision(y, score) == pytest.approx(expected_ap, abs=1e-12)
    fpr, tpr, thr = metrics.roc_curve(y, score)
    sk_fpr, sk_tpr, sk_thr = sk.roc_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    assert thr[0] == np.inf


@pytest.mark.parametrize("y, score", CASES)
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.8, 1.01])
def test_binary_metrics_match_sklearn(y, score, threshold):
    got = metrics.binary_metrics(y, score, threshold)
    pred = (score >= threshold).astype(int)
    tn, fp, fn, tp = sk.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert (got["tp"], got["fp"], got["tn"], got["fn"], got["n"]) == (tp, fp, tn, fn, len(y))
    nan = np.nan
    expected = {
        "accuracy": sk.accuracy_score(y, pred),
        "sensitivity": sk.recall_score(y, pred, zero_division=nan),
        "specificity": sk.recall_score(y, pred, pos_label=0, zero_division=nan),
        "precision": sk.precision_score(y, pred, zero_division=nan),
        "npv": sk.precision_score(y, pred, pos_label=0, zero_division=nan),
        "f1": sk.f1_score(y, pred, zero_division=nan),
        "balanced_accuracy": sk.balanced_accuracy_score(y, pred),
        "auc": sk.roc_auc_score(y, score),
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12, nan_ok=True), name


def test_one_class_gives_nan_not_a_guess():
    y, score = np.ones(5, dtype=int), np.linspace(0.1, 0.9, 5)
    got = metrics.binary_metrics(y, score, 0.5)
    assert got["sensitivity"] == pytest.approx(3 / 5)
    for name in ("specificity", "auc", "balanced_accuracy"):
        assert math.isnan(got[name]), name
    assert math.isnan(metrics.roc_auc(np.zeros(4, dtype=int), np.arange(4.0)))


@pytest.mark.parametrize(
    "y, score, message",
    [
        ([0, 1], [0.5], "same length"),
        ([], [], "no samples"),
        ([0, 2], [0.1, 0.2], "only 0 and 1"),
        ([0, 1], [0.1, float("nan")], "NaN"),
    ],
)
def test_bad_inputs_are_refused_with_a_reason(y, score, message):
    with pytest.raises(ValueError, match=message):
        metrics.binary_metrics(y, score, 0.5)


def test_multiclass_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    labels = ["NORMAL", "BACTERIAL", "VIRAL"]
    y = rng.integers(0, 3, 200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 3, 200))
    got = metrics.multiclass_metrics(y, pred, labels)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert got["confusion"] == sk.confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()
    p, r, f, s = sk.precision_recall_fscore_support(y, pred, labels=[0, 1, 2])
    for i, label in enumerate(labels):
        expected = {"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]}
        assert got["per_class"][label] == pytest.approx(expected)
    macro = sk.precision_recall_fscore_support(y, pred, average="macro")
    for name, value in zip(("precision", "recall", "f1"), macro):
        assert got[f"macro_{name}"] == pytest.approx(value)


def test_multiclass_macro_averages_skip_absent_classes():
    got = metrics.multiclass_metrics([0, 0, 1], [0, 1, 1], ["A", "B", "C"])
    assert got["per_class"]["C"]["support"] == 0
    assert got["macro_recall"] == pytest.approx((0.5 + 1.0) / 2)


def test_confusion_matrix_refuses_out_of_range_classes():
    with pytest.raises(ValueError, match="0..1"):
        metrics.confusion_matrix([0, 2], [0, 1], 2)


def test_bootstrap_ci_brackets_the_point_estimate_and_is_reproducible():
    y, score = random_case(11, n=400)
    point = metrics.binary_metrics(y, score, 0.5)
    ci = metrics.bootstrap_ci(y, score, 0.5, n_boot=300, seed=1)
    assert set(ci) == set(metrics.CI_METRICS)
    for name, (lo, hi) in ci.items():
        assert lo <= point[name] <= hi, name
        assert hi - lo < 0.2, name
    assert ci == metrics.bootstrap_ci(y, score, 0.5, n_boot=300, seed=1)
    assert ci != metrics.bootstrap_ci(y, score, 0.5, n_boot=300, seed=2)


def test_bootstrap_narrows_with_more_data_and_lower_level():
    small, large = random_case(5, n=60), random_case(5, n=2000)
    width = lambda ci: ci["auc"][1] - ci["auc"][0]  # noqa: E731
    small_ci = metrics.bootstrap_ci(*small, 0.5, n_boot=200)
    assert width(metrics.bootstrap_ci(*large, 0.5, n_boot=200)) < width(small_ci)
    assert width(metrics.bootstrap_ci(*small, 0.5, n_boot=200, level=0.5)) < width(
        metrics.bootstrap_ci(*small, 0.5, n_boot=200)
    )


def test_bootstrap_by_group_resamples_whole_groups():
    y, score = random_case(8, n=120)
    singletons = metrics.bootstrap_ci(y, score, 0.5, n_boot=100, groups=list(range(120)))
    assert singletons == metrics.bootstrap_ci(y, score, 0.5, n_boot=100)
    # each "patient" imaged 4 times: 30 independent cases, not 120, so wider intervals
    y4, score4 = np.repeat(y[:30], 4), np.repeat(score[:30], 4)
    patients = np.repeat(np.arange(30), 4)
    width = lambda ci: ci["auc"][1] - ci["auc"][0]  # noqa: E731
    grouped = metrics.bootstrap_ci(y4, score4, 0.5, n_boot=300, groups=patients)
    assert width(grouped) > 1.5 * width(metrics.bootstrap_ci(y4, score4, 0.5, n_boot=300))
    with pytest.raises(ValueError, match="groups has 3 keys for 120 items"):
        metrics.bootstrap_ci(y, score, 0.5, groups=[1, 2, 3])


def test_twenty_of_twenty_is_not_reported_as_certainty():
    y, score = np.r_[np.ones(20), np.zeros(20)], np.r_[np.full(20, 0.9), np.full(20, 0.1)]
    ci = metrics.bootstrap_ci(y, score, 0.5, n_boot=200)
    assert ci["sensitivity"][0] == pytest.approx(0.025 ** (1 / 20))  # 0.832: Clopper-Pearson
    assert ci["sensitivity"][1] == 1.0 and ci["accuracy"][0] == pytest.approx(0.025 ** (1 / 40))


def test_at_a_prevalence_the_exact_bounds_of_sensitivity_and_specificity_carry_over():
    y, score = np.r_[np.ones(20), np.zeros(20)], np.r_[np.full(20, 0.9), np.full(20, 0.1)]
    ci = metrics.bootstrap_ci(y, score, 0.5, n_boot=200, prevalence=0.1)
    worst = metrics.at_prevalence(0.025 ** (1 / 20), 0.025 ** (1 / 20), 0.1)
    assert ci["ppv"] == pytest.approx((worst["ppv"], 1.0)) and ci["npv"][0] == pytest.approx(worst["npv"])


@pytest.mark.parametrize(
    "k, n, lower, upper",  # scipy.stats.beta.ppf(0.025, k, n - k + 1), beta.ppf(0.975, k + 1, n - k)
    [
        (20, 20, 0.831567, 1.0),
        (0, 20, 0.0, 0.168433),
        (16, 20, 0.563386, 0.942666),
        (800, 1000, 0.773841, 0.824379),
    ],
)
def test_clopper_pearson_matches_the_beta_quantiles(k, n, lower, upper):
    assert metrics.clopper_pearson(k, n) == pytest.approx((lower, upper), abs=1e-6)


def test_ordinary_intervals_keep_the_bootstrap_and_only_widen_to_the_exact_one():
    y, score = random_case(11, n=400)
    def statistic(idx):
        return {m: metrics.binary_metrics(y[idx], score[idx], 0.5)[m] for m in metrics.CI_METRICS}

    plain = metrics.bootstrap(statistic, len(y), n_boot=300, seed=1)
    ci = metrics.bootstrap_ci(y, score, 0.5, n_boot=300, seed=1)
    for name in ("f1", "balanced_accuracy", "auc"):  # no binomial count: the bootstrap alone
        assert ci[name] == plain[name]
    point = metrics.binary_metrics(y, score, 0.5)
    for name in ("accuracy", "sensitivity", "specificity", "precision"):
        exact = metrics.clopper_pearson(*metrics.PROPORTIONS[name](point))
        assert ci[name] == (min(plain[name][0], exact[0]), max(plain[name][1], exact[1]))
        assert abs(ci[name][0] - plain[name][0]) < 0.015 and abs(ci[name][1] - plain[name][1]) < 0.015


def test_bootstrap_skips_one_class_resamples_for_auc():
    y, score = np.array([1, 1, 1, 1, 1, 1, 1, 0]), np.linspace(0.2, 0.9, 8)[::-1]
    ci = metrics.bootstrap_ci(y, score, 0.5, n_boot=200)
    assert ci["auc"] == (1.0, 1.0)  # drawn with the negative: perfect; without: skipped, not nan


@pytest.mark.parametrize("y, score", CASES[:8])
@pytest.mark.parametrize("negatives_copied", [1, 3])
def test_at_prevalence_gives_what_a_set_with_that_class_mix_measures(y, score, negatives_copied):
    """Sensitivity and specificity from one set, carried to a mix with each negative counted
    ``negatives_copied`` times, give that mix's measured accuracy, PPV and NPV."""
    here = metrics.binary_metrics(y, score, 0.5)
    neg = y == 0
    mixed_y = np.r_[y, np.repeat(y[neg], negatives_copied - 1)]
    mixed = metrics.binary_metrics(mixed_y, np.r_[score, np.repeat(score[neg], negatives_copied - 1)], 0.5)
    carried = metrics.at_prevalence(here["sensitivity"], here["specificity"], mixed_y.mean())
    assert carried["accuracy"] == pytest.approx(mixed["accuracy"])
    assert carried["ppv"] == pytest.approx(mixed["precision"])
    assert carried["npv"] == pytest.approx(mixed["npv"])


def test_at_prevalence_at_the_extremes_and_out_of_range():
    assert metrics.at_prevalence(0.9, 0.8, 1.0) == {"prevalence": 1.0, "accuracy": 0.9, "ppv": 1.0, "npv": 0.0}
    assert math.isnan(metrics.at_prevalence(0.0, 1.0, 0.3)["ppv"])  # nothing flagged: PPV undefined
    with pytest.raises(ValueError, match="prevalence must lie in"):
        metrics.at_prevalence(0.9, 0.8, 1.5)


def test_bootstrap_at_a_prevalence_brackets_the_carried_values_and_follows_the_mix():
    y, score = random_case(3, n=400)
    point = metrics.binary_metrics(y, score, 0.5)
    rare, common = (metrics.bootstrap_ci(y, score, 0.5, n_boot=300, prevalence=p) for p in (0.05, 0.6))
    for p, ci in ((0.05, rare), (0.6, common)):
        carried = metrics.at_prevalence(point["sensitivity"], point["specificity"], p)
        for name in metrics.PREVALENCE_METRICS:
            assert ci[name][0] <= carried[name] <= ci[name][1], (p, name)
    assert rare["ppv"][1] < common["ppv"][0] and rare["npv"][0] > common["npv"][1]


@pytest.mark.parametrize("y, score", CASES[:8])
@pytest.mark.parametrize("target", [0.5, 0.9, 0.95, 1.0])
def test_threshold_for_sensitivity_is_the_best_specificity_reaching_target(y, score, target):
    t = metrics.threshold_for_sensitivity(y, score, target)
    chosen = metrics.binary_metrics(y, score, t)
    assert chosen["sensitivity"] >= target
    # brute force over every observed score: none reaches the target with more specificity
    best = max(
        metrics.binary_metrics(y, score, c)["specificity"]
        for c in np.unique(score)
        if metrics.binary_metrics(y, score, c)["sensitivity"] >= target
    )
    assert chosen["specificity"] == best


def test_threshold_choice_needs_the_class_it_measures():
    with pytest.raises(ValueError, match="no positive"):
        metrics.threshold_for_sensitivity([0, 0], [0.1, 0.2])


@pytest.mark.parametrize("y, score", CASES)
def test_calibration_matches_sklearn(y, score):
    assert metrics.brier_score(y, score) == pytest.approx(sk.brier_score_loss(y, score))
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], score), minlength=10)
    prob_true, prob_pred = calibration_curve(y, score, n_bins=10)
    expected = np.sum(counts[counts > 0] * np.abs(prob_true - prob_pred)) / len(y)
    assert metrics.expected_calibration_error(y, score) == pytest.approx(expected)


def test_perfectly_calibrated_and_confidently_wrong():
    y = np.array([0, 0, 1, 1])
    assert metrics.expected_calibration_error(y, y.astype(float)) == 0.0
    assert metrics.expected_calibration_error(y, 1.0 - y) == 1.0
    assert metrics.brier_score(y, 1.0 - y) == 1.0
