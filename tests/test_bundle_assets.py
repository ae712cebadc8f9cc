"""The committed tiny bundles (tests/assets, made by make_assets.py through ``convert``) are
what the edge tests rely on: loadable, int8 with uint8 I/O and integer ops, and real
classifiers of their synthetic task, not random weights. No TensorFlow needed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from convert import ops
from cxr_edge import decision, runtime
from cxr_edge.bundle import BundleError, load_bundle
from cxr_edge.preprocess import prepare_gray
from cxr_edge.testing.synthetic import synthetic_xray

ASSETS = Path(__file__).parent / "assets"
INT8 = ["tiny_binary_int8", "tiny_subtype_int8"]
FRESH_SEEDS = range(900_000, 900_030)  # never drawn by make_assets.py


def decide(bundle, pictures) -> list[str]:
    """The bundle's labels for pictures prepared by the shared contract, as the edge does."""
    pixels = np.stack([prepare_gray(p, bundle.contract) for p in pictures])
    interpreter = runtime.make_interpreter(bundle.model_path, threads=1)
    return list(decision.decide(bundle.rule, [runtime.run_batch(interpreter, pixels)]).labels)


@pytest.mark.parametrize("name", [*INT8, "tiny_binary_float32"])
def test_each_asset_loads_and_says_what_it_is(name):
    bundle = load_bundle(ASSETS / f"{name}.json")
    assert bundle.input_shape == (1, 224, 224, 1) and bundle.contract.size == (224, 224)
    assert bundle.quantization == name.rsplit("_", 1)[1]
    assert "synthetic" in bundle.manifest["dataset"]["name"] and "NOT chest X-rays" in bundle.manifest["dataset"]["name"]
    assert bundle.manifest["training_run"]["script"] == "tests/assets/make_assets.py"
    assert 0 < bundle.threshold < 1 and bundle.manifest["threshold_rule"]


@pytest.mark.parametrize("name", INT8)
def test_int8_assets_take_raw_uint8_pixels_and_every_op_is_integer(name):
    bundle = load_bundle(ASSETS / f"{name}.json")
    analysis = ops.analyse(bundle.model_path)
    assert (analysis["input_dtype"], analysis["output_dtype"]) == ("uint8", "uint8")
    assert analysis["input_quantization"] == [1.0, 0.0]
    assert analysis["non_integer_ops"] == [] and ops.edgetpu_ready(analysis)
    assert bundle.manifest["calibration"]["per_class"]  # calibrated on every class
    assert len(bundle.manifest["calibration"]["per_class"]) == len(bundle.labels)


@pytest.mark.parametrize("name", ["tiny_binary_int8", "tiny_binary_float32"])
def test_binary_assets_flag_the_lesion_on_pictures_they_never_saw(name):
    bundle = load_bundle(ASSETS / f"{name}.json")
    healthy = decide(bundle, [synthetic_xray(s, (300, 260)) for s in FRESH_SEEDS])
    lesion = decide(bundle, [synthetic_xray(s, (300, 260), lesion=True) for s in FRESH_SEEDS])
    assert healthy.count("NORMAL") >= 27 and lesion.count("PNEUMONIA") >= 27


def test_subtype_asset_tells_no_one_and_three_blobs_apart():
    bundle = load_bundle(ASSETS / "tiny_subtype_int8.json")
    assert bundle.task == "multiclass" and bundle.labels == ("NORMAL", "BACTERIAL", "VIRAL")
    pictures = {"NORMAL": dict(lesion=False), "BACTERIAL": dict(lesion=True, n_lesions=1),
                "VIRAL": dict(lesion=True, n_lesions=3)}
    correct = [decide(bundle, [synthetic_xray(s, (256, 256), **kw) for s in FRESH_SEEDS]).count(label)
               for label, kw in pictures.items()]
    assert sum(correct) >= 0.8 * 3 * len(FRESH_SEEDS), correct


def test_a_damaged_asset_copy_is_refused_naming_the_file(tmp_path):
    for f in ASSETS.glob("tiny_binary_int8.*"):
        shutil.copy(f, tmp_path / f.name)
    model = tmp_path / "tiny_binary_int8.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="tiny_binary_int8.tflite: sha256 .* does not match"):
        load_bundle(tmp_path / "tiny_binary_int8.json")


@pytest.mark.parametrize(
    "manifest, message",
    [
        ([], "a JSON object expected, not list"),
        ({"schema_version": 1, "task": "binary", "labels": []}, "at least two"),
        ({"schema_version": 1, "task": "binary", "labels": ["NORMAL", "PNEUMONIA"], "preprocessing": 7},
         "AttributeError"),
    ],
)
def test_a_malformed_manifest_is_refused_naming_the_file(tmp_path, manifest, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"bad.json: invalid manifest .*{message}"):
        load_bundle(path)
