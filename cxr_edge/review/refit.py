"""Refit a model's last layer on a site's own films: patient folds, a shrunken logistic fit, out-of-fold scores.

The model's head (:mod:`cxr_edge.head`) is a linear map of the pooled features. Refitting it on a few
hundred labelled films of one site is a small regularized logistic (binary) or multinomial (subtype)
regression, done here by Newton's method in numpy (no scikit-learn: it runs on a Pi, the size of
pycoral's on-device ``softmax_regression``). The fit starts from the shipped head and is pulled back
to it: the shipped head's logits are an input (their weight free), and the new weights on the
standardized features pay ``penalty / 2 * |weights|^2``, so a strong penalty returns the shipped
head's ranking and only a recalibrated threshold. The result folds the standardization back in, so
it is a plain :class:`~cxr_edge.head.Head` on the raw features.

Honest figures need folds that never split a patient: :func:`patient_folds`. The penalty is chosen
by inner folds of the fitting films alone (:func:`choose_penalty`), so the out-of-fold scores of
:func:`out_of_fold` never saw their own films, not even through the penalty.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from cxr_edge.head import Head

N_FOLDS = 5
INNER_FOLDS = 3  # patient folds of the fitting films that choose the penalty
#: Penalties tried (on the standardized features' weights, summed loss over a few hundred films):
#: from nearly free weights to nearly the shipped head, a factor 4 apart.
PENALTIES = (1.0, 4.0, 16.0, 64.0, 256.0, 1024.0)
#: A small pull of the shipped logits' weight towards 1 and of the biases towards 0: it only keeps
#: the fit unique (softmax ignores a shift shared by every class), far below what the films say.
ANCHOR = 1e-3
MAX_STEPS = 100
TOLERANCE = 1e-8


@dataclasses.dataclass(frozen=True)
class Site:
    """A site's fitting data: per test-time view the features (N, D) of the same N films, each film's
    class index into the model's labels, and its patient (the unit of every fold)."""

    features: tuple[np.ndarray, ...]
    classes: np.ndarray  # (N,) int
    patients: np.ndarray  # (N,) patient keys

    def take(self, rows: np.ndarray) -> "Site":
        return Site(tuple(f[rows] for f in self.features), self.classes[rows], self.patients[rows])

    def __len__(self) -> int:
        return len(self.classes)


def patient_folds(classes: Sequence[int], patients: Sequence, k: int = N_FOLDS, seed: int = 0) -> np.ndarray:
    """The fold (0..k-1) of each film: a patient's films always share one, and each class's
    patients are spread over the folds as evenly as their films allow (stratified by the patient's
    class; a patient with films of several classes is stratified by the set of them)."""
    classes, patients = np.asarray(classes), np.asarray(patients)
    keys = sorted(set(patients.tolist()), key=str)
    strata: dict[tuple, list] = {}
    for key in keys:
        strata.setdefault(tuple(sorted(set(classes[patients == key].tolist()))), []).append(key)
    rng = np.random.default_rng(seed)
    fold_of: dict = {}
    for stratum in sorted(strata):
        members = [strata[stratum][i] for i in rng.permutation(len(strata[stratum]))]
        members.sort(key=lambda key: -int(np.sum(patients == key)))  # largest first, ties in shuffled order
        load = np.zeros(k)
        for key in members:
            fold = int(np.argmin(load + np.arange(k) * 1e-9))  # the emptiest fold, the first on a tie
            fold_of[key] = fold
            load[fold] += np.sum(patients == key)
    return np.array([fold_of[key] for key in patients.tolist()], dtype=int)


def fit_head(base: Head, site: Site, penalty: float) -> Head:
    """The head refitted on ``site`` (every view's features a row of its film, weighted 1/views)."""
    return fit_heads(base, site, (penalty,))[0]


def fit_heads(base: Head, site: Site, penalties: Sequence[float]) -> list[Head]:
    """One refitted head per penalty, on the same standardized design: each fit starts where the next
    stronger penalty's ended (a warm start: about half the Newton steps)."""
    x = np.concatenate(site.features).astype(np.float64)
    y = np.tile(site.classes, len(site.features))
    weight = np.full(len(x), 1.0 / len(site.features))
    mean = np.average(x, axis=0, weights=weight)
    scale = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=weight))
    scale[scale < 1e-12] = 1.0  # a feature constant on these films: its weight stays at 0
    columns = base.bias.shape[0]
    design = np.concatenate([_logits(base, x), (x - mean) / scale, np.ones((len(x), 1))], axis=1)
    centre = np.zeros((design.shape[1], columns))
    centre[:columns] = np.eye(columns)  # the shipped head itself
    heads: dict[float, Head] = {}
    coef = centre
    for penalty in sorted(set(penalties), reverse=True):
        pull = np.r_[np.full(columns, ANCHOR), np.full(x.shape[1], penalty), ANCHOR]
        coef = _newton(design, y, weight, pull, centre, coef)
        mix, shift, bias = coef[:columns], coef[columns:-1] / scale[:, None], coef[-1]
        weights = base.weights.T @ mix + shift  # (D, columns): standardization folded in
        heads[penalty] = Head(weights=weights.T.copy(), bias=base.bias @ mix - mean @ shift + bias)
    return [heads[p] for p in penalties]


def _logits(head: Head, x: np.ndarray) -> np.ndarray:
    return x @ head.weights.T + head.bias


def _newton(design: np.ndarray, y: np.ndarray, weight: np.ndarray, pull: np.ndarray, centre: np.ndarray,
            start: np.ndarray) -> np.ndarray:
    """Minimize the weighted log loss plus ``pull / 2 * (coef - centre)^2`` by damped Newton steps from ``start``.

    One column: a sigmoid (``y`` 0/1); several: a softmax over them (``y`` the class index).
    """
    columns = centre.shape[1]
    targets = y[:, None].astype(np.float64) if columns == 1 else np.eye(columns)[y]
    coef = start.copy()
    objective = _objective(design, targets, weight, pull, centre, coef)
    for _ in range(MAX_STEPS):
        probs = _probabilities(design @ coef)
        grad = design.T @ (weight[:, None] * (probs - targets)) + pull[:, None] * (coef - centre)
        step = np.linalg.solve(_hessian(design, probs, weight, pull), grad.T.ravel()).reshape(columns, -1).T
        size = 1.0
        while size > 1e-6:  # halve until the objective falls: Newton's full step can overshoot
            trial = coef - size * step
            value = _objective(design, targets, weight, pull, centre, trial)
            if value <= objective:
                break
            size /= 2
        else:
            return coef
        coef, done = trial, objective - value < TOLERANCE * max(1.0, abs(objective))
        objective = value
        if done:
            break
    return coef


def _probabilities(logits: np.ndarray) -> np.ndarray:
    if logits.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-logits))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _objective(design, targets, weight, pull, centre, coef) -> float:
    logits = design @ coef
    if coef.shape[1] == 1:
        loss = np.logaddexp(0.0, logits) - targets * logits
    else:
        top = logits.max(axis=1, keepdims=True)
        loss = top + np.log(np.exp(logits - top).sum(axis=1, keepdims=True)) - (targets * logits).sum(1, keepdims=True)
    return float(np.sum(weight[:, None] * loss) + 0.5 * np.sum(pull[:, None] * (coef - centre) ** 2))


def _hessian(design: np.ndarray, probs: np.ndarray, weight: np.ndarray, pull: np.ndarray) -> np.ndarray:
    """The log loss's Hessian in class-major order (block k, l: ``X' diag(w p_k (d_kl - p_l)) X``), plus the pull."""
    columns, d = probs.shape[1], design.shape[1]
    hessian = np.empty((columns * d, columns * d))
    for k in range(columns):
        for j in range(k, columns):  # symmetric: the blocks below the diagonal mirror those above
            curve = probs[:, 0] * (1.0 - probs[:, 0]) if columns == 1 else probs[:, k] * ((k == j) - probs[:, j])
            block = design.T @ ((weight * curve)[:, None] * design)
            hessian[k * d:(k + 1) * d, j * d:(j + 1) * d] = block
            hessian[j * d:(j + 1) * d, k * d:(k + 1) * d] = block.T
    return hessian + np.diag(np.tile(pull, columns))


def log_loss(head: Head, site: Site) -> float:
    """Mean log loss of the head's probability of each film's class, over every view's row."""
    columns = head.bias.shape[0]
    losses = []
    for features in site.features:
        out = np.clip(head.outputs(features), 1e-12, 1 - 1e-12)
        p = np.where(site.classes == 1, out[:, 0], 1 - out[:, 0]) if columns == 1 else out[np.arange(len(out)), site.classes]
        losses.append(-np.log(p))
    return float(np.mean(losses))


def choose_penalty(base: Head, site: Site, penalties: Sequence[float] = PENALTIES, k: int = INNER_FOLDS,
                   seed: int = 0) -> float:
    """The penalty whose fits predict held-out patients best (lowest log loss over ``k`` patient folds
    of ``site``); the larger one on a tie, as it stays nearer the shipped head."""
    folds = patient_folds(site.classes, site.patients, k, seed)
    losses = np.zeros(len(penalties))
    for f in range(k):
        held_out = site.take(folds == f)
        heads = fit_heads(base, site.take(folds != f), penalties)
        losses += [log_loss(head, held_out) * len(held_out) for head in heads]
    best = losses.min()
    return max(p for p, loss in zip(penalties, losses) if loss <= best + 1e-9 * max(1.0, best))


@dataclasses.dataclass(frozen=True)
class OutOfFold:
    """Per film, the head outputs (per view, (N, columns)) of a head fitted without its patients'
    films, and the penalty each outer fold chose."""

    head_outputs: tuple[np.ndarray, ...]
    folds: np.ndarray
    penalties: tuple[float, ...]


def out_of_fold(base: Head, site: Site, k: int = N_FOLDS, seed: int = 0) -> OutOfFold:
    """Fit on ``k - 1`` patient folds (its penalty chosen by inner folds of those alone), score the
    last; every film is scored once, by a head that never saw its patient."""
    folds = patient_folds(site.classes, site.patients, k, seed)
    columns = base.bias.shape[0]
    outputs = [np.empty((len(site), columns)) for _ in site.features]
    penalties = []
    for f in range(k):
        train, test = folds != f, folds == f
        fitting = site.take(train)
        penalty = choose_penalty(base, fitting, seed=seed + 1 + f)
        head = fit_head(base, fitting, penalty)
        for view, features in enumerate(site.features):
            outputs[view][test] = head.outputs(features[test])
        penalties.append(penalty)
    return OutOfFold(tuple(outputs), folds, tuple(penalties))
