"""Occlusion heatmaps: geometry, colours, file names, and ``cxr-edge explain`` on real TFLite models.

The committed tiny bundles (tests/assets) were trained to flag synthetic lesion blobs, so
their heatmaps must point at the blob; test_explain_lesion.py trains its own detector to
compare occlusion with Grad-CAM on the same images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from conftest import hotspot
from cxr_edge import decision, explain
from cxr_edge.bundle import DEFAULT_MODEL, list_bundled, load_bundle
from cxr_edge.engine import Classifier
from cxr_edge.preprocess import load_image
from cxr_edge.testing.synthetic import lesion_locations, synthetic_xray
from test_gate import radiograph_of_a_hand

FILMS = Path(__file__).resolve().parents[1] / "sample_data" / "films"
AT_CEILING = FILMS / "PNEUMONIA" / "person434_virus_884.jpeg"  # P(PNEUMONIA) 255/256 with the shipped model


def needs_shipped(name: str = DEFAULT_MODEL) -> None:
    if name not in list_bundled():
        pytest.skip(f"no bundled {name!r} model in this checkout yet")


@pytest.mark.parametrize(
    "size, window, stride, expected",
    [
        (224, 32, 16, list(range(0, 193, 16))),
        (100, 32, 16, [0, 16, 32, 48, 64, 68]),  # the last window is flush with the edge
        (20, 32, 16, [0]),  # window larger than the image: hide it all once
    ],
)
def test_windows_cover_the_whole_side(size, window, stride, expected):
    assert explain.positions(size, window, stride) == expected


def test_colormap_runs_from_dark_to_bright_and_clips():
    colours = explain.colormap(np.array([-1.0, 0.0, 0.5, 1.0, 2.0]))
    assert colours.dtype == np.uint8 and colours.shape == (5, 3)
    assert colours[0].tolist() == colours[1].tolist() == [0, 0, 4]
    assert colours[3].tolist() == colours[4].tolist() == [252, 255, 164]
    brightness = colours.astype(int).sum(axis=1).tolist()[1:4]
    assert brightness == sorted(brightness)


def test_overlay_keeps_the_xray_where_nothing_matters():
    pixels = np.full((10, 10), 100, np.uint8)
    level = np.zeros((10, 10))
    level[2:4, 2:4] = 1.0
    rgb = np.asarray(explain.overlay(pixels, level))
    assert rgb[0, 0].tolist() == [100, 100, 100]
    assert rgb[2, 2].tolist() != [100, 100, 100]


def heatmap(drop: np.ndarray, probability: float = 0.9) -> explain.Heatmap:
    return explain.Heatmap(np.zeros(drop.shape, np.uint8), probability, drop.astype(np.float32), 0.1, 10)


def test_the_largest_drop_is_full_colour_and_small_drops_stay_pale():
    drop = np.zeros((40, 40))
    drop[10:20, 24:32] = 2.0  # log-odds: the odds fall 7-fold when the area is hidden
    heat = heatmap(drop)
    assert heat.level.max() == 1.0
    assert heatmap(drop / 100).level.max() == pytest.approx(0.02 / explain.MIN_SCALE)


def test_a_blank_overlay_says_why_at_any_probability():
    drop = np.full((40, 40), -0.002)  # P = 0.996: hiding any one square leaves the top uint8 score
    drop[5:9, 5:9] = 0.004  # one output step: not evidence
    caption = heatmap(drop, probability=0.996).caption("film.png", "P(PNEUMONIA)")
    assert caption[-1] == explain.FLAT
    assert heatmap(drop, probability=0.02).caption("film.png", "P(PNEUMONIA)")[-1] == explain.FLAT


def test_a_map_with_a_real_drop_has_no_blank_overlay_note():
    drop = np.zeros((40, 40))
    drop[10:20, 24:32] = 0.2
    assert heatmap(drop).flat_note == ""
    assert len(heatmap(drop).caption("film.png", "P(PNEUMONIA)")) == 2


def test_the_caption_names_the_score_of_the_model_that_made_the_map(binary_model, subtype_model):
    drop = np.zeros((40, 40))
    drop[10:20, 24:32] = 0.2
    for model, score in ((binary_model, "P(PNEUMONIA)"), (subtype_model, "P(not NORMAL)")):
        name = load_bundle(model).rule.score_name
        assert name == score  # a subtype model's score is not P(pneumonia) of a binary model
        assert heatmap(drop, probability=0.9).caption("film.png", name)[1].startswith(f"{score} 0.900;")


def test_output_names_are_short_unless_they_would_collide():
    assert explain.output_names(["/data/a/x.png", "y.dcm"]) == ["x.occlusion.png", "y.occlusion.png"]
    collide = explain.output_names(["a/x.png", "b/x.jpg"], kind="gradcam")
    assert collide == ["a__x.gradcam.png", "b__x.gradcam.png"]
    assert explain.output_name("../../etc/x.png") == "etc__x.occlusion.png"  # never outside the folder


def test_heatmaps_of_files_that_differ_only_in_extension_do_not_overwrite_each_other():
    assert explain.output_names(["x.png", "x.jpg", "x-2.png"]) == [
        "x.occlusion.png", "x-2.occlusion.png", "x-2-2.occlusion.png"]
    assert explain.output_names(["a/x.png", "a/x.jpg", "b/x.png"]) == [
        "a__x.occlusion.png", "a__x-2.occlusion.png", "b__x.occlusion.png"]


@pytest.mark.parametrize("model", ["binary_model", "subtype_model"])
def test_occlusion_probability_is_the_classify_probability(request, model):
    classifier = Classifier(load_bundle(request.getfixturevalue(model)), threads=1)
    bundle = classifier.bundle
    pixels = np.asarray(synthetic_xray(3, bundle.contract.size, lesion=True))
    heat = explain.occlusion_map(classifier, pixels, window=56, stride=56, batch=5)
    assert heat.passes == 16 + 1
    assert heat.drop.shape == pixels.shape and np.isfinite(heat.drop).all()
    expected = float(classifier.positive_scores(pixels[None])[0])
    assert heat.probability == pytest.approx(expected)


def test_batch_size_does_not_change_the_map(binary_model):
    classifier = Classifier(load_bundle(binary_model), threads=1)
    pixels = np.asarray(synthetic_xray(5, classifier.bundle.contract.size, lesion=True))
    one = explain.occlusion_map(classifier, pixels, window=64, stride=40, batch=1)
    many = explain.occlusion_map(classifier, pixels, window=64, stride=40, batch=7)
    np.testing.assert_allclose(one.drop, many.drop, atol=1e-5)


@pytest.mark.parametrize("model", ["binary_model", "float_model"])
@pytest.mark.parametrize("seed", range(900_001, 900_013, 2))  # not among the assets' training seeds
def test_committed_lesion_detector_heatmap_points_at_the_lesion(request, model, seed):
    """The tiny bundles were trained to flag lesion blobs: hiding the blob must cost the most."""
    classifier = Classifier(load_bundle(request.getfixturevalue(model)), threads=1)
    size = classifier.bundle.contract.size
    lesion = synthetic_xray(seed, size, lesion=True)
    heat = explain.occlusion_map(classifier, np.asarray(lesion), window=48, stride=16)
    clear = explain.occlusion_map(classifier, np.asarray(synthetic_xray(seed, size)), window=48, stride=16)
    blob = lesion_locations(seed, size)[0]
    x, y = hotspot(heat)
    assert np.hypot(x - blob.x, y - blob.y) < blob.radius + 16
    assert heat.drop.max() > 3 * max(clear.drop.max(), 0.01)


def test_explain_command_writes_one_figure_per_image(cli, binary_model, tmp_path):
    for i in range(2):
        synthetic_xray(i, (300, 260), lesion=True).save(tmp_path / f"in{i}.png")
    (tmp_path / "broken.png").write_bytes(b"nope")
    out = tmp_path / "heat"
    result = cli("explain", tmp_path / "in0.png", tmp_path / "in1.png", tmp_path / "broken.png",
                 "--out-dir", out, "--model", binary_model, "--window", "48", "--stride", "48")
    assert result.exit_code == 1  # one unreadable input
    assert "broken.png" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["in0.occlusion.png", "in1.occlusion.png"]
    assert "in0.png: probability" in result.stdout
    with Image.open(out / "in0.occlusion.png") as img:
        side = 2 * max(load_bundle(binary_model).contract.size)
        assert img.size[0] == 2 * side + 8 and img.mode == "RGB"
        film = np.asarray(img.convert("L"))[:, :side]
    height = round(side * 260 / 300)  # 300x260: the film's proportions, not a square
    assert film[height - 1].min() < 250 and film[height + 1 : height + 20].min() > 250


def test_figure_captions_render_non_latin_names_and_keep_spaces(tmp_path):
    """Pillow's default font drew boxes for 肺 and collapsed spaces."""
    font = explain.caption_font()
    assert isinstance(font, ImageFont.FreeTypeFont) and "DejaVu" in font.getname()[0]
    assert font.getlength("a  b") > font.getlength("a b")
    missing = font.getmask("\ue000")  # a private-use character: no font has it, so its box is drawn
    for letter in "ЖΩüł":
        glyph = font.getmask(letter)
        assert (glyph.size, bytes(glyph)) != (missing.size, bytes(missing)), letter


def test_a_figure_has_a_colour_bar_from_no_drop_to_full_colour():
    bar = np.asarray(explain.colour_bar(50))
    assert bar[0, 0].tolist() == explain.colormap(np.array(0.0)).tolist()
    assert bar[0, -1].tolist() == explain.colormap(np.array(1.0)).tolist()


def test_explain_without_images_says_so(cli, binary_model, tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli("explain", tmp_path / "empty", "--out-dir", tmp_path / "o", "--model", binary_model)
    assert result.exit_code == 1 and "no image files found" in result.stderr


def test_explain_rejects_what_classify_rejects_with_the_same_reason(cli, tmp_path, report_rows):
    """A heatmap and a probability of a hand would read as a finding; classify does not screen it either."""
    needs_shipped()
    hand = tmp_path / "hand.png"
    radiograph_of_a_hand().save(hand)
    assert cli("classify", hand, "--out", tmp_path / "r.csv").exit_code == 1
    (row,) = report_rows(tmp_path / "r.csv")
    out = tmp_path / "heat"
    result = cli("explain", hand, AT_CEILING, "--out-dir", out, "--window", "112", "--stride", "112")
    assert result.exit_code == 1 and row["status"] == "rejected"
    assert f"cxr-edge: rejected: {hand}: {row['error']}" in result.stderr and "hand.png" not in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["person434_virus_884.occlusion.png"]  # the film still gets one


def test_explain_with_screen_all_draws_what_the_gate_rejects_and_says_so(cli, tmp_path):
    needs_shipped()
    hand = tmp_path / "hand.png"
    radiograph_of_a_hand().save(hand)
    result = cli("explain", hand, "--out-dir", tmp_path / "heat", "--window", "112", "--stride", "112",
                 "--screen-all")
    assert result.exit_code == 0, result.stderr
    assert "hand.png: probability" in result.stdout and "SCREENED WITH --screen-all" in result.stdout
    assert (tmp_path / "heat" / "hand.occlusion.png").is_file()


@pytest.mark.parametrize("name", ["pneumonia", "subtype"])
def test_the_evidence_is_the_log_odds_of_the_heads_score_on_the_film_itself(name):
    """What occlusion measures: the float head's score, before any 8-bit rounding, as log-odds."""
    needs_shipped(name)
    classifier = Classifier(load_bundle(name), threads=1)
    bundle = classifier.bundle
    pixels = np.stack([load_image(f, bundle.contract).pixels for f in sorted(FILMS.rglob("*.jpeg"))])
    (features,) = classifier.features(pixels, views=("film",))
    rule = bundle.rule
    score = decision.positive_probability(decision.label_probabilities(bundle.head.outputs(features), rule.task),
                                          rule.negative_index)  # the rank score of the film view
    odds = explain.evidence(classifier, pixels)
    np.testing.assert_allclose(1 / (1 + np.exp(-odds)), score, rtol=1e-5, atol=1e-6)
    assert odds.max() > np.log(255)  # beyond what the 8-bit output's top step (255/256) can say


def test_a_film_at_the_8_bit_ceiling_gets_a_map_that_is_not_blank():
    """26 of 35 flagged films showed "none: score at the ceiling": hiding one area rarely moved their
    probability by a step. The evidence has no ceiling."""
    needs_shipped()
    classifier = Classifier(load_bundle(DEFAULT_MODEL), threads=1)
    pixels = load_image(AT_CEILING, classifier.bundle.contract).pixels
    heat = explain.occlusion_map(classifier, pixels)
    assert heat.probability == 255 / 256 and heat.passes == 170
    assert heat.flat_note == "" and heat.drop.max() > 2 * explain.MIN_SCALE
    assert (heat.level > 0.5).mean() < 0.25  # a few hot areas, not the whole film
