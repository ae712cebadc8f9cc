"""The decision's one home: per-view outputs -> probabilities, rank score and label, by one rule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cxr_edge import decision
from cxr_edge.decision import HEAD, OUTPUT, Rule, decide

BINARY = Rule(labels=("NORMAL", "PNEUMONIA"), negative_label="NORMAL", threshold=0.5, task="binary")
SUBTYPE = Rule(labels=("NORMAL", "BACTERIAL", "VIRAL"), negative_label="NORMAL", threshold=0.5, task="multiclass")


def column(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)[:, None]


def test_one_sigmoid_column_becomes_the_negative_and_positive_columns():
    probs = decision.label_probabilities(column(0.25, 1.5), "binary")
    np.testing.assert_array_equal(probs, [[0.75, 0.25], [0.0, 1.0]])  # clipped into 0..1
    softmax = np.array([[0.2, 0.5, 0.3]])
    np.testing.assert_array_equal(decision.label_probabilities(softmax, "multiclass"), softmax)


def test_the_label_probabilities_keep_the_outputs_float_type():
    """train/predict.py's float64 columns stay float64; the edge's float32 stay float32."""
    assert decision.label_probabilities(np.array([[0.3]]), "binary").dtype == np.float64
    assert decision.label_probabilities(column(0.3), "binary").dtype == np.float32


def test_a_binary_film_is_flagged_at_the_threshold_and_not_below():
    decided = decide(BINARY, [column(0.5, 0.49, 0.9)])
    assert decided.labels == ("PNEUMONIA", "NORMAL", "PNEUMONIA")
    np.testing.assert_allclose(decided.probability, [0.5, 0.49, 0.9], rtol=1e-6)
    assert decided.probability.dtype == np.float64 and decided.score is None


def test_a_flagged_subtype_film_gets_its_most_likely_positive_label():
    outputs = np.array([[0.4, 0.2, 0.4], [0.3, 0.5, 0.2], [0.6, 0.1, 0.3]], dtype=np.float32)
    decided = decide(SUBTYPE, [outputs])
    assert decided.labels == ("VIRAL", "BACTERIAL", "NORMAL")
    np.testing.assert_allclose(decided.probability, [0.6, 0.7, 0.4], rtol=1e-6)


def test_the_threshold_is_compared_in_float64_so_a_score_just_below_it_is_not_flagged():
    score = np.float32(0.66015625) - np.float32(2**-24)  # the float32 just below the shipped threshold's neighbour
    threshold = float(score) + 1e-12  # rounds to `score` in float32
    assert np.float32(threshold) <= score  # a float32 comparison would flag it
    decided = decide(BINARY.with_threshold(threshold), [column(float(score))])
    assert decided.labels == ("NORMAL",) and decided.probability[0] < threshold


def test_views_average_every_label_or_only_the_negative_one():
    film = np.array([[0.2, 0.6, 0.2]], dtype=np.float32)
    soft = np.array([[0.6, 0.1, 0.3]], dtype=np.float32)
    every = decide(SUBTYPE, [film, soft])
    np.testing.assert_allclose(every.label_probs, [[0.4, 0.35, 0.25]], rtol=1e-6)
    negative = decide(dataclasses.replace(SUBTYPE, view_average="negative"), [film, soft])
    np.testing.assert_allclose(negative.label_probs, [[0.4, 0.45, 0.15]], rtol=1e-6)  # the film's 3:1 split
    assert every.labels == negative.labels == ("BACTERIAL",)
    np.testing.assert_allclose(negative.probability, every.probability, rtol=1e-6)


def test_the_head_gives_the_rank_score_averaged_over_views_while_the_output_decides():
    outputs = [column(0.99609375, 0.99609375), column(0.99609375, 0.99609375)]  # tied by 8-bit rounding
    head = [column(0.991, 0.997), column(0.993, 0.999)]
    decided = decide(BINARY, outputs, head)
    np.testing.assert_allclose(decided.score, [0.992, 0.998], rtol=1e-6)
    np.testing.assert_allclose(decided.probability, [0.99609375, 0.99609375], rtol=1e-6)


def test_a_rule_decided_by_the_head_takes_its_probabilities_from_the_head():
    rule = dataclasses.replace(BINARY, threshold=0.6, decided_by=HEAD)
    decided = decide(rule, [column(0.99609375, 0.0)], [column(0.55, 0.7)])
    assert decided.labels == ("NORMAL", "PNEUMONIA")  # the output alone would say the opposite
    np.testing.assert_allclose(decided.probability, [0.55, 0.7], rtol=1e-6)
    np.testing.assert_allclose(decided.score, decided.probability, rtol=1e-6)


def test_a_rule_decided_by_the_head_refuses_to_decide_without_head_outputs():
    with pytest.raises(ValueError, match="decided by the head"):
        decide(dataclasses.replace(BINARY, decided_by=HEAD), [column(0.5)])
    assert BINARY.decided_by == OUTPUT


def test_the_rule_names_its_positive_score():
    assert (BINARY.positive_name, BINARY.score_name, BINARY.negative_index) == ("PNEUMONIA", "P(PNEUMONIA)", 0)
    assert SUBTYPE.positive_labels == ("BACTERIAL", "VIRAL") and SUBTYPE.score_name == "P(not NORMAL)"
    assert BINARY.with_threshold(0.25).threshold == 0.25 and BINARY.threshold == 0.5


def test_the_positive_score_is_one_minus_the_negative_label_s_probability():
    probs = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]])
    np.testing.assert_allclose(decision.positive_probability(probs, 0), [0.9, 0.2])
    np.testing.assert_allclose(decision.positive_probability(probs, 1), [0.3, 0.9])


def test_one_test_of_binary_or_multiclass():
    assert decision.output_width(("NORMAL", "PNEUMONIA")) == 1
    assert decision.output_width(("NORMAL", "BACTERIAL", "VIRAL")) == 3
    assert [decision.task_of(n) for n in (1, 3)] == ["binary", "multiclass"]
