"""experiments/adapt_shift.py: a site halved by patient, and the table of the seeds."""

from __future__ import annotations

import numpy as np

from cxr_edge.engine import OK, Result
from cxr_edge.review.adapt import Film
from cxr_edge.review.labelled import Truth
from experiments import adapt_shift


def films(n_patients: int = 40) -> list[Film]:
    out = []
    for p in range(n_patients):
        label = "PNEUMONIA" if p % 3 else "NORMAL"
        for k in range(1 + p % 3):
            result = Result(f"/x/{p}_{k}.png", f"{label}/{p}_{k}.png", OK, probability=0.5, score=0.5)
            out.append(Film(result, Truth(label != "NORMAL", label), f"listed {p}", (np.zeros(4),)))
    return out


def test_the_halves_never_split_a_patient_and_each_holds_both_classes():
    site = films()
    for seed in range(3):
        mine, theirs = adapt_shift.halves(site, ("NORMAL", "PNEUMONIA"), seed)
        assert not (mine & theirs).any() and (mine | theirs).all()
        assert not {f.patient for f, m in zip(site, mine) if m} & {f.patient for f, t in zip(site, theirs) if t}
        for half in (mine, theirs):
            assert {f.truth.label for f, h in zip(site, half) if h} == {"NORMAL", "PNEUMONIA"}


def test_the_table_gives_each_seed_then_the_mean_and_spread_of_each_figure():
    rows = [{"seed": s, "verdict": "adapted", "adapt_films": 300, "test_films": 300, "base_auc": auc,
             "adapted_auc": auc + 0.01} for s, auc in enumerate((0.96, 0.98))]
    summary = adapt_shift.summary(rows)
    assert summary["base_auc"] == [0.97, float(np.std([0.96, 0.98], ddof=1))] and "adapt_films" not in summary
    table = adapt_shift.markdown(rows, "pneumonia").splitlines()
    assert table[-1].startswith("| mean (sd) |") and "0.970 (0.014)" in table[-1] and len(table) == 7


def test_with_three_parts_a_third_of_the_patients_adapt_and_the_rest_measure():
    site = films(60)
    mine, theirs = adapt_shift.halves(site, ("NORMAL", "PNEUMONIA"), 0, parts=3)
    assert (mine ^ theirs).all() and 0.25 < mine.mean() < 0.42
