"""``cxr-edge evaluate``: labelled folders -> truths, metrics that agree with scikit-learn, exit codes."""

from __future__ import annotations

import dataclasses
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_edge import decision
from cxr_edge.review import evaluate, labelled, metrics
from cxr_edge.bundle import Bundle
from cxr_edge.engine import ERROR, OK, Result
from cxr_edge.review.evaluate import Evaluation
from cxr_edge.review.labelled import DataLayoutError, Truth, labelled_inputs
from cxr_edge.preprocess import Contract

sk = pytest.importorskip("sklearn.metrics")

EXIT_DATA = 4


def fake_bundle(labels=("NORMAL", "PNEUMONIA"), threshold=0.5) -> Bundle:
    """A bundle's meaning without files: enough for layouts and metrics."""
    return Bundle(
        name="fake", task="binary" if len(labels) == 2 else "multiclass", labels=tuple(labels),
        negative_label="NORMAL", threshold=threshold, contract=Contract(), input_shape=(1, 224, 224, 1),
        input_dtype="uint8", quantization="int8", model_path=Path("fake.tflite"), sha256="0" * 64,
        manifest_path=Path("fake.json"), manifest={},
    )


def touch_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("L", (8, 8), 128).save(folder / name)


# --- layouts ---------------------------------------------------------------------------------


def test_class_folders_give_the_truth_any_case(tmp_path):
    touch_images(tmp_path / "normal", ["a.png", "b.png"])
    touch_images(tmp_path / "PNEUMONIA" / "sub", ["c.png"])
    touch_images(tmp_path, ["loose.png"])  # no class: not listed
    items = labelled_inputs(tmp_path, fake_bundle())
    assert [(f.display, t) for f, t in items] == [
        ("PNEUMONIA/sub/c.png", Truth(True, "PNEUMONIA")),
        ("normal/a.png", Truth(False, "NORMAL")),
        ("normal/b.png", Truth(False, "NORMAL")),
    ]


@pytest.mark.parametrize("labels", [("NORMAL", "BACTERIAL", "VIRAL"), ("NORMAL", "BACTERIA", "VIRUS")])
def test_kermany_pneumonia_folder_gives_the_subtype_from_file_names(tmp_path, labels):
    touch_images(tmp_path / "PNEUMONIA", ["person1_bacteria_2.jpeg", "person3_virus_4.jpeg", "odd.jpeg"])
    touch_images(tmp_path / labels[2], ["v.png"])
    truths = {f.display: t for f, t in labelled_inputs(tmp_path, fake_bundle(labels))}
    assert truths == {
        "PNEUMONIA/person1_bacteria_2.jpeg": Truth(True, labels[1]),
        "PNEUMONIA/person3_virus_4.jpeg": Truth(True, labels[2]),
        "PNEUMONIA/odd.jpeg": Truth(True, None),  # positive, subtype unknown
        f"{labels[2]}/v.png": Truth(True, labels[2]),
    }


@pytest.mark.parametrize(
    "folders, labels, message",
    [
        ([], ("NORMAL", "PNEUMONIA"), "has no class subfolders: expected folders named NORMAL, PNEUMONIA"),
        (["NORMAL", "Covid"], ("NORMAL", "PNEUMONIA"), "folder(s) Covid match no label"),
        (["NORMAL", "BACTERIAL", "VIRAL"], ("NORMAL", "PNEUMONIA"), "(its labels: NORMAL, PNEUMONIA)"),
        (["NORMAL", "PNEUMONIA"], ("NORMAL", "COVID", "OTHER"), "folder(s) PNEUMONIA match no label"),
    ],
)
def test_folders_that_do_not_fit_the_model_are_refused(tmp_path, folders, labels, message):
    for name in folders:
        touch_images(tmp_path / name, ["x.png"])
    with pytest.raises(DataLayoutError, match=re.escape(message)):
        labelled_inputs(tmp_path, fake_bundle(labels))


def test_a_folder_that_cannot_be_listed_is_refused_with_the_reason(tmp_path, monkeypatch):
    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(labelled.os, "scandir", denied)
    with pytest.raises(DataLayoutError, match="cannot list the folder \\(Permission denied\\)"):
        labelled_inputs(tmp_path, fake_bundle())


def test_class_folders_without_images_are_refused(tmp_path):
    (tmp_path / "NORMAL").mkdir()
    (tmp_path / "PNEUMONIA").mkdir()
    (tmp_path / "PNEUMONIA" / "notes.txt").write_text("no images here")
    with pytest.raises(DataLayoutError, match="no image files in the class folders"):
        labelled_inputs(tmp_path, fake_bundle())


# --- metrics from results --------------------------------------------------------------------


def evaluation(y, probs, labels=("NORMAL", "PNEUMONIA"), threshold=0.5, truths=None, names=None, infos=None,
               **kw) -> Evaluation:
    """An Evaluation over made-up results (no interpreter), predicted by the bundle's rule."""
    bundle = fake_bundle(labels, threshold)
    probs = np.asarray(probs, dtype=np.float32).reshape(len(probs), -1)
    decided = decision.decide(bundle.rule, [probs])
    label_probs, scores = decided.label_probs, decided.probability
    names = names or [f"{i}.png" for i in range(len(probs))]
    infos = infos or [{} for _ in names]
    results = [
        Result(f"/x/{name}", name, OK, prediction=pred, probability=float(p), label_probs=tuple(row), info=info)
        for name, info, pred, p, row in zip(names, infos, decided.labels, scores, label_probs)
    ]
    truths = truths or [Truth(bool(t), labels[1] if t else "NORMAL") for t in y]
    return Evaluation(bundle, "data", threshold, "manifest", truths, results, n_boot=200, **kw)


def test_a_film_s_patient_comes_from_its_dicom_patient_id_else_its_kermany_name():
    def key(display, positive=True, info=None):
        return evaluate.patient_key(Result(f"/x/{display}", display, OK, info=info or {}), Truth(positive, None))

    assert key("PNEUMONIA/person12_virus_3.jpeg") == "person12"
    assert key("NORMAL/NORMAL2-IM-0101-0001.jpeg", positive=False) == "IM-101"
    assert key("NORMAL/1.2.840.99.dcm", positive=False, info={"patient_id": "P7"}) == "PatientID P7"
    assert key("NORMAL/scan.png", positive=False) == ""  # unknown: the image is its own unit


def test_intervals_resample_patients_not_their_films_one_by_one():
    # 12 patients of 4 films each, a patient's films scored alike: 12 pieces of evidence, not 48.
    y = np.repeat([0, 1] * 6, 4)
    p = np.repeat([0.2, 0.3, 0.6, 0.1, 0.3, 0.7, 0.2, 0.4, 0.1, 0.8, 0.3, 0.9], 4)
    names = [f"PNEUMONIA/person{i // 4}_bacteria_{i}.jpeg" if t else f"NORMAL/IM-{i // 4:04d}-{i:04d}.jpeg"
             for i, t in enumerate(y)]
    grouped, alone = evaluation(y, p, names=names), evaluation(y, p)
    assert grouped.resampled == "12 patients" and alone.resampled == "48 images (no patient known)"
    assert grouped.intervals == metrics.bootstrap_ci(y, p, 0.5, n_boot=200, groups=[n // 4 for n in range(48)])
    assert alone.intervals == metrics.bootstrap_ci(y, p, 0.5, n_boot=200)  # as before, image by image
    low, high = grouped.intervals["auc"]
    assert high - low > np.subtract(*alone.intervals["auc"][::-1])  # four films of one child are not four children
    assert grouped.to_json()["bootstrap"]["resampled"] == "12 patients"
    assert "(intervals: 200 resamples of 12 patients)" in evaluate.format_table(grouped)


def test_binary_numbers_agree_with_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    ev = evaluation(y, p, threshold=0.45)
    pred = (p.astype(np.float32) >= 0.45).astype(int)
    got = ev.binary
    assert got["auc"] == pytest.approx(sk.roc_auc_score(y, p.astype(np.float32)))
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert got["sensitivity"] == pytest.approx(sk.recall_score(y, pred))
    assert got["specificity"] == pytest.approx(sk.recall_score(y, pred, pos_label=0))
    assert got["precision"] == pytest.approx(sk.precision_score(y, pred))
    assert got["f1"] == pytest.approx(sk.f1_score(y, pred))
    assert got["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, pred))
    assert ev.binary_confusion()[1] == sk.confusion_matrix(y, pred).tolist()
    for name, (lo, hi) in ev.intervals.items():
        assert lo <= got[name] <= hi


def test_predictions_and_metrics_agree_at_a_threshold_just_above_a_float32_score():
    # 0.82031251 rounds to the float32 score 0.8203125 but lies above it: not flagged
    ev = evaluation([1, 0], [0.8203125, 0.1], threshold=0.82031251)
    assert ev.results[0].prediction == "NORMAL"
    assert (ev.binary["tp"], ev.binary["fn"]) == (0, 1)


def test_multiclass_numbers_agree_with_sklearn_and_unknown_subtypes_count_only_as_positive():
    labels = ("NORMAL", "BACTERIA", "VIRUS")
    rng = np.random.default_rng(1)
    truth_idx = rng.integers(0, 3, 120)
    probs = rng.dirichlet([1, 1, 1], 120) * 0.5 + np.eye(3)[truth_idx] * 0.5
    truths = [Truth(i != 0, labels[i]) for i in truth_idx]
    truths[0] = Truth(True, None)  # a PNEUMONIA/ file without a subtype in its name
    ev = evaluation(None, probs, labels=labels, truths=truths)
    known = [i for i in range(120) if truths[i].label]
    pred = [labels.index(ev.results[i].prediction) for i in known]
    expected = sk.confusion_matrix(truth_idx[known], pred, labels=[0, 1, 2])
    assert ev.multiclass["confusion"] == expected.tolist()
    assert ev.multiclass["accuracy"] == pytest.approx(sk.accuracy_score(truth_idx[known], pred))
    assert ev.binary["n"] == 120
    expected_auc = sk.roc_auc_score([t.positive for t in truths], 1 - probs[:, 0])
    assert ev.binary["auc"] == pytest.approx(expected_auc, abs=1e-6)


def test_no_subtype_metrics_without_a_positive_of_known_subtype():
    # A clinic's own PNEUMONIA/ films rarely carry Kermany names: only the NORMAL images have
    # a known label, and "multiclass accuracy" over them alone would be the specificity.
    labels = ("NORMAL", "BACTERIAL", "VIRAL")
    truths = [Truth(False, "NORMAL")] * 3 + [Truth(True, None)] * 3
    probs = [[0.9, 0.05, 0.05]] * 3 + [[0.1, 0.6, 0.3]] * 3
    ev = evaluation(None, probs, labels=labels, truths=truths)
    assert ev.multiclass is None and ev.to_json()["multiclass"] is None
    table = evaluate.format_table(ev)
    assert "multiclass accuracy" not in table
    assert re.search(r"^no subtype metrics: no positive image has a known subtype \(", table, re.M)
    assert ev.binary["sensitivity"] == 1.0  # the pneumonia metrics still count them


def test_unreadable_images_are_left_out_and_nothing_readable_is_an_error():
    ev = evaluation([0, 1, 1], [0.2, 0.9, 0.8])
    ev.results[2] = Result("/x/2.png", "2.png", ERROR, error="damaged")
    ev.__post_init__()
    assert ev.binary["n"] == 2 and [r.display for r in ev.errors] == ["2.png"]
    with pytest.raises(DataLayoutError, match="none of the 1 images in data could be read"):
        Evaluation(fake_bundle(), "data", 0.5, "manifest", [Truth(True, "PNEUMONIA")],
                   [Result("/x/a.png", "a.png", ERROR, error="damaged")])


def test_target_sensitivity_reports_the_threshold_that_reaches_it():
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    p = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    target = evaluation(y, p, target_sensitivity=1.0).at_target
    assert target["threshold"] == pytest.approx(0.4)
    assert (target["sensitivity"], target["specificity"]) == (1.0, 0.75)


def test_a_target_sensitivity_without_positives_says_why_there_is_no_threshold():
    ev = evaluation([0, 0, 0], [0.1, 0.6, 0.2], target_sensitivity=0.9)
    assert ev.at_target is None
    assert re.search(r"^no threshold for sensitivity >= 0\.9: no readable positive image$",
                     evaluate.format_table(ev), re.M)


def test_a_target_threshold_from_few_positives_is_called_rough_in_table_and_json():
    few = evaluation([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.8], target_sensitivity=1.0)
    rough = r"; rough estimate: only 2 positives \(fewer than 50\)$"
    assert re.search(r"^threshold for sensitivity >= 1 .*" + rough, evaluate.format_table(few), re.M)
    assert few.to_json()["at_target_sensitivity"]["note"] == few.at_target["note"]
    y = np.r_[np.zeros(60), np.ones(evaluate.FEW_POSITIVES)]
    assert evaluation(y, np.linspace(0, 1, len(y)), target_sensitivity=0.9).at_target["note"] == ""


def test_a_metric_without_errors_in_the_folder_gets_its_exact_interval_in_table_and_json():
    ev = evaluation([0] * 20 + [1] * 20, [0.1] * 20 + [0.9] * 20)
    assert re.search(r"^sensitivity +1\.000 +0\.832-1\.000$", evaluate.format_table(ev), re.M)
    assert ev.to_json()["ci95"]["sensitivity"] == pytest.approx([0.025 ** (1 / 20), 1.0])


def test_one_class_data_gives_null_metrics_in_strict_json():
    ev = evaluation([1, 1, 1], [0.9, 0.4, 0.8])
    data = json.loads(json.dumps(ev.to_json(), allow_nan=False))
    assert data["binary"]["specificity"] is None and data["binary"]["auc"] is None
    assert data["binary"]["sensitivity"] == pytest.approx(2 / 3)
    assert "n/a" in evaluate.format_table(ev)


def test_table_shows_every_metric_with_its_interval_and_the_confusion():
    ev = evaluation([0, 0, 1, 1, 1], [0.1, 0.6, 0.7, 0.8, 0.3], threshold=0.5)
    table = evaluate.format_table(ev)
    for name in ("accuracy", "sensitivity", "specificity", "precision", "f1", "balanced_accuracy", "auc"):
        assert name in table
    assert re.search(r"^sensitivity +0\.667 +0\.\d{3}-1\.000$", table, re.M)
    assert re.search(r"^NORMAL +1 +1$", table, re.M) and re.search(r"^PNEUMONIA +1 +2$", table, re.M)


def test_prevalence_carries_ppv_and_npv_to_another_class_mix():
    y = [0] * 40 + [1] * 60
    p = [0.1] * 36 + [0.9] * 4 + [0.2] * 6 + [0.8] * 54  # sensitivity 0.9, specificity 0.9
    ev = evaluation(y, p, prevalences=(0.1, 0.6))
    rare, own = ev.at_prevalences
    assert rare["ppv"] == pytest.approx(0.09 / (0.09 + 0.09)) and rare["npv"] == pytest.approx(0.81 / 0.82)
    assert own["ppv"] == pytest.approx(ev.binary["precision"]) and own["accuracy"] == pytest.approx(0.9)
    assert rare["ci95"]["ppv"][0] <= rare["ppv"] <= rare["ci95"]["ppv"][1]
    assert re.search(r"^  0\.1: accuracy 0\.900 \(0\.\d{3}-0\.\d{3}\), ppv 0\.500 ", evaluate.format_table(ev), re.M)
    assert json.loads(json.dumps(ev.to_json()))["at_prevalence"][1]["prevalence"] == 0.6
    assert "expected at another share" not in evaluate.format_table(evaluation(y, p))


# --- the command, with real TFLite models ----------------------------------------------------


def labelled_folder(root: Path, normal: int = 4, pneumonia: int = 4, size: int = 224) -> Path:
    """Synthetic radiographs: NORMAL/ plain, PNEUMONIA/ with lesions (Kermany-style names)."""
    from cxr_edge.testing.synthetic import synthetic_xray

    for i in range(normal):
        (root / "NORMAL").mkdir(parents=True, exist_ok=True)
        synthetic_xray(i, (size, size)).save(root / "NORMAL" / f"IM-{i:04d}-0001.png")
    for i in range(pneumonia):
        (root / "PNEUMONIA").mkdir(parents=True, exist_ok=True)
        kind = "bacteria" if i % 2 else "virus"
        picture = synthetic_xray(100 + i, (size, size), lesion=True)
        picture.save(root / "PNEUMONIA" / f"person{i}_{kind}_{i}.png")
    return root


def test_the_threshold_evaluate_prints_reaches_its_sensitivity_when_classify_uses_it(
    cli, binary_model, tmp_path, report_rows
):
    data = labelled_folder(tmp_path / "data", normal=6, pneumonia=6)
    result = cli("evaluate", data, "--model", binary_model, "--target-sensitivity", "0.8")
    assert result.exit_code == 0, result.stderr
    printed = re.search(r"threshold for sensitivity >= 0.8 on this data: (\S+) ", result.stdout).group(1)
    out = tmp_path / "report.csv"
    assert cli("classify", data / "PNEUMONIA", "--model", binary_model, "--threshold", printed,
               "--out", out).exit_code == 0
    flagged = [r["prediction"] == "PNEUMONIA" for r in report_rows(out)]
    assert sum(flagged) / len(flagged) >= 0.8


def test_evaluate_writes_metrics_that_sklearn_reproduces_from_the_csv(
    cli, binary_model, tmp_path, report_rows
):
    data = labelled_folder(tmp_path / "data")
    out = tmp_path / "out"
    result = cli("evaluate", data, "--model", binary_model, "--out-dir", out, "--target-sensitivity", "0.75",
                 "--prevalence", "0.2")
    assert result.exit_code == 0, result.stderr
    assert "95% CI" in result.stdout and "threshold for sensitivity >= 0.75" in result.stdout
    assert re.search(r"^  0\.2: accuracy .*, ppv .*, npv ", result.stdout, re.M)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["at_prevalence"][0]["prevalence"] == 0.2
    rows = report_rows(out / "predictions.csv")
    assert len(rows) == 8 and {r["truth"] for r in rows} == {"NORMAL", "PNEUMONIA"}
    y = [r["truth"] == "PNEUMONIA" for r in rows]
    p = [float(r["probability"]) for r in rows]
    pred = [r["prediction"] == "PNEUMONIA" for r in rows]
    assert saved["binary"]["auc"] == pytest.approx(sk.roc_auc_score(y, p), abs=1e-4)
    assert saved["binary"]["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert saved["classes"] == {"NORMAL": 4, "PNEUMONIA": 4}
    for name in ("roc.png", "confusion.png", "histogram.png"):
        with Image.open(out / name) as img:
            assert img.size[0] > 300 and len(np.unique(np.asarray(img.convert("L")))) > 10  # drawn, not blank


def test_threshold_option_moves_the_operating_point(cli, binary_model, tmp_path):
    data = labelled_folder(tmp_path / "data", 2, 2)
    flagged_all = cli("evaluate", data, "--model", binary_model, "--threshold", "0",
                      "--out-dir", tmp_path / "o")
    assert flagged_all.exit_code == 0
    saved = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert (saved["threshold"], saved["threshold_source"]) == (0.0, "--threshold")
    assert (saved["binary"]["sensitivity"], saved["binary"]["specificity"]) == (1.0, 0.0)


def test_a_prevalence_of_0_or_1_is_a_usage_error(cli, binary_model, tmp_path):
    result = cli("evaluate", labelled_folder(tmp_path / "data", 1, 1), "--model", binary_model, "--prevalence", "1")
    assert result.exit_code == 2 and "--prevalence" in result.stderr


@pytest.mark.parametrize("option", ["--threshold", "--target-sensitivity", "--prevalence"])
@pytest.mark.parametrize("nan", ["nan", "NaN", "-nan"])
def test_nan_is_a_usage_error_before_any_scoring(cli, binary_model, tmp_path, option, nan):
    result = cli("evaluate", labelled_folder(tmp_path / "data", 1, 1), "--model", binary_model, option, nan)
    assert result.exit_code == 2 and option in result.stderr and "not a number" in result.stderr
    assert result.stdout == ""


def test_subtype_model_reads_subtypes_from_kermany_names(cli, subtype_model, tmp_path):
    data = labelled_folder(tmp_path / "data", 3, 4)
    result = cli("evaluate", data, "--model", subtype_model, "--out-dir", tmp_path / "o", "--no-plots")
    assert result.exit_code == 0, result.stderr
    saved = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert sum(saved["classes"].values()) == 7 and "NORMAL" in saved["classes"]
    assert saved["multiclass"]["n"] == 7
    assert "multiclass accuracy" in result.stdout


@pytest.mark.parametrize(
    "layout, message",
    [
        ({}, "no class subfolders"),
        ({"NORMAL": 1, "COVID": 1}, "COVID match no label"),
        ({"NORMAL": 0, "PNEUMONIA": 0}, "no image files"),
    ],
)
def test_bad_folders_exit_4_with_a_message(cli, binary_model, tmp_path, layout, message):
    for name, count in layout.items():
        touch_images(tmp_path / "data" / name, [f"{i}.png" for i in range(count)])
    (tmp_path / "data").mkdir(exist_ok=True)
    result = cli("evaluate", tmp_path / "data", "--model", binary_model)
    assert result.exit_code == EXIT_DATA
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_class_folder_link_that_leads_nowhere_is_an_error_not_a_missing_class(cli, binary_model, tmp_path):
    data = labelled_folder(tmp_path / "data", normal=2, pneumonia=0)
    (data / "PNEUMONIA").symlink_to(tmp_path / "unmounted_share")
    result = cli("evaluate", data, "--model", binary_model)
    assert result.exit_code == 1
    assert "PNEUMONIA/: cannot list this folder" in result.stderr and "1 unreadable" in result.stdout


def test_unreadable_images_exit_1_and_are_named(cli, binary_model, tmp_path):
    data = labelled_folder(tmp_path / "data", 2, 2)
    (data / "NORMAL" / "broken.png").write_bytes(b"not a png")
    result = cli("evaluate", data, "--model", binary_model)
    assert result.exit_code == 1
    assert "NORMAL/broken.png" in result.stderr and "1 unreadable" in result.stdout


def test_evaluate_runs_without_tensorflow_and_warns_without_matplotlib(binary_model, tmp_path):
    data = labelled_folder(tmp_path / "data", 2, 2)
    out = tmp_path / "out"
    script = (
        "import sys\n"
        "for name in ('tensorflow', 'keras', 'sklearn', 'pandas', 'matplotlib'): sys.modules[name] = None\n"
        "from cxr_edge.cli import main\n"
        f"main(['evaluate', {str(data)!r}, '--model', {str(binary_model)!r}, '--out-dir', {str(out)!r}])\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "plots need matplotlib" in done.stderr and "pip install matplotlib" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "predictions.csv"]


@pytest.mark.needs_data
def test_evaluate_on_the_real_validation_split(cli, tmp_path):
    default = Path(__file__).parents[2] / "shared" / "data" / "chest_xray_224"
    val = Path(os.environ.get("CXR_DATA", default)) / "val"
    if not val.is_dir():
        pytest.skip("Kermany data not found ($CXR_DATA or ../shared/data)")
    from cxr_edge.bundle import list_bundled

    if not list_bundled():
        pytest.skip("no bundled model installed yet")
    result = cli("evaluate", val, "--out-dir", tmp_path / "o")
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["n_images"] == 16


def test_plots_of_an_earlier_run_do_not_stay_beside_new_metrics(cli, binary_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("roc.png", "confusion.png", "histogram.png"):
        (out / name).write_bytes(b"drawn for another model or threshold")
    result = cli("evaluate", labelled_folder(tmp_path / "data", 1, 1), "--model", binary_model,
                 "--out-dir", out, "--no-plots")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "predictions.csv"]


def test_an_out_dir_that_cannot_take_the_predictions_is_fatal_after_printing_the_metrics(
    cli, binary_model, tmp_path
):
    data = labelled_folder(tmp_path / "data", 2, 2)
    (tmp_path / "out" / "predictions.csv").mkdir(parents=True)
    result = cli("evaluate", data, "--model", binary_model, "--out-dir", tmp_path / "out", "--no-plots")
    assert result.exit_code == 3 and "cannot write into" in result.stderr and "95% CI" in result.stdout


# --- what the figures cannot say ----------------------------------------------------------------


def test_fewer_than_the_minimum_of_a_class_is_warned_in_table_and_json():
    few = evaluation([0] * 30 + [1] * 60, np.r_[np.linspace(0, 0.4, 30), np.linspace(0.6, 1, 60)])
    warning = "only 60 positive and 30 negative readable images (fewer than 50 of a class): every figure is rough"
    assert re.search(f"^warning: {re.escape(warning)}", evaluate.format_table(few), re.M)
    assert few.to_json()["warnings"][0].startswith(warning)
    enough = evaluation([0] * 50 + [1] * 50, np.r_[np.linspace(0, 0.4, 50), np.linspace(0.6, 1, 50)])
    assert enough.warnings == [] and "warning:" not in evaluate.format_table(enough)


def test_intervals_on_two_films_say_they_cannot_be_estimated():
    """On 2 films AUC printed "1.000 1.000-1.000"."""
    ev = evaluation([0, 1], [0.1, 0.9])
    table = evaluate.format_table(ev)
    for name in ("f1", "balanced_accuracy", "auc"):
        assert re.search(f"^{name} +1\\.000 +cannot be estimated$", table, re.M)
    assert re.search(r"^sensitivity +1\.000 +0\.025-1\.000$", table, re.M)  # exact: 1 of 1 proves little
    assert "none for f1, balanced_accuracy, auc with fewer than 10 images of a class" in table
    assert json.loads(json.dumps(ev.to_json(), allow_nan=False))["ci95"]["auc"] == [None, None]


def test_a_target_threshold_comes_with_its_interval_and_the_sensitivity_it_surely_reaches():
    """99 of 100 positives found is compatible with a sensitivity of about 0.95, not 0.99."""
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(100), np.ones(100)]
    p = np.r_[rng.uniform(0, 0.6, 100), rng.uniform(0.3, 1, 100)]
    target = evaluation(y, p, target_sensitivity=0.99).at_target
    assert target["tp"] == 99 and target["sensitivity_lower_95"] == pytest.approx(0.9455, abs=5e-4)
    low, high = target["threshold_ci95"]
    assert low <= target["threshold"] <= high and low < high
    [line] = [line for line in evaluate.format_table(evaluation(y, p, target_sensitivity=0.99)).splitlines()
              if line.startswith("  95% CI of that threshold")]
    assert line == (f"  95% CI of that threshold over resamples: {low:.3f}-{high:.3f}; "
                    "the sensitivity it reaches is at least 0.945 (exact 95% bound)")


def test_metrics_threshold_interval_holds_the_threshold_of_every_resample():
    y, s = [0, 0, 1, 1, 1], [0.1, 0.5, 0.4, 0.7, 0.9]
    low, high = metrics.threshold_interval(y, s, 1.0, n_boot=300)
    assert 0.4 <= low <= high <= 0.9


def test_a_folder_of_kermany_file_names_is_warned_to_look_like_the_training_set():
    names = [f"NORMAL/IM-{i:04d}-0001.jpeg" for i in range(3)] + [f"PNEUMONIA/person{i}_virus_{i}.jpeg" for i in range(3)]
    ev = evaluation([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], names=names)
    assert any(w.startswith("6 of 6 file names follow the Kermany et al. pattern") for w in ev.warnings)
    assert "the bundled models were trained on that dataset's train split" in evaluate.format_table(ev)
    clinic = evaluation([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert not any("Kermany" in w for w in clinic.warnings)


def test_a_suggested_threshold_is_shown_beside_the_current_one_and_says_which_films_it_would_miss():
    """On 100 films it suggested 0.951 (sensitivity 0.980) where the shipped 0.660 found every film, unsaid."""
    y = [0, 0, 0, 0, 1, 1, 1, 1, 1]
    p = [0.1, 0.55, 0.7, 0.96, 0.6, 0.8, 0.96, 0.97, 0.99]
    ev = evaluation(y, p, threshold=0.5, target_sensitivity=0.8)
    target = ev.at_target
    assert target["threshold"] == pytest.approx(0.8)
    assert target["current"] == {"threshold": 0.5, "sensitivity": 1.0, "specificity": 0.25}
    assert (target["missed_vs_current"], target["false_alarms_vs_current"]) == (1, -2)
    table = evaluate.format_table(ev)
    assert re.search(r"^  current +0\.5 +1\.000 +0\.250$", table, re.M)
    assert re.search(r"^  suggested +0\.80\d* +0\.800 +0\.750$", table, re.M)  # exactly the value to pass on
    assert ("  the suggested threshold would miss 1 PNEUMONIA film that the current one (0.5) finds, "
            "for 2 fewer false alarms") in table
    assert ev.to_json()["at_target_sensitivity"]["missed_vs_current"] == 1


def test_a_suggested_threshold_below_the_current_one_says_what_it_adds():
    y = [0, 0, 0, 1, 1, 1]
    p = [0.1, 0.5, 0.7, 0.4, 0.8, 0.9]
    table = evaluate.format_table(evaluation(y, p, threshold=0.6, target_sensitivity=1.0))
    assert ("  the suggested threshold finds 1 PNEUMONIA film more than the current one (0.6), "
            "for 1 more false alarm") in table
    assert "would miss" not in table


def test_the_auc_comes_from_the_score_that_ranks_with_the_8_bit_probabilitys_beside_it():
    """Issue 33: the int8 probability ties films at its steps; the page orders by the float score."""
    y = [0, 0, 0, 1, 1, 1]
    ev = evaluation(y, [0.2, 0.99609375, 0.99609375, 0.99609375, 0.99609375, 0.9])
    for result, score in zip(ev.results, [0.2, 0.97, 0.98, 0.991, 0.999, 0.9]):
        result.score = score
    ev = Evaluation(ev.bundle, "data", 0.5, "manifest", ev.truths, ev.results, n_boot=200)
    assert ev.binary["auc"] == pytest.approx(metrics.roc_auc(y, [0.2, 0.97, 0.98, 0.991, 0.999, 0.9]))
    assert ev.binary["auc_probability"] == pytest.approx(metrics.roc_auc(y, ev.score)) != ev.binary["auc"]
    assert ev.to_json()["auc_from"] == "score" and "from the 8-bit probability column" in evaluate.format_table(ev)


def test_a_bundle_decided_by_its_head_ranks_by_the_probability_that_decides():
    """An adapted bundle (cxr-edge adapt): probability and score are the head's output, up to float32 rounding."""
    ev = evaluation([0, 0, 1, 1], [0.1, 0.6, 0.55, 0.9])
    for result in ev.results:
        result.score = result.probability + 1e-7
    bundle = dataclasses.replace(ev.bundle, decided_by="head")
    ev = Evaluation(bundle, "data", 0.5, "manifest", ev.truths, ev.results, n_boot=200)
    assert not ev.ranked_by_score and "auc_probability" not in ev.binary


def test_without_a_score_the_auc_is_the_probabilitys_and_nothing_is_said_of_it():
    ev = evaluation([0, 1, 0, 1], [0.1, 0.8, 0.3, 0.7])
    assert "auc_probability" not in ev.binary and ev.to_json()["auc_from"] == "probability"
    assert "8-bit" not in evaluate.format_table(ev)
