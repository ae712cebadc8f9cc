"""The test-time views' cascade: the other views run only where they can change a film's decision."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from convert import add_views, cascade
from cxr_edge import runtime
from cxr_edge.bundle import BundleError, load_bundle
from cxr_edge.decision import Cascade
from cxr_edge.engine import Classifier
from cxr_edge.testing.synthetic import synthetic_xray
from train_data import make_kermany


def test_the_band_is_the_largest_move_each_way_plus_the_margin():
    film = np.array([0.10, 0.50, 0.90, 0.70])
    averaged = np.array([0.15, 0.40, 0.90, 0.72])  # moves +0.05, -0.10, 0, +0.02
    assert cascade.band(film, averaged, 0.01) == pytest.approx({"below": 0.06, "above": 0.11})
    assert cascade.band(film, film, 0.02) == pytest.approx({"below": 0.02, "above": 0.02})  # views that never move


def test_only_films_whose_own_probability_lies_in_the_band_need_the_other_views():
    film = np.array([0.39, 0.40, 0.60, 0.79, 0.80])
    assert Cascade(below=0.2, above=0.2).needs_views(film, 0.6).tolist() == [False, True, True, True, False]
    assert Cascade(below=0.0, above=0.1).needs_views(film, 0.7).tolist() == [False, False, False, True, False]


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


def films(n: int) -> np.ndarray:
    """Generated films of both kinds at the tiny bundles' 224 px, and a flat grey one."""
    drawn = [np.asarray(synthetic_xray(i, (224, 224), lesion=i % 2 == 1).convert("L")) for i in range(n - 1)]
    return np.stack([*drawn, np.full((224, 224), 128, dtype=np.uint8)])


def with_views(bundle_path, **fields):
    bundle = load_bundle(bundle_path)
    return dataclasses.replace(bundle, views=("film", "half_and_back"), **fields)


def test_films_on_both_sides_of_the_band_get_the_two_view_decision_and_only_those_in_it_run_the_other_view(
        binary_model, monkeypatch):
    batch = films(10)
    every_view = with_views(binary_model)
    film = Classifier(dataclasses.replace(every_view, views=("film",)), threads=1).decide(batch)[0]
    both = Classifier(every_view, threads=1).decide(batch)[0]
    between = (film.probability > 0.01) & (film.probability < 0.99)  # the tiny model is sure of the others
    threshold = float(np.mean(film.probability[between]))
    edges = cascade.band(film.probability, both.probability, margin=0.02)
    rule = Cascade(**edges)
    needed = rule.needs_views(film.probability, threshold)
    below, above = film.probability < threshold - rule.below, film.probability >= threshold + rule.above
    assert needed.any() and below.any() and above.any(), "films should lie in the band and on both sides of it"
    reference = Classifier(dataclasses.replace(every_view, threshold=threshold), threads=1).decide(batch)[0]
    cascading = Classifier(dataclasses.replace(every_view, threshold=threshold, cascade=rule), threads=1)
    batches = []
    invoke = runtime.run_outputs
    monkeypatch.setattr(runtime, "run_outputs", lambda interpreter, pixels: batches.append(len(pixels))
                        or invoke(interpreter, pixels))
    decided = cascading.decide(batch)[0]
    assert batches == [len(batch), int(needed.sum())] and cascading.views_run == int(needed.sum())
    assert decided.labels == reference.labels
    np.testing.assert_array_equal(decided.probability, np.where(needed, reference.probability, film.probability))
    np.testing.assert_array_equal(decided.score, film.score)  # one rule ranks every film: the film view's head
    assert cascading.positive_scores(batch).tolist() == decided.probability.tolist()


def test_a_band_too_narrow_for_how_far_the_views_move_a_film_can_change_its_decision(binary_model):
    # What the margin and the validation's largest move are for: with no band at all, the film decides alone.
    batch = films(10)
    every_view = with_views(binary_model)
    film = Classifier(dataclasses.replace(every_view, views=("film",)), threads=1).decide(batch)[0]
    both = Classifier(every_view, threads=1).decide(batch)[0]
    moved = np.argmax(np.abs(both.probability - film.probability))
    threshold = float((both.probability[moved] + film.probability[moved]) / 2)  # the views carry it across
    never = Classifier(dataclasses.replace(every_view, threshold=threshold, cascade=Cascade(0.0, 0.0)), threads=1)
    always = Classifier(dataclasses.replace(every_view, threshold=threshold), threads=1)
    assert never.decide(batch)[0].labels[moved] != always.decide(batch)[0].labels[moved]
    assert never.views_run == 0 and always.views_run == len(batch)


def test_the_manifest_s_band_is_read_kept_by_a_threshold_override_and_checked(tmp_path, binary_model, subtype_model,
                                                                               copy_bundle):
    manifest = copy_bundle(binary_model, tmp_path / "b")
    record = json.loads(manifest.read_text())
    band = {"below": 0.23, "above": 0.32, "margin": 0.02}
    manifest.write_text(json.dumps({**record, "test_time_views": ["film", "half_and_back"], "test_time_cascade": band}))
    rule = load_bundle(manifest).rule
    assert rule.cascade == Cascade(below=0.23, above=0.32) and rule.with_threshold(0.4).cascade == rule.cascade
    assert rule.film_rule.views == ("film",) and rule.film_rule.cascade is None
    for changed, why in [({"test_time_views": ["film"]}, "needs test_time_views beyond the film"),
                         ({"test_time_cascade": {**band, "below": -0.1}}, "each must be in"),
                         ({"test_time_cascade": {"above": 0.3}}, "below")]:
        manifest.write_text(json.dumps({**record, "test_time_views": ["film", "half_and_back"],
                                        "test_time_cascade": band, **changed}))
        with pytest.raises(BundleError, match=why):
            load_bundle(manifest)
    subtype = copy_bundle(subtype_model, tmp_path / "s")
    record = {**json.loads(subtype.read_text()), "test_time_views": ["film", "half_and_back"], "test_time_cascade": band}
    subtype.write_text(json.dumps(record))
    with pytest.raises(BundleError, match="needs test_time_average 'negative'"):
        load_bundle(subtype)
    subtype.write_text(json.dumps({**record, "test_time_average": "negative"}))
    assert load_bundle(subtype).cascade == Cascade(below=0.23, above=0.32)


def test_add_views_with_a_cascade_records_the_band_its_validation_films_agree_with(tmp_path, binary_model):
    data = make_kermany(tmp_path / "data", n_patients=30, size=(224, 224))
    result = CliRunner().invoke(add_views.main, [str(binary_model), "--data", str(data), "--out", str(tmp_path / "out"),
                                                 "--target-sensitivity", "0.9", "--cascade", "0.01"])
    assert result.exit_code == 0, result.output
    written = load_bundle(tmp_path / "out" / "tiny_binary_int8.json")
    record = written.manifest["test_time_cascade"]
    found = record["validation"]
    assert found["same_decisions"] == found["films"] == written.manifest["metrics"]["at_threshold"]["n"]
    assert record["margin"] == 0.01 and written.cascade.below == pytest.approx(found["largest_move_up"] + 0.01)
    assert written.cascade.above == pytest.approx(found["largest_move_down"] + 0.01)
    assert f"{found['views_run']} of {found['films']} validation films, the same decision on" in result.output
    again = CliRunner().invoke(add_views.main, [str(written.manifest_path), "--data", str(data), "--out",
                                                str(tmp_path / "again"), "--target-sensitivity", "0.9"])
    assert again.exit_code == 0, again.output
    assert load_bundle(tmp_path / "again" / "tiny_binary_int8.json").cascade is None  # no stale band carried over
