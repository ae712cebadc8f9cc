"""Conversion: a tiny trained Keras model becomes four bundles the edge tool loads and that
agree with it, the int8 one fully integer; bad input is refused with a message.

One module-scoped conversion (a 64-px lesion detector, trained for a few seconds on
:mod:`cxr_edge.testing.synthetic` pictures) feeds most tests, so the whole file stays well under a
minute.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from convert import bundles, calibration, edgetpu, keras_model, ops, parity, pipeline  # noqa: E402
from convert.errors import ConvertError  # noqa: E402
from convert.quantize import VARIANTS  # noqa: E402
from cxr_edge import decision, runtime  # noqa: E402
from cxr_edge.bundle import load_bundle  # noqa: E402
from cxr_edge.discover import discover  # noqa: E402
from cxr_edge.engine import OK, Classifier, classify_files  # noqa: E402
from cxr_edge.review.labelled import Truth  # noqa: E402
from cxr_edge.preprocess import Contract, load_image  # noqa: E402
from cxr_edge.testing.synthetic import synthetic_xray  # noqa: E402

SIZE = 64
LABELS = ("NORMAL", "PNEUMONIA")
CONTRACT = Contract(SIZE, SIZE)


def write_pictures(folder: Path, per_class: int, seed0: int) -> list[tuple[str, Truth]]:
    """NORMAL (no blob) and PNEUMONIA (a blob) pictures drawn at 80 px, so the contract resizes them.

    The two classes share their anatomies (seed i with and without the blob), so the blob is
    the only thing to learn."""
    samples = []
    for k, label in enumerate(LABELS):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = folder / label / f"{label.lower()}_{i}.png"
            synthetic_xray(seed0 + i, (80, 80), lesion=k == 1).save(path)
            samples.append((str(path), Truth(positive=k == 1, label=label)))
    return samples


def tiny_model(shape=(SIZE, SIZE, 1), dtype="float32", outputs: int = 1) -> keras.Model:
    """The contract's model convention: raw 0..255 in, rescaled inside, one sigmoid out."""
    inputs = keras.Input(shape, dtype=dtype)
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(12, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(12, 3, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)  # "is there a blob anywhere"
    return keras.Model(inputs, keras.layers.Dense(outputs, activation="sigmoid" if outputs == 1 else "softmax")(x))


def pixels_of(samples) -> np.ndarray:
    return np.stack([load_image(path, CONTRACT).pixels for path, _ in samples])


def train_lesion_detector(samples) -> keras.Model:
    """Fit the tiny model; such a small net sometimes stays on the 0.5 plateau from an
    unlucky start, so a few fixed seeds are tried until one separates the training set."""
    x = pixels_of(samples)[..., None].astype(np.float32)
    y = np.array([t.positive for _, t in samples], dtype=np.float32)
    for seed in (1, 2, 3):
        keras.utils.set_random_seed(seed)
        model = tiny_model()
        model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
        model.fit(x, y, epochs=30, batch_size=24, verbose=0)
        if np.mean((model.predict(x, verbose=0)[:, 0] >= 0.5) == y) > 0.95:
            return model
    pytest.fail("the tiny lesion detector did not learn from any of the seeds")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict:
    """Train the tiny model, convert it to all four variants with a parity report."""
    work = tmp_path_factory.mktemp("convert")
    train = write_pictures(work / "train", 60, seed0=0)
    val = write_pictures(work / "val", 20, seed0=1000)
    model = train_lesion_detector(train)
    keras_path = work / "tiny.keras"
    model.save(keras_path)
    spec = bundles.ModelSpec(name="tiny", task="binary", labels=LABELS, threshold=0.5, contract=CONTRACT,
                             dataset={"name": "synthetic"}, training_run={"run": "test"})
    job = pipeline.Job(keras_path=keras_path, spec=spec, out=work / "out",
                       calib_samples=[(p, t.label) for p, t in train], calib_source="synthetic train",
                       calib_size=60, parity_samples=val, parity_source="synthetic val")
    lines: list[str] = []
    result = pipeline.run(job, log=lines.append)
    return {"result": result, "model": model, "val": val, "out": work / "out", "log": lines, "spec": spec}


def test_every_variant_is_a_bundle_the_edge_tool_loads_and_classifies(converted) -> None:
    result = converted["result"]
    assert sorted(result.bundles) == sorted(VARIANTS)
    val_folder = Path(converted["val"][0][0]).parents[1]
    for variant, written in result.bundles.items():
        bundle = load_bundle(converted["out"] / f"tiny_{variant}.json")  # verifies sha256 and shape
        assert bundle.quantization == variant and bundle.labels == LABELS and bundle.threshold == 0.5
        assert bundle.contract == CONTRACT and bundle.manifest["dataset"] == {"name": "synthetic"}
        results = list(classify_files(discover([val_folder]), Classifier(bundle, threads=1, screen_all=True)))
        assert len(results) == 40 and {r.status for r in results} == {OK}
        truth = ["PNEUMONIA" if "pneumonia_" in Path(r.path).name else "NORMAL" for r in results]
        assert np.mean([r.prediction == t for r, t in zip(results, truth)]) >= 0.9, variant


def test_the_int8_bundle_classifies_in_cxr_edge_classify(converted, cli, report_rows, tmp_path) -> None:
    val_folder = Path(converted["val"][0][0]).parents[1]
    report = tmp_path / "report.csv"
    result = cli("classify", val_folder, "--out", report, "--model", converted["out"] / "tiny_int8.json", "--screen-all")
    assert result.exit_code == 0, result.stderr
    rows = report_rows(report)
    assert len(rows) == 40 and {r["status"] for r in rows} == {"ok"}
    assert np.mean([Path(r["path"]).name.startswith(r["prediction"].lower() + "_") for r in rows]) >= 0.9


def test_int8_takes_and_gives_uint8_and_every_op_is_integer(converted) -> None:
    bundle = converted["result"].bundles["int8"]
    analysis = ops.analyse(bundle.model_path)
    assert (analysis["input_dtype"], analysis["output_dtype"]) == ("uint8", "uint8")
    assert analysis["non_integer_ops"] == [] and analysis["edgetpu_unsupported_ops"] == []
    assert analysis["input_quantization"] == [1.0, 0.0]  # raw pixels go in untouched
    interpreter = runtime.make_interpreter(bundle.model_path)
    dtypes = {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    assert dtypes <= {"int8", "uint8", "int32"}, dtypes
    assert (bundle.manifest["input"]["dtype"], bundle.manifest["output"]["dtype"]) == ("uint8", "uint8")
    calib = bundle.manifest["calibration"]
    assert calib["size"] == 60 and calib["seed"] == calibration.DEFAULT_SEED
    assert calib["per_class"] == {"NORMAL": 30, "PNEUMONIA": 30}  # every class, evenly


def test_float_variants_keep_float_input(converted) -> None:
    for variant in ("float32", "float16", "dynamic"):
        bundle = converted["result"].bundles[variant]
        details = runtime.input_details(runtime.make_interpreter(bundle.model_path))
        assert np.dtype(details["dtype"]).name == bundle.manifest["input"]["dtype"] == "float32"


def test_keras_and_every_variant_give_the_same_answer_on_the_same_files(converted) -> None:
    """Same file, same shared preprocessing: the Keras model and each TFLite variant agree."""
    pixels = pixels_of(converted["val"])
    reference = converted["model"].predict(pixels[..., None].astype(np.float32), verbose=0)[:, 0]
    # dynamic-range models quantize activations on the fly, so their error is int8's kind
    tolerance = {"float32": 1e-5, "float16": 5e-3, "dynamic": 4e-2, "int8": 4e-2}
    for variant, bundle in converted["result"].bundles.items():
        decided = decision.decide(bundle.rule, [runtime.run_batch(runtime.make_interpreter(bundle.model_path), pixels)])
        np.testing.assert_allclose(decided.probability, reference, atol=tolerance[variant])
        assert decided.labels == decision.decide(bundle.rule, [reference[:, None]]).labels, variant


def test_the_parity_report_has_a_row_per_model_and_no_flags(converted) -> None:
    report = json.loads((converted["out"] / parity.REPORT_JSON).read_text())
    assert list(report["rows"]) == ["keras", *VARIANTS]
    assert report["set"]["images"] == 40 and report["flags"] == []
    for variant in VARIANTS:
        row = report["rows"][variant]
        assert row["agreement"] >= parity.DEFAULT_MIN_AGREEMENT and row["accuracy"] >= 0.9
        assert row["bytes"] == converted["result"].bundles[variant].model_path.stat().st_size
        assert row["ms_per_image"] > 0 and 0 <= row["mean_abs_dprob"] <= row["max_abs_dprob"] < 0.1
    table = (converted["out"] / parity.REPORT_MD).read_text()
    assert all(f"| {name} |" in table for name in report["rows"]) and "AUC" in table


def test_a_collapsed_or_disagreeing_variant_is_flagged(converted) -> None:
    bundle = converted["result"].bundles["int8"]
    data = parity.read_labelled(converted["val"], CONTRACT, "val")
    reference = parity.score(bundle, data, converted["model"].predict(data.pixels[..., None], verbose=0), None)
    constant = parity.score(bundle, data, np.full((len(data.pixels), 1), 0.9), reference)["row"]
    keras_says_pneumonia = np.mean([label == "PNEUMONIA" for label in reference["labels"]])
    assert constant["collapsed"] and constant["agreement"] == pytest.approx(keras_says_pneumonia)
    flags = parity._flags("int8", constant, parity.DEFAULT_MIN_AGREEMENT)
    assert any("below the bound" in f for f in flags) and any("collapsed" in f for f in flags)


def test_conversion_prints_no_tensorflow_noise(converted, capfd) -> None:
    """Re-convert one variant and check the terminal sees only conversion's own lines."""
    job = pipeline.Job(keras_path=Path(converted["out"]).parent / "tiny.keras", spec=converted["spec"],
                       out=converted["out"].parent / "quiet", variants=("float32",))
    lines: list[str] = []
    pipeline.run(job, log=lines.append)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == "", (captured.out[-500:], captured.err[-500:])
    assert (job.out / pipeline.LOG_FILE).exists()  # TensorFlow's messages went here instead
    assert any("wrote" in line for line in lines)


def test_without_the_compiler_one_line_says_so_and_the_int8_model_is_still_written(converted, monkeypatch) -> None:
    if edgetpu.compiler_path() is None:  # the fixture's conversion ran without it
        notes = [line for line in converted["log"] if "Edge TPU" in line and "not compiled" in line]
        assert len(notes) == 1 and "compiler-ready" in notes[0]
    monkeypatch.setenv("PATH", "/nonexistent")
    result = edgetpu.compile_model(converted["result"].bundles["int8"].model_path)
    assert result["compiled"] is False and "not on PATH" in result["reason"]
    assert converted["result"].bundles["int8"].model_path.exists()


def test_a_compiler_on_path_is_run_and_its_mapping_recorded(converted, tmp_path, monkeypatch) -> None:
    fake = tmp_path / "bin" / edgetpu.COMPILER
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\n# fake edgetpu_compiler: copy the model, print the summary lines\n'
                    'while [ "$1" != "${1#-}" ]; do [ "$1" = --out_dir ] && { out="$2"; shift; }; shift; done\n'
                    'cp "$1" "$out/$(basename "$1" .tflite)_edgetpu.tflite"\n'
                    'echo "Edge TPU Compiler version 16.0.384591198"\n'
                    'echo "Number of operations that will run on Edge TPU: 7"\n'
                    'echo "Number of operations that will run on CPU: 0"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    model = tmp_path / "m_int8.tflite"
    model.write_bytes(converted["result"].bundles["int8"].model_path.read_bytes())
    result = edgetpu.compile_model(model)
    assert result["compiled"] and (result["ops_on_edgetpu"], result["ops_on_cpu"]) == (7, 0)
    assert (tmp_path / result["file"]).exists() and result["compiler_version"] == "16.0.384591198"


# --- refusals -------------------------------------------------------------------------------------------


def test_a_missing_model_file_is_refused(tmp_path) -> None:
    with pytest.raises(ConvertError, match="no such file"):
        keras_model.load_keras(tmp_path / "absent.keras")


@pytest.mark.parametrize("name, content, message", [
    ("model.h5", b"HDF", "not a Keras model file"),
    ("model.keras", b"not a zip at all", "cannot be loaded as a Keras model"),
])
def test_a_non_keras_file_is_refused(tmp_path, name, content, message) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ConvertError, match=message):
        keras_model.load_keras(tmp_path / name)


@pytest.mark.parametrize("shape, dtype, message", [
    ((SIZE, SIZE, 3), "float32", "not \\(batch, height, width, 1\\)"),
    ((SIZE, SIZE, 1), "uint8", "float32"),
])
def test_a_model_the_contract_cannot_feed_is_refused(tmp_path, shape, dtype, message) -> None:
    path = tmp_path / "bad.keras"
    tiny_model(shape, dtype).save(path)
    with pytest.raises(ConvertError, match=message):
        keras_model.load_keras(path)


def test_a_model_whose_size_or_outputs_disagree_with_the_spec_is_refused(tmp_path) -> None:
    path = tmp_path / "three.keras"
    tiny_model(outputs=3).save(path)
    spec = bundles.ModelSpec(name="t", task="binary", labels=LABELS, threshold=0.5, contract=CONTRACT)
    with pytest.raises(ConvertError, match="needs 1 output"):
        pipeline.check_spec(keras_model.load_keras(path), spec, path)
    other = bundles.ModelSpec(name="t", task="binary", labels=LABELS, threshold=0.5, contract=Contract(96, 96))
    with pytest.raises(ConvertError, match="contract says 96x96"):
        pipeline.check_spec(keras_model.load_keras(path), other, path)


def test_an_empty_calibration_folder_is_refused(tmp_path) -> None:
    (tmp_path / "calib" / "NORMAL").mkdir(parents=True)
    with pytest.raises(ConvertError, match="no image files"):
        calibration.folder_samples(tmp_path / "calib")
    with pytest.raises(ConvertError, match="no calibration images"):
        calibration.build([], CONTRACT, source="an empty set")


def test_calibration_that_cannot_be_read_is_refused(tmp_path) -> None:
    (tmp_path / "NORMAL").mkdir()
    (tmp_path / "NORMAL" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ConvertError, match="could be read"):
        calibration.build(calibration.folder_samples(tmp_path), CONTRACT)


def test_a_calibration_folder_that_cannot_be_listed_is_refused_with_the_reason(tmp_path, monkeypatch) -> None:
    (tmp_path / "NORMAL" / "locked").mkdir(parents=True)
    (tmp_path / "NORMAL" / "a.png").write_bytes(b"")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(ConvertError, match="locked/: cannot list this folder: Permission denied"):
        calibration.folder_samples(tmp_path)


def test_unknown_variants_are_refused(converted) -> None:
    job = pipeline.Job(keras_path=Path(converted["out"]).parent / "tiny.keras", spec=converted["spec"],
                       out=converted["out"].parent / "x", variants=("int4",))
    with pytest.raises(ConvertError, match="unknown variant"):
        pipeline.run(job, log=lambda _: None)
