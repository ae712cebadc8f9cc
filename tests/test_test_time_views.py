"""Test-time views: a bundle may average its probabilities over the film and softer copies of it."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from convert import add_views
from cxr_edge.bundle import BundleError, load_bundle
from cxr_edge.decision import average_views
from cxr_edge.engine import Classifier
from cxr_edge.preprocess import half_and_back, view
from cxr_edge.testing.synthetic import synthetic_xray
from train_data import make_kermany


def films(n: int = 4, size: int = 224) -> np.ndarray:
    return np.stack([np.asarray(synthetic_xray(i, (size, size), lesion=i % 2 == 1).convert("L")) for i in range(n)])


def probabilities(classifier: Classifier, batch: np.ndarray) -> np.ndarray:
    return classifier.decide(batch)[0].label_probs


def test_the_film_view_is_the_film_itself_and_the_soft_view_its_half_resolution_copy():
    batch = films(2)
    assert np.array_equal(view("film", batch), batch)
    assert np.array_equal(view("half_and_back", batch), half_and_back(batch))


def test_a_bundle_with_views_averages_the_probabilities_of_each_view(binary_model):
    plain = Classifier(load_bundle(binary_model), threads=1)
    averaged = Classifier(dataclasses.replace(plain.bundle, views=("film", "half_and_back")), threads=1)
    batch = films()
    expected = (probabilities(plain, batch) + probabilities(plain, half_and_back(batch))) / 2
    np.testing.assert_allclose(probabilities(averaged, batch), expected, rtol=0, atol=1e-7)


def test_the_gate_judges_the_film_itself_while_probabilities_and_rank_scores_average():
    shipped = dataclasses.replace(load_bundle("pneumonia"), cascade=None)  # every view on every film
    plain = Classifier(dataclasses.replace(shipped, views=("film",)), threads=1)
    averaged = Classifier(dataclasses.replace(shipped, views=("film", "half_and_back")), threads=1)
    batch = np.concatenate([films(2), np.random.default_rng(0).integers(0, 256, (1, 224, 224), dtype=np.uint8)])
    decided, verdicts = averaged.decide(batch)
    film, film_verdicts = plain.decide(batch)
    soft, _ = plain.decide(half_and_back(batch))
    assert [v.passed for v in verdicts] == [v.passed for v in film_verdicts]
    assert [v.reason for v in verdicts] == [v.reason for v in film_verdicts]
    np.testing.assert_allclose(decided.score, (film.score + soft.score) / 2, rtol=1e-6)


@pytest.mark.parametrize("views, why", [(["half_and_back"], "must start with 'film'"),
                                        (["film", "sharpen"], "name only"), ([], "must start with 'film'")])
def test_a_manifest_with_views_a_device_cannot_make_is_refused(tmp_path, binary_model, copy_bundle, views, why):
    manifest = copy_bundle(binary_model, tmp_path / "b")
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "test_time_views": views}))
    with pytest.raises(BundleError, match=why):
        load_bundle(manifest)


def test_a_bundle_without_views_reads_the_film_alone(binary_model):
    assert load_bundle(binary_model).views == ("film",)


def test_the_shipped_pneumonia_bundle_averages_the_film_and_its_half_resolution_copy():
    assert load_bundle("pneumonia").views == ("film", "half_and_back")


def test_add_views_writes_a_copy_whose_threshold_reaches_the_target_on_the_validation_films(tmp_path, binary_model):
    data = make_kermany(tmp_path / "data", n_patients=30, size=(224, 224))
    result = CliRunner().invoke(add_views.main, [str(binary_model), "--data", str(data), "--out", str(tmp_path / "out"),
                                                 "--target-sensitivity", "0.9", "--model-version", "9.9.9"])
    assert result.exit_code == 0, result.output
    written = load_bundle(tmp_path / "out" / "tiny_binary_int8.json")
    assert written.views == ("film", "half_and_back") and written.manifest["version"] == "9.9.9"
    at = written.manifest["metrics"]["at_threshold"]
    assert at["sensitivity"] >= 0.9 and at["threshold"] == written.threshold
    assert written.model_path.read_bytes() == load_bundle(binary_model).model_path.read_bytes()
    assert "averaged over the test-time views" in written.manifest["threshold_rule"]


def test_add_views_refuses_a_view_list_that_does_not_start_with_the_film(tmp_path, binary_model):
    data = make_kermany(tmp_path / "data", n_patients=4)
    result = CliRunner().invoke(add_views.main, [str(binary_model), "--views", "half_and_back", "--data", str(data),
                                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "start with 'film'" in result.output


def test_info_says_which_views_the_model_averages(cli, binary_model):
    assert ("test-time views: film, half_and_back (probabilities averaged over 2 invokes per film; the other views run "
            "only for films whose own probability lies in [0.412, 0.979))") in cli("info").output
    assert "test-time views: film\n" in cli("info", "--model", str(binary_model)).output


def test_averaging_only_normal_keeps_the_film_s_split_among_the_pneumonia_classes():
    film = np.array([[0.2, 0.6, 0.2], [0.9, 0.0, 0.0]])  # NORMAL, BACTERIAL, VIRAL; the second film has no positive mass
    soft = np.array([[0.6, 0.1, 0.3], [0.7, 0.2, 0.1]])
    averaged = average_views([film, soft], negative=0, how="negative")
    np.testing.assert_allclose(averaged[:, 0], [0.4, 0.8])  # NORMAL: the plain mean
    np.testing.assert_allclose(averaged[0, 1:], [0.6 * 0.75, 0.6 * 0.25])  # bacterial 3:1 viral, as the film says
    np.testing.assert_allclose(averaged[1, 1:], [0.1, 0.1])  # nothing to split by: halves
    np.testing.assert_allclose(averaged.sum(axis=1), 1.0)
    np.testing.assert_allclose(average_views([film, soft], 0, "all"), (film + soft) / 2)


def test_with_one_positive_label_both_averages_are_the_same():
    film, soft = np.array([[0.3, 0.7], [0.8, 0.2]]), np.array([[0.5, 0.5], [0.6, 0.4]])
    np.testing.assert_allclose(average_views([film, soft], 0, "negative"), average_views([film, soft], 0, "all"))


def test_a_manifest_says_what_its_views_average_and_an_unknown_rule_is_refused(tmp_path, subtype_model, copy_bundle):
    manifest = copy_bundle(subtype_model, tmp_path / "b")
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "test_time_views": ["film", "half_and_back"], "test_time_average": "negative"}))
    bundle = load_bundle(manifest)
    assert bundle.view_average == "negative"
    plain = Classifier(dataclasses.replace(bundle, views=("film",)), threads=1)
    batch = films(3)
    film, soft = probabilities(plain, batch), probabilities(plain, half_and_back(batch))
    np.testing.assert_allclose(probabilities(Classifier(bundle, threads=1), batch),
                               average_views([film, soft], 0, "negative"), atol=1e-6)
    manifest.write_text(json.dumps({**record, "test_time_average": "median"}))
    with pytest.raises(BundleError, match="test_time_average 'median'"):
        load_bundle(manifest)


def test_add_views_can_average_only_the_negative_label_and_writes_a_schema_4_manifest(tmp_path, subtype_model):
    data = make_kermany(tmp_path / "data", n_patients=30, size=(224, 224))
    result = CliRunner().invoke(add_views.main, [str(subtype_model), "--average", "negative", "--data", str(data),
                                                 "--out", str(tmp_path / "out"), "--target-sensitivity", "0.9"])
    assert result.exit_code == 0, result.output
    written = load_bundle(next((tmp_path / "out").glob("*.json")))
    assert written.view_average == "negative" and written.manifest["schema_version"] == 4
    assert "multiclass" in written.manifest["metrics"]


def test_info_says_when_the_views_average_only_the_negative_label(cli, tmp_path, subtype_model, copy_bundle):
    manifest = copy_bundle(subtype_model, tmp_path / "b")
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "test_time_views": ["film", "half_and_back"], "test_time_average": "negative"}))
    assert ("test-time views: film, half_and_back (the NORMAL probability averaged over 2 invokes per film; the other "
            "labels split as the film alone splits them)") in cli("info", "--model", str(manifest)).output


def test_add_views_takes_a_runs_listed_validation_patients_and_refuses_the_seeded_split_in_their_place(
        tmp_path, binary_model, copy_bundle):
    from train.data import scan
    from train.rundir import fingerprint

    data = make_kermany(tmp_path / "data", n_patients=30, size=(224, 224))
    records, _ = scan(data)
    listed = sorted({r.patient for r in records})[::3]  # as `python -m train shift` writes a run's --val-patients
    (tmp_path / "val_patients.txt").write_text("\n".join(listed) + "\n")
    manifest = copy_bundle(binary_model, tmp_path / "b")
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "training_run": {"validation_patients": fingerprint(listed)}}))
    args = [str(manifest), "--data", str(data), "--out", str(tmp_path / "out"), "--target-sensitivity", "0.9"]

    seeded = CliRunner().invoke(add_views.main, args)
    assert seeded.exit_code == 3 and "--val-patients" in seeded.output
    result = CliRunner().invoke(add_views.main, [*args, "--val-patients", str(tmp_path / "val_patients.txt")])
    assert result.exit_code == 0, result.output
    screened = load_bundle(tmp_path / "out" / manifest.name).manifest["metrics"]["at_threshold"]["n"]
    rejected = int(re.search(r"validation films screened \((\d+) rejected", result.output).group(1))
    assert screened + rejected == sum(r.patient in set(listed) for r in records)
