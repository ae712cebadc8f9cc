"""The out-of-distribution gate: what is not an upright frontal chest film is not screened.

The gate reads the model's pooled features (its second output): a distance from the
training films' features and an orientation probe, each with a cut-off chosen on
validation films. The shipped bundles carry one; the synthetic pictures of
:mod:`cxr_edge.testing.synthetic` are drawings, far from any real film, and are rejected by design.
Tests that need real films read them from ../shared/data (or $CXR_DATA) and skip without.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cxr_edge.bundle import load_bundle
from cxr_edge.discover import Found
from cxr_edge.engine import OK, REJECTED, Classifier, classify_files
from cxr_edge.gate import UPRIGHT, Gate
from cxr_edge.head import Head
from cxr_edge.testing.synthetic import synthetic_xray

SHIPPED = ("pneumonia", "subtype")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CLASSES = (UPRIGHT, "rotated_90", "rotated_180", "rotated_270", "inverted", "corner_crop", "foreign")


def toy_gate(**overrides) -> Gate:
    """A 2-feature gate: training films around the origin with unit spread; the probe says
    'upright' near the origin and 'rotated_90' towards +x."""
    weights = np.zeros((len(CLASSES), 2))
    weights[1] = [4.0, 0.0]
    values = dict(mean=np.zeros(2), whitening=np.eye(2), probe_mean=np.zeros(2), probe_scale=np.ones(2),
                  probe_weights=weights, probe_bias=np.array([2.0, 0, -9, -9, -9, -9, -9]), probe_classes=CLASSES,
                  max_distance=9.0, min_upright=0.5)
    return Gate(**{**values, **overrides})


def test_the_distance_is_the_squared_mahalanobis_distance_from_the_training_films():
    gate = toy_gate(whitening=np.diag([1.0, 0.5]))
    assert gate.distance(np.array([[3.0, 4.0]])) == pytest.approx([9.0 + 4.0])


def test_a_film_near_the_training_films_passes_and_a_far_one_is_rejected_as_not_a_chest_film():
    near, far = toy_gate().check(np.array([[0.1, 0.0], [0.0, 5.0]]))
    assert near.passed and near.reason == ""
    assert not far.passed
    assert "does not look like a frontal chest X-ray" in far.reason
    assert "distance 25" in far.reason and "cut-off 9" in far.reason and "PA/AP" in far.reason


def test_a_film_the_probe_finds_turned_is_rejected_with_what_to_do():
    (turned,) = toy_gate().check(np.array([[2.5, 0.0]]))  # inside the distance, but the probe says rotated
    assert not turned.passed and turned.likeliest == "rotated_90"
    assert "turned 90 degrees: rotate it upright" in turned.reason and "cut-off 0.50" in turned.reason


def test_a_gate_survives_saving_and_loading(tmp_path):
    gate = toy_gate()
    gate.save(tmp_path / "g.npz")
    record = {"probe_classes": list(CLASSES), "max_distance": 9.0, "min_upright": 0.5}
    loaded, head = Gate.load(tmp_path / "g.npz", record)
    assert head is None  # written without the model's head
    features = np.array([[0.1, 0.2], [2.5, 0.0], [0.0, 5.0]])
    assert [v.reason for v in loaded.check(features)] == [v.reason for v in gate.check(features)]


def test_the_head_recomputes_the_models_output_before_its_rounding():
    head = Head(weights=np.array([[2.0, -1.0]]), bias=np.array([0.5]))
    assert head.outputs(np.array([[1.0, 1.0]]))[0, 0] == pytest.approx(1 / (1 + np.exp(-1.5)))
    three = Head(weights=np.eye(3), bias=np.zeros(3)).outputs(np.array([[1.0, 0.0, 0.0]]))
    assert three.sum() == pytest.approx(1.0) and three[0, 0] > three[0, 1] == pytest.approx(three[0, 2])


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_bundles_rank_score_separates_what_its_8_bit_probability_ties(name):
    """The int8 output has 256 steps; the rank score orders films the probability ties, never decides."""
    bundle = load_bundle(name)
    images = np.stack([synthetic_xray(seed, (224, 224), lesion=True).convert("L") for seed in range(12)])
    decided, _ = Classifier(bundle, screen_all=True).decide(images)
    assert len(np.unique(decided.score)) == 12 and np.abs(decided.score - decided.probability).max() < 0.05


def test_a_gate_whose_arrays_disagree_is_refused(tmp_path):
    toy_gate(whitening=np.eye(3)).save(tmp_path / "g.npz")
    with pytest.raises(ValueError, match="disagree"):
        Gate.load(tmp_path / "g.npz", {"probe_classes": list(CLASSES), "max_distance": 9, "min_upright": 0.5})


def write(img: Image.Image, path: Path) -> Found:
    img.save(path)
    return Found(str(path), path.name)


def foreign_pictures(folder: Path) -> list[Found]:
    """A black and a white square, noise, a text page, and coloured shapes."""
    rng = np.random.default_rng(0)
    page = Image.new("L", (600, 800), 250)
    draw = ImageDraw.Draw(page)
    for y in range(30, 760, 22):
        draw.text((40, y), "Invoice 2026-12 patient clinic total amount signature", fill=20)
    shapes = Image.new("RGB", (500, 400), (30, 120, 200))
    ImageDraw.Draw(shapes).ellipse((50, 50, 300, 300), fill=(240, 200, 20))
    return [
        write(Image.new("L", (300, 300), 0), folder / "black.png"),
        write(Image.new("L", (300, 300), 255), folder / "white.png"),
        write(Image.fromarray(rng.integers(0, 256, (300, 300), dtype=np.uint8)), folder / "noise.png"),
        write(page, folder / "page.png"),
        write(shapes, folder / "shapes.jpg"),
    ]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_bundle_has_a_gate_whose_cut_offs_come_from_validation(name):
    bundle = load_bundle(name)
    record = bundle.manifest["gate"]
    assert bundle.gate is not None and bundle.manifest["schema_version"] >= 2  # schema 2 brought the gate
    assert "validation" in record["rule"] and record["rejection"]["validation"]["validation films"]["rate"] <= 0.01
    assert record["max_distance"] == bundle.gate.max_distance > 0 and 0 < bundle.gate.min_upright < 1


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_bundle_rejects_blank_noise_documents_and_shapes(name, tmp_path):
    results = list(classify_files(foreign_pictures(tmp_path), Classifier(load_bundle(name))))
    assert [r.status for r in results] == [REJECTED] * 5
    for r in results:
        assert r.prediction == "" and r.probability is None and r.error.startswith("not screened:")


@pytest.mark.parametrize("name", SHIPPED)
def test_synthetic_drawings_of_a_chest_are_rejected_by_design_and_screened_with_screen_all(name, tmp_path):
    """The drawings are not films; a researcher can still screen them, and the row says so."""
    paths = [write(synthetic_xray(seed, (320, 300), lesion=bool(seed % 2)), tmp_path / f"s{seed}.png")
             for seed in range(3)]
    bundle = load_bundle(name)
    assert {r.status for r in classify_files(paths, Classifier(bundle))} == {REJECTED}
    screened = list(classify_files(paths, Classifier(bundle, screen_all=True)))
    assert {r.status for r in screened} == {OK}
    assert all(r.prediction in bundle.labels and "SCREENED WITH --screen-all" in r.info["warning"] for r in screened)


def radiograph_of_a_hand(size: tuple[int, int] = (400, 500)) -> Image.Image:
    """A drawn hand radiograph: soft tissue on a dark plate, bright metacarpals and phalanges."""
    img = Image.new("L", size, 20)
    draw = ImageDraw.Draw(img)
    w, h = size
    draw.ellipse((w * 0.2, h * 0.45, w * 0.8, h * 0.95), fill=90)  # palm and wrist soft tissue
    for k, x in enumerate(np.linspace(0.27, 0.73, 5)):
        top = h * (0.08 + 0.06 * abs(k - 2))
        draw.rounded_rectangle((w * (x - 0.05), top, w * (x + 0.05), h * 0.6), radius=12, fill=90)
        for j, (y0, y1) in enumerate(((0.6, 0.78), (0.42, 0.57), (0.28, 0.4), (0.15, 0.26))):
            draw.rounded_rectangle((w * (x - 0.025), max(top, h * y0), w * (x + 0.025), h * y1), radius=6,
                                   fill=210 - 10 * j)
    return img


@pytest.mark.parametrize("name", SHIPPED)
def test_a_drawn_radiograph_of_a_hand_is_rejected_as_not_a_frontal_chest_film(name, tmp_path):
    (result,) = classify_files([write(radiograph_of_a_hand(), tmp_path / "hand.png")], Classifier(load_bundle(name)))
    assert result.status == REJECTED and "does not look like a frontal chest X-ray" in result.error


def real_films(count: int) -> list[Path]:
    root = Path(os.environ.get("CXR_DATA", SHARED / "chest_xray_224"))
    films = sorted((root / "val").glob("*/*.jpeg")) + sorted((root / "train").glob("*/*.jpeg"))[::300]
    if not films:
        pytest.skip("Kermany data not found ($CXR_DATA or ../shared/data)")
    return films[:count]


@pytest.mark.needs_data
@pytest.mark.parametrize("name", SHIPPED)
def test_real_films_pass_and_the_same_films_turned_or_inverted_are_rejected_with_advice(name, tmp_path):
    films = real_films(24)
    upright, wrong = [], []
    for i, film in enumerate(films):
        img = Image.open(film).convert("L")
        upright.append(write(img, tmp_path / f"u{i}.png"))
        wrong += [write(img.transpose(Image.Transpose.ROTATE_90), tmp_path / f"r{i}.png"),
                  write(img.transpose(Image.Transpose.ROTATE_180), tmp_path / f"f{i}.png"),
                  write(Image.fromarray(255 - np.asarray(img)), tmp_path / f"i{i}.png")]
    classifier = Classifier(load_bundle(name))
    passed = [r.status == OK for r in classify_files(upright, classifier)]
    assert sum(passed) >= len(films) - 1
    rejected = [r for r in classify_files(wrong, classifier) if r.status == REJECTED]
    assert len(rejected) >= 0.9 * len(wrong)
    assert any("rotate it upright" in r.error for r in rejected) and any("inverted" in r.error for r in rejected)


@pytest.mark.needs_data
@pytest.mark.parametrize("name", SHIPPED)
def test_real_radiographs_of_other_body_parts_and_other_scans_are_rejected(name):
    folder = SHARED / "not_frontal_chest"
    files = sorted((folder / "other_radiograph").glob("*.png")) + sorted((folder / "cross_sectional").glob("*.png"))
    if not files:
        pytest.skip("../shared/data/not_frontal_chest not found")
    results = list(classify_files([Found(str(f), f.name) for f in files], Classifier(load_bundle(name))))
    assert sum(r.status == REJECTED for r in results) >= 0.9 * len(files)
