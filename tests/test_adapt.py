"""``cxr-edge adapt``: a site's labelled films refit the last layer, checked out of fold, kept only if it helps.

The films are generated (``tests/site_films.py``): the tiny bundles gain a features output and a gate,
and a site is their own kind of picture under another contrast curve, with a marker on half of its
NORMAL films that the shipped head takes for a lesion.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cxr_edge.bundle import BundleError, load_bundle
from cxr_edge.head import Head
from cxr_edge.review import adapt as adapting
from cxr_edge.review import refit

import site_films  # tests/ is on the path

ASSETS = Path(__file__).parent / "assets"
ROOT = Path(__file__).resolve().parents[1]
PER_CLASS = 60  # films of each class, two per patient: 30 patients (adapt needs 40 films of 25)


def needs_tensorflow() -> None:
    pytest.importorskip("tensorflow", reason="making a gated test bundle edits the flatbuffer with TensorFlow's tools")


@pytest.fixture(scope="module")
def gated(tmp_path_factory) -> Path:
    needs_tensorflow()
    return site_films.gated_bundle(ASSETS / "tiny_binary_int8.json", tmp_path_factory.mktemp("gated"))


@pytest.fixture(scope="module")
def gated_subtype(tmp_path_factory) -> Path:
    needs_tensorflow()
    return site_films.gated_bundle(ASSETS / "tiny_subtype_int8.json", tmp_path_factory.mktemp("gated_subtype"))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return site_films.write_site(tmp_path_factory.mktemp("site"), ("NORMAL", "PNEUMONIA"), PER_CLASS)


@pytest.fixture(scope="module")
def patients(site, tmp_path_factory) -> Path:
    return site_films.patients_csv(site, tmp_path_factory.mktemp("lists") / "patients.csv")


@pytest.fixture(scope="module")
def adapted(gated, site, patients, tmp_path_factory):
    """(result, out folder) of adapting the gated tiny bundle to the shifted site."""
    from click.testing import CliRunner

    from cxr_edge.cli import main

    out = tmp_path_factory.mktemp("adapted") / "out"
    result = CliRunner().invoke(main, ["adapt", str(site), "--model", str(gated), "--out", str(out),
                                       "--patients", str(patients), "-q"], catch_exceptions=False)
    return result, out


def adapted_manifest(out: Path) -> Path:
    (manifest,) = [p for p in out.glob("*.json") if p.name != adapting.REPORT_JSON]
    return manifest


# --- the folds and the fit


def test_patient_folds_never_put_one_patient_on_both_sides_and_give_every_fold_each_class():
    rng = np.random.default_rng(3)
    patients = rng.integers(0, 60, 400)
    classes = (patients % 3 == 0).astype(int)  # a patient's films share a class
    folds = refit.patient_folds(classes, patients, k=5, seed=1)
    for patient in np.unique(patients):
        assert len(set(folds[patients == patient])) == 1
    for fold in range(5):
        assert set(classes[folds == fold]) == {0, 1}
    assert np.ptp(np.bincount(folds)) < 0.25 * len(folds) / 5  # about even


def test_a_patient_with_films_of_two_classes_still_stays_in_one_fold():
    patients = np.array([0, 0, 1, 1, 2, 3, 4, 5, 6, 7])
    classes = np.array([0, 1, 0, 0, 1, 1, 0, 1, 0, 1])
    folds = refit.patient_folds(classes, patients, k=2)
    assert folds[0] == folds[1] and folds[2] == folds[3]


def features_site(n: int = 200, seed: int = 0) -> tuple[refit.Site, Head]:
    """Features where the shipped head reads feature 0 and the site's label also shows in feature 3."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = np.abs(rng.normal(size=(n, 8)))
    x[:, 0] += 0.8 * y
    x[:, 3] += 2.0 * y
    return refit.Site((x,), y, np.arange(n) // 2), Head(np.eye(1, 8) * 2.0, np.array([-1.0]))


def test_a_strong_penalty_gives_back_the_shipped_heads_ranking_and_a_weak_one_learns_the_site():
    site, base = features_site()
    (x,) = site.features
    strong = refit.fit_head(base, site, 1e9).outputs(x)[:, 0]
    assert np.array_equal(np.argsort(strong, kind="stable"), np.argsort(base.outputs(x)[:, 0], kind="stable"))
    weak = refit.fit_head(base, site, 1.0)
    assert abs(weak.weights[0, 3]) > abs(weak.weights[0, 5])  # the site's cue, not noise
    assert weak.weights.shape == base.weights.shape and weak.bias.shape == (1,)  # a plain head on raw features


def test_the_out_of_fold_scores_come_from_heads_that_never_saw_the_films_patients(monkeypatch):
    site, base = features_site()
    seen = []
    fit = refit.fit_heads
    monkeypatch.setattr(refit, "fit_heads", lambda b, s, p: seen.append(set(s.patients.tolist())) or fit(b, s, p))
    oof = refit.out_of_fold(base, site)
    per_fold = refit.INNER_FOLDS + 1  # the inner folds' fits that choose the penalty, then its own
    assert len(seen) == refit.N_FOLDS * per_fold
    for fold in range(refit.N_FOLDS):
        held_out = set(site.patients[oof.folds == fold].tolist())
        assert held_out and not any(held_out & fitted for fitted in seen[fold * per_fold:(fold + 1) * per_fold])
    assert oof.head_outputs[0].shape == (len(site), 1)


def test_a_warm_started_penalty_path_gives_the_fits_made_from_the_shipped_head():
    site, base = features_site()
    path = refit.fit_heads(base, site, (1.0, 64.0))
    alone = [refit.fit_head(base, site, p) for p in (1.0, 64.0)]
    for warm, cold in zip(path, alone):
        np.testing.assert_allclose(warm.outputs(site.features[0]), cold.outputs(site.features[0]), atol=1e-5)


def test_a_multinomial_refit_keeps_one_column_per_label():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 150)
    x = np.abs(rng.normal(size=(150, 6)))
    x[np.arange(150), y] += 1.5
    head = refit.fit_head(Head(np.eye(3, 6), np.zeros(3)), refit.Site((x,), y, np.arange(150)), 1.0)
    assert head.weights.shape == (3, 6) and np.mean(head.outputs(x).argmax(1) == y) > 0.8


# --- the command on a shifted site


def test_a_shifted_site_is_adapted_and_beats_the_shipped_bundle_out_of_fold(adapted):
    result, out = adapted
    assert result.exit_code == 0, result.output
    report = json.loads((out / adapting.REPORT_JSON).read_text())
    fig = report["out_of_fold"]
    assert report["verdict"] == "adapted" and report["reasons"] == []
    assert fig["adapted"]["auc"] > fig["base"]["auc"] and fig["auc_gain_ci95"][0] > 0
    assert fig["adapted"]["sensitivity"] >= report["target_sensitivity"]
    assert fig["adapted"]["specificity"] >= fig["base_at_target"]["specificity"]
    assert report["films"] == {"NORMAL": PER_CLASS, "PNEUMONIA": PER_CLASS}
    assert report["patients"] == {"NORMAL": PER_CLASS // 2, "PNEUMONIA": PER_CLASS // 2}
    assert "Verdict: adapted" in result.output and "| AUC (from the ranking score) |" in result.output
    text = (out / adapting.REPORT_MD).read_text()
    assert "not retrained" in text and "no guarantee" in text and "| NORMAL | 60 | 30 |" in text


def test_the_adapted_bundle_is_the_same_model_with_the_new_head_deciding(adapted, gated):
    _, out = adapted
    base, bundle = load_bundle(gated), load_bundle(adapted_manifest(out))
    assert bundle.sha256 == base.sha256 and bundle.name != base.name and bundle.short_id != base.short_id
    assert bundle.rule.decided_by == "head" and bundle.manifest["schema_version"] == 5
    assert bundle.gate is not None and bundle.head is not None and not np.allclose(bundle.head.weights, base.head.weights)
    record = bundle.manifest["adapted"]
    assert record["base"] == {"name": base.name, "version": base.manifest["version"], "sha256": base.sha256}
    assert {"date", "films", "patients", "out_of_fold", "target_sensitivity", "verdict"} <= set(record)
    assert bundle.threshold == pytest.approx(record["out_of_fold"]["adapted"]["threshold"])


def test_a_damaged_head_file_of_the_adapted_bundle_is_refused(adapted, tmp_path):
    _, out = adapted
    copy = shutil.copytree(out, tmp_path / "copy")
    manifest = adapted_manifest(copy)
    (head,) = copy.glob("*.head.npz")
    Head(np.zeros((1, 12)), np.zeros(1)).save(head)
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(manifest)


def test_classify_with_the_adapted_bundle_writes_the_heads_probability_and_a_resume_refuses_the_base_report(
        adapted, gated, site, cli, report_rows, tmp_path):
    _, out = adapted
    manifest = adapted_manifest(out)
    films = site / "PNEUMONIA"
    report = tmp_path / "report.csv"
    assert cli("classify", films, "--model", gated, "--out", report, "-q").exit_code == 0
    resumed = cli("classify", films, "--model", manifest, "--out", report, "--resume", "-q")
    assert resumed.exit_code != 0 and "resume" in resumed.output
    mine = tmp_path / "adapted.csv"
    assert cli("classify", films, "--model", manifest, "--out", mine, "-q").exit_code == 0
    rows = report_rows(mine)
    assert {row["model"] for row in rows} == {load_bundle(manifest).short_id}
    # the head decides and ranks: no 8-bit ties
    assert all(float(row["probability"]) == pytest.approx(float(row["score"]), abs=1e-6) for row in rows)


def test_info_says_the_bundle_is_adapted_and_from_what(adapted, gated, cli):
    _, out = adapted
    base = load_bundle(gated)
    shown = cli("info", "--model", adapted_manifest(out))
    assert shown.exit_code == 0
    assert f"adapted: from {base.name} {base.manifest['version']} (sha256 {base.sha256[:12]}) on 20" in shown.output


def test_a_site_where_the_shipped_bundle_is_already_right_is_not_adapted(gated, tmp_path, cli):
    plain = site_films.write_site(tmp_path / "plain", ("NORMAL", "PNEUMONIA"), PER_CLASS, shift=False)
    listed = site_films.patients_csv(plain, tmp_path / "patients.csv")
    out = tmp_path / "out"
    result = cli("adapt", plain, "--model", gated, "--out", out, "--patients", listed, "-q")
    assert result.exit_code == adapting_exit("EXIT_NOT_ADAPTED"), result.output
    assert sorted(p.name for p in out.iterdir()) == [adapting.REPORT_JSON, adapting.REPORT_MD]
    report = json.loads((out / adapting.REPORT_JSON).read_text())
    assert report["verdict"] == "not adapted" and report["adapted_bundle"] is None
    assert "not surely above zero" in report["reasons"][0] and "--threshold" in result.output


def adapting_exit(name: str) -> int:
    from cxr_edge import cli as command_line

    return getattr(command_line, name)


def test_the_subtype_model_gets_a_multinomial_head_and_three_class_accuracy(gated_subtype, tmp_path, cli):
    labels = ("NORMAL", "BACTERIAL", "VIRAL")
    folder = site_films.write_site(tmp_path / "site", labels, PER_CLASS)
    out = tmp_path / "out"
    result = cli("adapt", folder, "--model", gated_subtype, "--out", out, "--patients",
                 site_films.patients_csv(folder, tmp_path / "p.csv"), "-q")
    assert result.exit_code in (0, adapting_exit("EXIT_NOT_ADAPTED")), result.output
    report = json.loads((out / adapting.REPORT_JSON).read_text())
    for side in ("base", "adapted"):
        assert 0 <= report["out_of_fold"][side]["three_class_accuracy"] <= 1
    assert "three-class accuracy" in result.output
    assert report["out_of_fold"]["adapted"]["three_class_accuracy"] > report["out_of_fold"]["base"]["three_class_accuracy"]


def test_unreadable_films_are_named_never_fitted_on_and_exit_1(gated, site, patients, tmp_path, cli):
    folder = shutil.copytree(site, tmp_path / "site")
    (folder / "NORMAL" / "broken.png").write_bytes(b"")
    out = tmp_path / "out"
    result = cli("adapt", folder, "--model", gated, "--out", out, "--patients", patients, "-q")
    assert result.exit_code == 1 and "NORMAL/broken.png: empty file" in result.stderr
    report = json.loads((out / adapting.REPORT_JSON).read_text())
    assert [(r["file"], r["why"][:10]) for r in report["left_out"]] == [("NORMAL/broken.png", "empty file")]
    assert report["films"]["NORMAL"] == PER_CLASS and report["not_used"]["unreadable"] == 1


# --- refusals


def test_too_few_films_of_a_class_are_refused(gated, tmp_path, cli):
    folder = site_films.write_site(tmp_path / "small", ("NORMAL", "PNEUMONIA"), 30)
    result = cli("adapt", folder, "--model", gated, "--out", tmp_path / "out")
    assert result.exit_code == 4 and "too few screened films" in result.output and "40 films of 25" in result.output
    assert not (tmp_path / "out").exists()


def test_films_without_a_known_patient_count_as_their_own_with_a_warning(gated, site, tmp_path, cli):
    result = cli("adapt", site, "--model", gated, "--out", tmp_path / "out", "-q")
    assert "count as their own" in result.output
    assert "may be optimistic" in (tmp_path / "out" / adapting.REPORT_MD).read_text()


def test_class_folders_that_are_not_the_models_labels_are_refused(gated, site, tmp_path, cli):
    folder = shutil.copytree(site, tmp_path / "site")
    (folder / "PNEUMONIA").rename(folder / "COVID")
    result = cli("adapt", folder, "--model", gated, "--out", tmp_path / "out")
    assert result.exit_code == 4 and "COVID" in result.output and "match no label" in result.output


def test_a_folder_mostly_rejected_by_the_gate_is_refused(gated, tmp_path, cli):
    folder = site_films.write_site(tmp_path / "mixed", ("NORMAL", "PNEUMONIA"), 4)
    columns = np.indices((224, 224))[1]
    for label in ("NORMAL", "PNEUMONIA"):
        for period in range(4, 12):  # stripes: pictures far from any film
            stripes = (columns // period % 2 * 255).astype(np.uint8)
            site_films.Image.fromarray(stripes).save(folder / label / f"stripes{period}.png")
    result = cli("adapt", folder, "--model", gated, "--out", tmp_path / "out")
    rejected = re.search(r"the gate rejected (\d+) of the 24 readable films", result.output)
    assert result.exit_code == 4 and rejected and int(rejected.group(1)) > 12


def test_a_bundle_without_a_features_output_is_refused_with_the_command_that_adds_one(site, tmp_path, cli):
    result = cli("adapt", site, "--model", ASSETS / "tiny_binary_int8.json", "--out", tmp_path / "out")
    assert result.exit_code == 3 and "no features output" in result.output and "convert.add_gate" in result.output


def test_a_bundle_with_features_but_no_head_is_refused_with_the_command_that_adds_one(gated):
    import dataclasses

    headless = dataclasses.replace(load_bundle(gated), head=None)
    with pytest.raises(BundleError, match="has no head .*convert.add_gate"):
        adapting.adaptable(headless)


def test_an_out_folder_that_is_not_empty_is_refused_before_any_work(gated, site, tmp_path, cli):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = cli("adapt", site, "--model", gated, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "not an empty folder" in result.output
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_adapting_needs_no_tensorflow(gated, site, patients, tmp_path):
    """The Pi's path: the library and the command leave TensorFlow unloaded."""
    script = textwrap.dedent(f"""
        import sys
        import cxr_edge.review.adapt
        from cxr_edge.cli import main
        try:
            main(["adapt", {str(site)!r}, "--model", {str(gated)!r}, "--out", {str(tmp_path / 'out')!r},
                  "--patients", {str(patients)!r}, "-q"])
        except SystemExit as exc:
            print("exit", exc.code)
        print("tensorflow" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.stdout.split()[-3:] == ["exit", "0", "False"], done.stderr


# --- patients


def test_a_films_patient_is_its_dicom_id_then_the_list_then_its_kermany_name(tmp_path):
    from cxr_edge.engine import OK, Result
    from cxr_edge.review.labelled import Truth

    listed = tmp_path / "patients.csv"
    listed.write_text("file,patient\nNORMAL/a.png,P1\nb.png,P2\nNORMAL/IM-0007-0001.jpeg,P3\n")
    known = adapting.read_patients(listed)
    normal = Truth(False, "NORMAL")

    def patient(display: str, **info: str) -> str:
        return adapting.patient_of(Result(f"/x/{display}", display, OK, info=info), normal, known)

    assert patient("NORMAL/a.png", patient_id="D9") == "PatientID D9"
    assert patient("NORMAL/a.png") == "listed P1" and patient("NORMAL/sub/b.png") == "listed P2"
    assert patient("NORMAL/IM-0007-0001.jpeg") == "listed P3" and patient("NORMAL/IM-0008-0001.jpeg") == "IM-8"
    assert patient("NORMAL/c.png") == ""


def test_a_patients_list_without_its_columns_is_refused(tmp_path):
    (tmp_path / "p.csv").write_text("name,id\na.png,1\n")
    with pytest.raises(adapting.DataLayoutError, match="file,patient"):
        adapting.read_patients(tmp_path / "p.csv")
