"""The models shipped in cxr_edge/models: verified, int8 with uint8 I/O, and they classify."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxr_edge.bundle import bundled_models_dir, list_bundled, load_bundle
from cxr_edge.discover import Found
from cxr_edge.engine import OK, Classifier, classify_files
from cxr_edge.testing.synthetic import synthetic_xray

SHIPPED = {"pneumonia": ("NORMAL", "PNEUMONIA"), "subtype": ("NORMAL", "BACTERIAL", "VIRAL")}
MAX_BYTES = 5 * 1024 * 1024


def shipped(name: str):
    return load_bundle(name)  # verifies the sha256 and the input shape


def test_both_models_are_shipped_and_pneumonia_is_the_default():
    assert set(SHIPPED) <= set(list_bundled())
    assert load_bundle(None).name == "pneumonia"


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_is_int8_with_uint8_io_and_a_validation_threshold(name):
    bundle = shipped(name)
    assert bundle.labels == SHIPPED[name] and bundle.negative_label == "NORMAL"
    assert bundle.quantization == "int8" and bundle.input_dtype == "uint8"
    assert bundle.manifest["output"]["dtype"] == "uint8"
    assert "validation" in bundle.manifest["threshold_rule"] and 0.0 < bundle.threshold < 1.0
    assert bundle.model_path.stat().st_size < MAX_BYTES
    classifier = Classifier(bundle)
    details = classifier.interpreter.get_input_details()[0]
    assert details["dtype"] == np.uint8 and tuple(details["quantization"]) == (1.0, 0)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_classifies_generated_films(name, tmp_path):
    bundle = shipped(name)
    paths = []
    for seed, size in enumerate([(224, 224), (640, 512), (300, 420)]):
        path = tmp_path / f"film{seed}.png"
        synthetic_xray(seed, size, lesion=bool(seed % 2)).save(path)
        paths.append(Found(str(path), path.name))
    results = list(classify_files(paths, Classifier(bundle, screen_all=True)))  # drawings: the gate rejects them
    assert [r.status for r in results] == [OK] * 3
    for r in results:
        assert r.prediction in bundle.labels and len(r.label_probs) == len(bundle.labels)
        assert 0.0 <= r.probability <= 1.0


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_has_its_card(name):
    shipped(name)
    card = (bundled_models_dir() / f"{name}.md").read_text()
    assert "10.17632/rscbjbr9sj.2" in card and "never a diagnosis" in card
    assert "python -m train fit" in card and "--seed 42" in card
    manifest = json.loads((bundled_models_dir() / f"{name}.json").read_text())
    assert manifest["training_run"]["seed"] == 42
