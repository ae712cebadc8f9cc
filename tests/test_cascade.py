"""The test-time views' cascade: the other views run only where they can change a film's decision."""

from __future__ import annotations

import numpy as np
import pytest

from convert import cascade


def test_the_band_is_the_largest_move_each_way_plus_the_margin():
    film = np.array([0.10, 0.50, 0.90, 0.70])
    averaged = np.array([0.15, 0.40, 0.90, 0.72])  # moves +0.05, -0.10, 0, +0.02
    assert cascade.band(film, averaged, 0.01) == pytest.approx({"below": 0.06, "above": 0.11})
    assert cascade.band(film, film, 0.02) == pytest.approx({"below": 0.02, "above": 0.02})  # views that never move


def test_only_films_whose_own_probability_lies_in_the_band_need_the_other_views():
    film = np.array([0.39, 0.40, 0.60, 0.79, 0.80])
    assert cascade.needs_views(film, 0.6, below=0.2, above=0.2).tolist() == [False, True, True, True, False]


def test_the_manifest_record_says_how_many_validation_films_ran_the_views_and_that_decisions_held():
    film = np.array([0.05, 0.45, 0.55, 0.58, 0.95, 0.99])
    averaged = np.array([0.04, 0.52, 0.50, 0.61, 0.97, 0.90])
    positive = np.array([0, 1, 0, 1, 1, 1])
    record = cascade.manifest_record(film, averaged, positive, threshold=0.5, margin=0.01)
    assert record["below"] == pytest.approx(0.08) and record["above"] == pytest.approx(0.10)
    assert record["margin"] == 0.01 and "rank score is the head's on the film view" in record["rule"]
    found = record["validation"]
    assert (found["films"], found["views_run"], found["same_decisions"]) == (6, 3, 6)
    assert found["largest_move_up"] == pytest.approx(0.07) and found["largest_move_down"] == pytest.approx(0.09)
