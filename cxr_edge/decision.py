"""The decision's one home: a film's per-view outputs -> its probabilities, rank score and label.

Training (``train/predict.py``, ``train/report.py``), conversion (parity, the gate) and the edge
(:mod:`cxr_edge.engine`) all decide through this module, so the positive score, the sigmoid's
second column, the view average and the float64 threshold comparison cannot drift apart. Numbers
only (numpy): it runs on a Pi.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

OUTPUT, HEAD = "output", "head"  # what decides a film: the model's screening output, or a head on the features
DECIDERS = (OUTPUT, HEAD)
#: What a bundle's test-time views average (manifest ``test_time_average``): every label's probability, or only
#: the negative label's, the positive labels sharing the rest as the film itself splits it (:func:`average_views`).
VIEW_AVERAGES = ("all", "negative")
BINARY, MULTICLASS = "binary", "multiclass"  # one sigmoid column, or one softmax column per label
TASKS = (BINARY, MULTICLASS)


def output_width(labels: Sequence[str]) -> int:
    """How many output columns a model with ``labels`` has: two labels are one sigmoid column."""
    return 1 if len(labels) == 2 else len(labels)


def task_of(n_outputs: int) -> str:
    """The task of a model with ``n_outputs`` columns: the one test of binary or multiclass."""
    return BINARY if n_outputs == 1 else MULTICLASS


@dataclasses.dataclass(frozen=True)
class Cascade:
    """Where a film's other test-time views can change its decision (manifest ``test_time_cascade``).

    Averaging the views moved no validation film's probability up by more than ``below`` nor down by more
    than ``above`` (margin included, ``convert/cascade.py``), so a film whose own probability p lies outside
    [threshold - below, threshold + above) is decided by p alone and its other views are never invoked:
    about one invoke per film instead of one per view. Relative to the threshold, so ``--threshold`` keeps it.
    """

    below: float
    above: float

    def needs_views(self, film_probability: np.ndarray, threshold: float) -> np.ndarray:
        """(N,) bool: the films whose own probability lies in the band, compared in float64 as the threshold is."""
        p = np.asarray(film_probability, dtype=np.float64)
        return (p >= threshold - self.below) & (p < threshold + self.above)


@dataclasses.dataclass(frozen=True)
class Rule:
    """Everything that turns a film's per-view outputs into its probabilities, rank score and label."""

    labels: tuple[str, ...]
    negative_label: str
    threshold: float
    task: str  # BINARY (one sigmoid column) | MULTICLASS (softmax columns)
    views: tuple[str, ...] = ("film",)  # test-time views, the film first
    view_average: str = "all"  # VIEW_AVERAGES
    decided_by: str = OUTPUT  # DECIDERS
    cascade: Cascade | None = None  # the other views only where they can change the decision (None: always)

    @property
    def negative_index(self) -> int:
        return self.labels.index(self.negative_label)

    @property
    def positive_labels(self) -> tuple[str, ...]:
        return tuple(label for label in self.labels if label != self.negative_label)

    @property
    def positive_name(self) -> str:
        """What a positive is called: the one positive label, or ``not NORMAL`` when there are several."""
        positive = self.positive_labels
        return positive[0] if len(positive) == 1 else f"not {self.negative_label}"

    @property
    def score_name(self) -> str:
        """``P(PNEUMONIA)`` or ``P(not NORMAL)``: beside a subtype, a bare "probability" reads as that subtype's."""
        return f"P({self.positive_name})"

    def with_threshold(self, threshold: float) -> "Rule":
        return dataclasses.replace(self, threshold=float(threshold))

    @property
    def film_rule(self) -> "Rule":
        """The rule on the film view alone: what the cascade decides by outside its band."""
        return dataclasses.replace(self, views=self.views[:1], cascade=None)


def label_probabilities(outputs: np.ndarray, task: str) -> np.ndarray:
    """Outputs (N, 1 or n_labels) -> per-label probabilities (N, n_labels), in the outputs' own float type:
    the one place a sigmoid column becomes two (negative, positive)."""
    outputs = np.asarray(outputs)
    outputs = outputs.reshape(len(outputs), -1)
    if task == BINARY:
        p = np.clip(outputs[:, :1], 0.0, 1.0)
        return np.concatenate([1.0 - p, p], axis=1)
    return outputs


def average_views(per_view: Sequence[np.ndarray], negative: int, how: str = "all") -> np.ndarray:
    """Probabilities (N, n_labels) of each test-time view, the film's first, averaged.

    ``how="negative"`` averages only the negative label's column (the screening question, where a
    softened view helps against the sharpness cue) and splits the rest among the positive labels
    in the film's own proportions: the soft views lack the detail that tells bacterial from viral
    (``docs/shift-validation.md``). With one positive label both ways are the same.
    """
    mean = np.mean(per_view, axis=0)
    if how == "all":
        return mean
    film = np.asarray(per_view[0], dtype=np.float64)
    positives = [i for i in range(film.shape[1]) if i != negative]
    split = film[:, positives]
    total = split.sum(axis=1, keepdims=True)
    split = np.divide(split, total, out=np.full_like(split, 1.0 / len(positives)), where=total > 0)
    out = np.empty_like(mean)
    out[:, negative] = mean[:, negative]
    out[:, positives] = (1.0 - mean[:, [negative]]) * split
    return out


def positive_probability(label_probs: np.ndarray, negative: int) -> np.ndarray:
    """P(not the negative label) of each row (N,): THE positive score, compared with the threshold."""
    return 1.0 - np.asarray(label_probs)[:, negative]


def decide_labels(rule: Rule, label_probs: np.ndarray) -> tuple[str, ...]:
    """Labels by the rule: flagged (positive probability >= threshold) -> most likely positive label.

    Compared in float64, like the report's written numbers and :mod:`cxr_edge.review.metrics`:
    a float32 comparison rounds the threshold, flagging a score just below it.
    """
    score = positive_probability(label_probs, rule.negative_index).astype(np.float64)
    positive_idx = [rule.labels.index(label) for label in rule.positive_labels]
    best = np.asarray(positive_idx)[np.argmax(np.asarray(label_probs)[:, positive_idx], axis=1)]
    return tuple(rule.labels[b] if s >= rule.threshold else rule.negative_label for s, b in zip(score, best))


@dataclasses.dataclass(frozen=True)
class Decided:
    """What the rule made of a batch of films."""

    label_probs: np.ndarray  # (N, n_labels): what decided, averaged over views by the rule
    probability: np.ndarray  # (N,) float64 P(not negative) of what decided: compared with the threshold
    score: np.ndarray | None  # (N,) rank score: the head's positive probability averaged over views (None w/o head)
    labels: tuple[str, ...]  # per film: flagged -> most likely positive label, else the negative label


def decide(rule: Rule, outputs: Sequence[np.ndarray], head_outputs: Sequence[np.ndarray] | None = None) -> Decided:
    """Decide a batch from the model's screening output of each view (N, 1 or n), and the head's
    outputs on each view's features (or None without a head).

    Both are taken as float32, the edge's output type. The head's positive probability, averaged
    over views, is the rank score (no 8-bit ties); with ``decided_by=HEAD`` its probabilities
    also decide, averaged by the same view rule.
    """
    if rule.decided_by == HEAD and head_outputs is None:
        raise ValueError("the rule is decided by the head, but no head outputs were given (a bundle without a head?)")
    negative = rule.negative_index
    per_view = {OUTPUT: outputs, HEAD: head_outputs}
    probs = {by: [label_probabilities(np.asarray(o, np.float32), rule.task) for o in views]
             for by, views in per_view.items() if views is not None}
    label_probs = average_views(probs[rule.decided_by], negative, rule.view_average)
    score = None
    if HEAD in probs:
        score = np.mean([positive_probability(p, negative) for p in probs[HEAD]], axis=0)
    return Decided(label_probs=label_probs,
                   probability=positive_probability(label_probs, negative).astype(np.float64),
                   score=score, labels=decide_labels(rule, label_probs))


def cascaded(film: Decided, views: Decided, needed: np.ndarray) -> Decided:
    """The film view's decision of every film, replaced where ``needed`` by ``views``: the decision of all views
    of those films (in order). The rank score stays the film view's for every film, so one rule ranks them all
    (a score averaged for some films and not others would not compare)."""
    rows = np.flatnonzero(needed)
    label_probs, probability, labels = film.label_probs.copy(), film.probability.copy(), list(film.labels)
    label_probs[rows], probability[rows] = views.label_probs, views.probability
    for row, label in zip(rows, views.labels):
        labels[row] = label
    return Decided(label_probs=label_probs, probability=probability, score=film.score, labels=tuple(labels))
