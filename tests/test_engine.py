"""The engine: results in input order, streaming with bounded look-ahead, real TFLite models."""

from __future__ import annotations

import itertools
import re
import json
from pathlib import Path

import numpy as np
import pytest

from cxr_edge import rows, runtime
from cxr_edge.bundle import BundleError, load_bundle
from cxr_edge.decision import decide_labels, label_probabilities
from cxr_edge.discover import Found, discover
from cxr_edge.engine import ERROR, OK, Classifier, Result, Tally, classify_files, gate_overridden, screened_anyway
from cxr_edge.gate import Verdict
from cxr_edge.preprocess import load_image


def images(folder: Path, make_image, count: int) -> list[Path]:
    return [make_image(folder / f"img_{i:03d}.png", size=(90 + 7 * i, 70 + 3 * i), seed=i) for i in range(count)]


def one_by_one(classifier: Classifier, paths: list[Path]) -> np.ndarray:
    """Each image alone through the interpreter: the reference the engine must reproduce."""
    bundle = classifier.bundle
    pixels = [load_image(p, bundle.contract).pixels for p in paths]
    return np.concatenate([label_probabilities(runtime.run_batch(classifier.interpreter, p[None]), bundle.task) for p in pixels])


@pytest.mark.parametrize("model", ["binary_model", "float_model", "subtype_model"])
@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("threads", [1, None])  # None: each worker runs its own copy of the interpreter
def test_results_match_single_image_runs_in_input_order(tmp_path, make_image, request, model, workers, threads) -> None:
    paths = images(tmp_path, make_image, 11)
    (tmp_path / "img_004b.png").write_text("not an image")  # an error among good images
    classifier = Classifier(load_bundle(request.getfixturevalue(model)), threads=threads)
    results = list(classify_files(discover([tmp_path]), classifier, workers=workers))
    assert [r.display for r in results] == sorted(p.as_posix() for p in tmp_path.iterdir())
    ok = [r for r in results if r.status == OK]
    assert [r.status for r in results].count(ERROR) == 1 and len(ok) == 11
    expected = one_by_one(Classifier(load_bundle(request.getfixturevalue(model)), threads=1), paths)
    np.testing.assert_allclose([r.label_probs for r in ok], expected, atol=1e-5)
    bundle = classifier.bundle
    assert tuple(r.prediction for r in ok) == decide_labels(bundle.rule, expected)
    np.testing.assert_allclose([r.probability for r in ok], 1 - expected[:, 0], atol=1e-5)
    assert (ok[3].width, ok[3].height) == (90 + 21, 70 + 9)


def test_only_automatic_cpu_threading_gives_each_worker_its_own_interpreter(binary_model) -> None:
    bundle = load_bundle(binary_model)
    assert Classifier(bundle).per_worker and not Classifier(bundle, threads=2).per_worker
    replica = Classifier(bundle).replica()
    assert replica.threads == 1 and not replica.per_worker and replica.bundle is bundle


def test_the_engine_streams_and_reads_only_a_bounded_window_ahead(tmp_path, make_image, binary_model) -> None:
    path = make_image(tmp_path / "a.png")
    consumed = itertools.count()
    endless = (Found(str(path), f"copy {next(consumed)}") for _ in itertools.repeat(None))
    classifier = Classifier(load_bundle(binary_model), threads=1)
    first = list(itertools.islice(classify_files(endless, classifier, workers=2), 10))
    assert [r.display for r in first] == [f"copy {i}" for i in range(10)]
    assert next(consumed) <= 10 + 2 * 2  # taken + the decode window: never the whole input


def test_a_file_deleted_between_listing_and_reading_gets_an_error_row(tmp_path, make_image, binary_model) -> None:
    images(tmp_path, make_image, 3)
    listed = list(discover([tmp_path]))
    Path(listed[1].path).unlink()
    results = list(classify_files(listed, Classifier(load_bundle(binary_model), threads=1)))
    assert [r.status for r in results] == [OK, ERROR, OK]
    assert "not found" in results[1].error and "deleted" in results[1].error


def test_every_bad_input_gets_an_error_row_and_the_rest_is_classified(tmp_path, make_image, binary_model, bad_inputs):
    expected = bad_inputs(tmp_path)
    make_image(tmp_path / "good.png")
    results = {Path(r.path).name: r for r in classify_files(discover([tmp_path]), Classifier(load_bundle(binary_model)))}
    assert results.pop("good.png").status == OK
    assert sorted(results) == sorted(expected)
    for name, result in results.items():
        assert result.status == ERROR and result.error
        assert re.search(expected[name], result.error), (name, result.error)


def test_tally_counts_labels_and_errors(tmp_path, make_image, binary_model) -> None:
    images(tmp_path, make_image, 3)
    (tmp_path / "bad.png").write_bytes(b"")
    tally = Tally()
    for result in classify_files(discover([tmp_path]), Classifier(load_bundle(binary_model))):
        tally.add(result)
    assert (tally.classified, tally.errors) == (3, 1)
    assert "3 classified" in tally.summary() and "1 unreadable: empty file" in tally.summary()
    assert "images/s" in tally.summary()


def test_the_summary_groups_the_reasons_inputs_were_not_screened() -> None:
    """"7 errors" sends a reader through the CSV; "7 unreadable: pydicom not installed (7)" does not."""
    tally = Tally()
    reasons = ["pydicom not installed"] * 7 + ["empty file"] * 2 + ["a", "b", "c"]
    for n, why in enumerate(reasons):
        tally.add(Result(f"{n}", f"{n}.dcm", ERROR, error=why))
    tally.add(Result("x", "x.png", "rejected", error="not a chest film"))
    assert tally.counts() == ("0 classified (none); 12 unreadable: pydicom not installed (7), empty file (2), "
                              "a (1), 2 for other reasons; 1 rejected (not an upright frontal chest film): not a chest film (1)")
    assert tally.errors == 13


def test_the_summary_says_how_many_films_only_screen_all_let_through(tmp_path) -> None:
    """A --screen-all run must not read like a run of films the gate accepts, nor must its report read back."""
    overridden = Result("h", "hand.png", OK, prediction="PNEUMONIA", probability=0.99,
                        info={"warning": screened_anyway(Verdict(1330.0, 0.2, "foreign", "not screened: a hand"))})
    tally = Tally()
    for result in (overridden, Result("f", "film.png", OK, prediction="NORMAL", probability=0.1)):
        tally.add(result)
    assert tally.counts() == ("2 classified (NORMAL 1, PNEUMONIA 1); 1 of them screened only because of --screen-all: "
                              "the gate would have rejected them (each row's note says why); 0 unreadable")
    row = rows.result_row(overridden, ("NORMAL", "PNEUMONIA"), 0.5, "m@1")
    read_back = rows.row_result(row, ("NORMAL", "PNEUMONIA"), tmp_path)
    assert gate_overridden(read_back) and not gate_overridden(Result("f", "film.png", OK))


def test_a_model_whose_input_differs_from_its_manifest_is_refused(tmp_path, binary_model, copy_bundle) -> None:
    manifest_path = copy_bundle(binary_model, tmp_path / "m")
    manifest = json.loads(manifest_path.read_text())
    manifest["input"]["dtype"] = "float32" if manifest["input"]["dtype"] != "float32" else "uint8"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="does not match the manifest"):
        Classifier(load_bundle(manifest_path))


def test_edgetpu_without_a_compiled_model_says_how_to_compile_it(binary_model) -> None:
    with pytest.raises(runtime.RuntimeUnavailable, match="no Edge-TPU-compiled model .*edgetpu_compiler.*--device cpu"):
        Classifier(load_bundle(binary_model), edgetpu=True)


def test_a_replaced_edgetpu_model_is_refused_before_it_is_loaded(tmp_path, binary_model, copy_bundle) -> None:
    from cxr_edge.bundle import write_bundle

    manifest_path = copy_bundle(binary_model, tmp_path / "m")
    compiled = manifest_path.with_name("compiled_edgetpu.tflite")
    compiled.write_bytes(manifest_path.with_suffix(".tflite").read_bytes())
    manifest = json.loads(manifest_path.read_text())
    write_bundle(manifest_path.with_suffix(".tflite"), {**manifest, "edgetpu_model_file": compiled.name})
    assert load_bundle(manifest_path).manifest["edgetpu_sha256"]  # recorded when the bundle is written
    compiled.write_bytes(compiled.read_bytes()[:-4] + b"XXXX")
    with pytest.raises(BundleError, match="compiled_edgetpu.tflite: sha256 .* does not match"):
        Classifier(load_bundle(manifest_path), edgetpu=True)


def test_edgetpu_without_the_runtime_says_how_to_install_it(tmp_path, binary_model, copy_bundle) -> None:
    manifest_path = copy_bundle(binary_model, tmp_path / "m")
    compiled = manifest_path.with_name("compiled_edgetpu.tflite")
    compiled.write_bytes(manifest_path.with_suffix(".tflite").read_bytes())
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "edgetpu_model_file": compiled.name}))
    try:
        runtime.load_edgetpu_delegate()
    except runtime.RuntimeUnavailable:
        pass
    else:
        pytest.skip("an Edge TPU runtime is installed here")
    with pytest.raises(runtime.RuntimeUnavailable, match="libedgetpu1-std"):
        Classifier(load_bundle(manifest_path), edgetpu=True)
