"""The head as a first-class part: its own file and manifest record (schema 5), and what decides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxr_edge.bundle import HEAD_SCHEMA_VERSION, SCHEMA_VERSION, BundleError, bundled_models_dir, load_bundle, write_bundle
from cxr_edge.decision import HEAD, OUTPUT
from cxr_edge.engine import Classifier
from cxr_edge.head import HEAD_SUFFIX, Head
from cxr_edge.testing.synthetic import synthetic_xray

WRITTEN = ("model_file", "sha256", "edgetpu_sha256", "schema_version")


def test_a_head_round_trips_through_its_arrays_and_its_own_file(tmp_path):
    head = Head(weights=np.array([[2.0, -1.0]]), bias=np.array([0.5]))
    again = Head.from_arrays(head.to_arrays())
    head.save(tmp_path / "h.head.npz")
    loaded = Head.load(tmp_path / "h.head.npz")
    for other in (again, loaded):
        np.testing.assert_array_equal(other.weights, head.weights)
        np.testing.assert_array_equal(other.bias, head.bias)
    np.savez(tmp_path / "empty.npz", other=np.zeros(2))
    with pytest.raises(ValueError, match="head_weights"):
        Head.load(tmp_path / "empty.npz")


def with_head(tmp_path: Path, copy_bundle, **fields) -> tuple[Path, Head]:
    """The shipped pneumonia bundle rewritten with its head in its own file, and ``fields`` in the manifest."""
    manifest_path = copy_bundle(bundled_models_dir() / "pneumonia.json", tmp_path / "b")
    head = load_bundle(manifest_path).head
    head_path = manifest_path.with_name("pneumonia" + HEAD_SUFFIX)
    head.save(head_path)
    manifest = {k: v for k, v in json.loads(manifest_path.read_text()).items() if k not in WRITTEN}
    out = write_bundle(manifest_path.with_suffix(".tflite"), {**manifest, "head": {"file": head_path.name}, **fields})
    return out, head


def test_a_head_record_is_written_with_its_sha256_and_schema_5_and_loads(tmp_path, copy_bundle):
    manifest_path, head = with_head(tmp_path, copy_bundle, decided_by=HEAD)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["schema_version"] == HEAD_SCHEMA_VERSION == 5
    assert len(manifest["head"]["sha256"]) == 64 and manifest["decided_by"] == HEAD
    bundle = load_bundle(manifest_path)
    assert bundle.decided_by == bundle.rule.decided_by == HEAD
    np.testing.assert_array_equal(bundle.head.weights, head.weights)


def test_a_plain_bundle_keeps_its_schema(tmp_path, copy_bundle):
    manifest_path = copy_bundle(bundled_models_dir() / "pneumonia.json", tmp_path / "b")
    manifest = {k: v for k, v in json.loads(manifest_path.read_text()).items() if k not in WRITTEN}
    written = json.loads(write_bundle(manifest_path.with_suffix(".tflite"), manifest).read_text())
    assert written["schema_version"] == SCHEMA_VERSION < HEAD_SCHEMA_VERSION
    assert "head" not in written and "decided_by" not in written
    assert load_bundle(manifest_path).decided_by == OUTPUT


def test_a_damaged_head_file_is_refused_naming_it(tmp_path, copy_bundle):
    manifest_path, _ = with_head(tmp_path, copy_bundle)
    head_path = manifest_path.with_name("pneumonia" + HEAD_SUFFIX)
    head_path.write_bytes(head_path.read_bytes()[:-1] + b"x")
    with pytest.raises(BundleError, match=rf"{head_path.name}: sha256 .* does not match"):
        load_bundle(manifest_path)
    head_path.unlink()
    with pytest.raises(BundleError, match=rf"{head_path.name}: head file named by pneumonia.json is missing"):
        load_bundle(manifest_path)


@pytest.mark.parametrize("fields", [{"head": {"file": "pneumonia.head.npz", "sha256": "0" * 64}},
                                    {"decided_by": HEAD}])
def test_a_manifest_below_schema_5_with_a_head_record_or_a_deciding_head_is_refused(tmp_path, copy_bundle, fields):
    manifest_path = copy_bundle(bundled_models_dir() / "pneumonia.json", tmp_path / "b")
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, **fields}))
    with pytest.raises(BundleError, match="needs schema_version 5"):
        load_bundle(manifest_path)


def test_decided_by_an_unknown_part_or_a_missing_head_is_refused(tmp_path, copy_bundle, binary_model):
    manifest_path = copy_bundle(binary_model, tmp_path / "b")
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "schema_version": 5, "decided_by": "gate"}))
    with pytest.raises(BundleError, match="decided_by 'gate'"):
        load_bundle(manifest_path)
    manifest_path.write_text(json.dumps({**manifest, "schema_version": 5, "decided_by": HEAD}))
    with pytest.raises(BundleError, match="decided_by 'head' but the bundle carries no head"):
        load_bundle(manifest_path)


def test_a_bundle_decided_by_its_head_screens_by_the_head_s_probability(tmp_path, copy_bundle):
    """No 8-bit ties: the head's float probability decides and is the written probability."""
    by_output = load_bundle("pneumonia")
    by_head = load_bundle(with_head(tmp_path, copy_bundle, decided_by=HEAD)[0])
    films = np.stack([synthetic_xray(seed, (224, 224), lesion=True).convert("L") for seed in range(8)])
    output, _ = Classifier(by_output, screen_all=True).decide(films)
    head, _ = Classifier(by_head, screen_all=True).decide(films)
    np.testing.assert_array_equal(head.score, output.score)
    np.testing.assert_allclose(head.probability, head.score, atol=1e-6)
    assert len(np.unique(head.probability)) == 8 > len(np.unique(output.probability))


def test_the_features_are_read_per_view_the_film_first(binary_model):
    shipped = Classifier(load_bundle("pneumonia"))
    films = np.stack([synthetic_xray(seed, (224, 224)).convert("L") for seed in range(2)])
    features = shipped.features(films)
    assert len(features) == len(shipped.bundle.views) == 2 and features[0].shape[0] == 2
    assert not np.array_equal(features[0], features[1])
    assert Classifier(load_bundle(binary_model)).features(films) is None
