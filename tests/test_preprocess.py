"""The preprocessing contract: every format and mode -> 8-bit grey at the model's size."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps, JpegImagePlugin

from conftest import png_header_only
from cxr_edge import decision, gray, runtime
from cxr_edge.bundle import load_bundle
from cxr_edge.preprocess import Contract, ImageReadError, jpeg_round_trip, load_image
from cxr_edge.testing.synthetic import synthetic_xray

SMALL = Contract(width=32, height=24)


def save(array_or_image: np.ndarray | Image.Image, path: Path, **options: object) -> Path:
    img = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    img.save(path, **options)
    return path


def top_bright(width: int = 60, height: int = 40) -> np.ndarray:
    """White top half, black bottom half: shows orientation and the squash resize."""
    pixels = np.zeros((height, width), np.uint8)
    pixels[: height // 2] = 255
    return pixels


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "CMYK", "1", "LA"])
def test_eight_bit_modes_become_the_same_grey_picture(tmp_path: Path, mode: str) -> None:
    grey = Image.fromarray(top_bright())
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = save(grey.convert(mode), tmp_path / f"x{suffix}", **({"quality": 100} if mode == "CMYK" else {}))
    prepared = load_image(path, SMALL)
    assert prepared.pixels.dtype == np.uint8 and prepared.pixels.shape == (24, 32)
    assert (prepared.width, prepared.height) == (60, 40)
    assert prepared.pixels[:10].mean() > 240 and prepared.pixels[-10:].mean() < 15


def test_rgb_uses_luma_weights(tmp_path: Path) -> None:
    red = np.zeros((40, 60, 3), np.uint8)
    red[..., 0] = 255
    prepared = load_image(save(red, tmp_path / "red.png"), SMALL)
    assert np.all(prepared.pixels == 76)  # ITU-R 601-2: 0.299 * 255


def test_transparent_palette_images_are_read(tmp_path: Path) -> None:
    img = Image.fromarray(top_bright()).convert("P")
    img.info["transparency"] = 0
    prepared = load_image(save(img, tmp_path / "p.png", transparency=0), SMALL)
    assert prepared.pixels.shape == (24, 32)


@pytest.mark.parametrize(
    "values, suffix",
    [
        (np.linspace(1000, 4095, 40 * 60).reshape(40, 60).astype(np.uint16), ".png"),  # 12-bit in 16
        (np.linspace(0, 65535, 40 * 60).reshape(40, 60).astype(np.uint16), ".tif"),
        (np.linspace(-5000, 90000, 40 * 60).reshape(40, 60).astype(np.int32), ".tif"),  # mode I
        (np.linspace(-1.0, 3.0, 40 * 60).reshape(40, 60).astype(np.float32), ".tif"),  # mode F
    ],
    ids=["png-16bit", "tiff-16bit", "tiff-int32", "tiff-float"],
)
def test_deep_modes_are_stretched_from_their_own_range(tmp_path: Path, values: np.ndarray, suffix: str) -> None:
    path = save(values, tmp_path / f"deep{suffix}")
    assert Image.open(path).mode in ("I;16", "I", "F")
    pixels = load_image(path, Contract(width=60, height=40)).pixels
    assert pixels.min() <= 1 and pixels.max() >= 254
    assert np.all(np.diff(pixels.astype(int).ravel()) >= 0)  # monotone ramp stays monotone


def old_scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The contract's linear map as first written, the whole array in float64: the spec."""
    arr = np.asarray(values, dtype=np.float64)
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    scaled = (np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def old_stretch(values: np.ndarray) -> np.ndarray:
    """The min-max stretch as first written, on :func:`old_scale`."""
    finite = np.asarray(values, dtype=np.float64)[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, np.uint8)
    return old_scale(values, float(finite.min()), float(finite.max()))


def deep_arrays() -> list[np.ndarray]:
    """Every value of 8 and 16 bits, signed and unsigned, plus wider ints and floats with NaN/inf."""
    rng = np.random.default_rng(7)
    floats = rng.normal(0, 1000, (53, 61))
    floats.flat[:4] = [np.nan, np.inf, -np.inf, 0.5]
    return [
        np.arange(2**16, dtype=np.uint16).reshape(256, 256),
        np.arange(-(2**15), 2**15, dtype=np.int16).reshape(256, 256),
        np.arange(2**16, dtype=np.uint16).reshape(256, 256)[::-1].astype(">u2"),  # Pillow's I;16B
        rng.integers(1000, 4096, (53, 61)).astype(np.uint16),  # 12-bit film: half-way ties in the table
        np.arange(256, dtype=np.uint8),
        rng.integers(-70000, 90000, (53, 61)).astype(np.int32),
        floats,
        floats.astype(np.float32),
    ]


@pytest.mark.parametrize("values", deep_arrays(), ids=lambda a: a.dtype.str)
def test_deep_stretch_gives_the_pixels_of_the_whole_array_float64_formula(
    values: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gray, "BLOCK_SIZE", 1000)  # several blocks, a ragged last one
    assert np.array_equal(gray.stretch_to_uint8(values), old_stretch(values))


@pytest.mark.parametrize("lo, hi", [(-1000.0, 3000.5), (100.0, 101.0), (7.0, 7.0)])
def test_header_windows_map_and_clip_as_the_float64_formula(
    lo: float, hi: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gray, "BLOCK_SIZE", 999)
    for values in deep_arrays():
        assert np.array_equal(gray.scale_to_uint8(values, lo, hi), old_scale(values, lo, hi))


def test_a_constant_deep_image_becomes_black(tmp_path: Path) -> None:
    path = save(np.full((40, 60), 777, np.uint16), tmp_path / "flat.png")
    assert not load_image(path, SMALL).pixels.any()


@pytest.mark.parametrize("suffix", [".bmp", ".tif", ".tiff", ".png", ".jpg"])
def test_every_raster_format_decodes(tmp_path: Path, suffix: str) -> None:
    prepared = load_image(save(top_bright(), tmp_path / f"x{suffix}"), SMALL)
    assert prepared.pixels[:10].mean() > 200 and prepared.pixels[-10:].mean() < 50


def test_squash_resize_keeps_the_whole_image_without_cropping(tmp_path: Path) -> None:
    pixels = np.zeros((100, 400), np.uint8)
    pixels[:, :20] = 255  # a bright strip at the far left would be lost by a centre crop
    prepared = load_image(save(pixels, tmp_path / "wide.png"), Contract(width=40, height=40))
    assert prepared.pixels[:, 0].mean() > 200 and prepared.pixels[:, 2:].max() < 60


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_orientation_is_applied(tmp_path: Path, suffix: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the stored top becomes the right side
    path = save(top_bright(), tmp_path / f"rotated{suffix}", exif=exif.tobytes())
    pixels = load_image(path, Contract(width=40, height=40)).pixels
    assert pixels[:, -10:].mean() > 200 and pixels[:, :10].mean() < 50


def exif_with_a_mistyped_tag() -> bytes:
    """Orientation 6, and an XResolution stored as text: Pillow reads it, then cannot re-write it."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x011A] = (72, 1)
    raw = bytearray(exif.tobytes())
    order = "<" if raw[6:8] == b"II" else ">"
    entry = raw.find(struct.pack(f"{order}H", 0x011A), 8)
    raw[entry + 2 : entry + 4] = struct.pack(f"{order}H", 2)  # type RATIONAL -> ASCII
    return bytes(raw)


def test_a_film_with_damaged_exif_metadata_is_read_upright(tmp_path: Path) -> None:
    path = save(top_bright(), tmp_path / "damaged_exif.jpg", exif=exif_with_a_mistyped_tag())
    with pytest.raises(TypeError):  # what ImageOps.exif_transpose does with it
        ImageOps.exif_transpose(Image.open(path))
    pixels = load_image(path, Contract(width=40, height=40)).pixels
    assert pixels[:, -10:].mean() > 200 and pixels[:, :10].mean() < 50


def test_a_decoder_bug_on_one_file_is_a_damaged_image_not_a_crash(tmp_path: Path, monkeypatch) -> None:
    path = save(top_bright(), tmp_path / "x.jpg")

    def plugin_bug(self: Image.Image) -> None:
        raise RuntimeError("decoder plugin bug")

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", plugin_bug)
    with pytest.raises(ImageReadError, match="damaged image .*RuntimeError: decoder plugin bug"):
        load_image(path, SMALL)


def test_autocontrast_stretches_a_dull_image(tmp_path: Path) -> None:
    dull = np.linspace(100, 140, 40 * 60).reshape(40, 60).astype(np.uint8)
    path = save(dull, tmp_path / "dull.png")
    plain = load_image(path, SMALL).pixels
    stretched = load_image(path, Contract(width=32, height=24, normalize="autocontrast")).pixels
    assert plain.max() - plain.min() <= 41 and stretched.max() - stretched.min() >= 250


def test_a_resized_image_is_re_encoded_as_the_training_copies_were(tmp_path: Path) -> None:
    """Contract 2: squash-resize, then a JPEG round trip at the recorded quality, like the publisher's copies."""
    path = save(synthetic_xray(3, (96, 80)), tmp_path / "film.png")
    contract = Contract(width=48, height=40, reencode_quality=75)
    resized = Image.open(path).convert("L").resize(contract.size, Image.Resampling.BILINEAR)
    expected = np.asarray(jpeg_round_trip(resized, 75))
    assert np.array_equal(load_image(path, contract).pixels, expected)
    assert not np.array_equal(expected, np.asarray(resized))  # the round trip really changes pixels


def test_an_image_already_at_the_model_size_is_not_re_encoded(tmp_path: Path) -> None:
    pixels = np.asarray(synthetic_xray(4, (48, 40)))
    path = save(pixels, tmp_path / "copy.png")
    assert np.array_equal(load_image(path, Contract(width=48, height=40, reencode_quality=75)).pixels, pixels)


@pytest.mark.parametrize("contract", [Contract(), Contract(reencode_quality=75), Contract(64, 48, "autocontrast", False, 50)])
def test_the_contract_survives_its_manifest(contract: Contract) -> None:
    manifest = contract.to_manifest()
    assert manifest["contract"] == ("cxr-gray-squash/1" if contract.reencode_quality is None else "cxr-gray-squash/2")
    assert Contract.from_manifest(manifest) == contract


def test_a_manifest_with_an_unknown_contract_is_refused() -> None:
    with pytest.raises(ValueError, match="cxr-gray-squash/3"):
        Contract.from_manifest({**Contract().to_manifest(), "contract": "cxr-gray-squash/3"})


def test_bad_files_raise_a_readable_error(tmp_path: Path, bad_inputs) -> None:
    expected = bad_inputs(tmp_path)
    for name, message in expected.items():
        with pytest.raises(ImageReadError, match=message):
            load_image(tmp_path / name, SMALL)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # the CLI ignores it; pytest resets filters
@pytest.mark.parametrize(("side", "refused"), [(10_000, False), (11_000, True), (16_000, True)])
def test_the_pixel_limit_is_max_pixels_for_every_format(tmp_path: Path, side: int, refused: bool) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(side, side))  # 100, 121 and 256 megapixels claimed, no pixels
    with pytest.raises(ImageReadError) as error:
        load_image(path, Contract())
    assert ("limit" in str(error.value) or "bomb" in str(error.value)) == refused


def test_a_file_the_system_cannot_read_is_not_called_damaged(tmp_path: Path) -> None:
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(ImageReadError, match="cannot read the file: Too many levels of symbolic links"):
        load_image(loop, Contract())


def test_a_file_deleted_after_listing_is_reported_as_not_found(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="not found"):
        load_image(tmp_path / "gone.png", SMALL)


#: What JPEG draft mode may change: the model's probability, and the mean grey level error.
DRAFT_PROBABILITY_TOLERANCE = 0.02
DRAFT_PIXEL_TOLERANCE = 2.0


@pytest.fixture(scope="module")
def films(tmp_path_factory) -> list[Path]:
    """Full-size JPEG films (about 2000 px, so draft decodes them at 1/4 scale), clear and with lesions."""
    folder = tmp_path_factory.mktemp("films")
    return [
        save(synthetic_xray(seed, (2000, 1700), lesion=lesion), folder / f"film_{seed}.jpg", quality=90)
        for seed, lesion in [(0, False), (1, True), (2, True)]
    ]


@pytest.mark.parametrize("model", ["float_model", "binary_model"])
def test_jpeg_draft_mode_changes_probabilities_by_less_than_the_stated_tolerance(films, request, model) -> None:
    bundle = load_bundle(request.getfixturevalue(model))
    interpreter = runtime.make_interpreter(bundle.model_path, threads=1)
    for path in films:
        exact, draft = (
            load_image(path, dataclasses.replace(bundle.contract, draft=flag)).pixels for flag in (False, True)
        )
        assert not np.array_equal(exact, draft)  # draft mode really was used
        assert np.abs(exact.astype(float) - draft).mean() < DRAFT_PIXEL_TOLERANCE
        p_exact, p_draft = decision.decide(bundle.rule, [runtime.run_batch(interpreter, np.stack([exact, draft]))]).probability
        assert abs(p_exact - p_draft) < DRAFT_PROBABILITY_TOLERANCE
