"""DICOM input: stored pixels reach the model as a radiologist's viewer shows them (docs/dicom.md)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cxr_edge import dicom, gray
from cxr_edge.preprocess import Contract, ImageReadError, load_image

pydicom = pytest.importorskip("pydicom", minversion="3")
from dicom_files import write_dicom  # noqa: E402
from pydicom import uid  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402

#: No resize: the contract's output is the 8-bit display picture itself.
SIZE = (40, 30)
NATIVE = Contract(width=SIZE[0], height=SIZE[1])


def read(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    prepared = load_image(path, NATIVE)
    return prepared.pixels, prepared.info


def write12(path: Path, pixels: np.ndarray, **header: Any) -> Path:
    """A 12-bit MONOCHROME2 (or ``photometric=``) file, the common CR/DX depth."""
    return write_dicom(path, pixels, bits_stored=12, **header)


def ramp(low: int, high: int, dtype: Any = np.uint16) -> np.ndarray:
    """A left-to-right ramp from ``low`` to ``high`` over SIZE."""
    width, height = SIZE
    row = np.linspace(low, high, width).round()
    return np.tile(row, (height, 1)).astype(dtype)


# --- grey levels --------------------------------------------------------------------------


def test_8bit_monochrome2_without_window_is_taken_as_is(tmp_path: Path) -> None:
    pixels = ramp(7, 201, np.uint8)
    out, info = read(write_dicom(tmp_path / "a.dcm", pixels))
    assert np.array_equal(out, pixels)
    assert "note" not in info


def test_12bit_without_window_stretches_robustly_ignoring_a_few_hot_pixels(tmp_path: Path) -> None:
    pixels = ramp(1000, 2000)
    pixels[0, :3] = 4095  # hot pixels: a plain min-max would squash the film into 0..62
    out, _ = read(write12(tmp_path / "a.dcm", pixels))
    film = out[1:]
    assert film.min() <= 3 and film.max() >= 252
    assert np.all(np.diff(film[0].astype(int)) >= 0)


def test_monochrome1_is_inverted_so_bone_is_bright(tmp_path: Path) -> None:
    pixels = ramp(100, 3000)
    mono2, _ = read(write12(tmp_path / "m2.dcm", pixels))
    mono1, _ = read(write12(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1"))
    assert np.array_equal(mono1, 255 - mono2)
    assert mono1[0, 0] == 255 and mono1[0, -1] == 0


def test_window_center_width_maps_the_window_to_black_through_white(tmp_path: Path) -> None:
    pixels = ramp(0, 4095)
    pixels[1, :5] = [1536, 1792, 2048, 2304, 2560]
    out, _ = read(write12(tmp_path / "a.dcm", pixels, WindowCenter=2048, WindowWidth=1024))
    row, values = out[0], pixels[0]
    assert np.all(row[values <= 1536] == 0)
    assert np.all(row[values > 2560] == 255)
    assert np.abs(out[1, :5].astype(int) - [0, 64, 128, 191, 255]).max() <= 1


def test_sigmoid_window_function_is_honoured(tmp_path: Path) -> None:
    pixels = ramp(0, 4095)
    pixels[1, :3] = [0, 2048, 4095]
    out, _ = read(write12(tmp_path / "a.dcm", pixels, WindowCenter=2048, WindowWidth=1024, VOILUTFunction="SIGMOID"))
    low, middle, high = out[1, :3].astype(int)
    assert low <= 1 and abs(middle - 128) <= 1 and high >= 254
    assert 0 < out[0, 12] < 128  # a sigmoid has no hard black below the window like LINEAR


def test_first_of_several_windows_is_used(tmp_path: Path) -> None:
    pixels = ramp(0, 4095)
    first, _ = read(write12(tmp_path / "one.dcm", pixels, WindowCenter=1000, WindowWidth=500))
    both, _ = read(write12(tmp_path / "two.dcm", pixels, WindowCenter=[1000, 3000], WindowWidth=[500, 200]))
    assert np.array_equal(first, both)


def test_monochrome1_window_is_inverted_after_windowing(tmp_path: Path) -> None:
    pixels = ramp(0, 4095)
    window = {"WindowCenter": 2048, "WindowWidth": 1024}
    mono2, _ = read(write12(tmp_path / "m2.dcm", pixels, **window))
    mono1, _ = read(write12(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1", **window))
    assert np.array_equal(mono1, 255 - mono2)


def test_signed_16bit_with_rescale_is_windowed_in_rescaled_units(tmp_path: Path) -> None:
    stored = ramp(-2000, 2000, np.int16)
    header = {"RescaleSlope": 2, "RescaleIntercept": -1000, "WindowCenter": -1000, "WindowWidth": 2000}
    out, _ = read(write_dicom(tmp_path / "a.dcm", stored, bits_stored=16, **header))
    rescaled = stored[0] * 2 - 1000  # the window spans -2000..0 in rescaled units
    assert np.all(out[0][rescaled <= -2000] == 0)
    assert np.all(out[0][rescaled > 0] == 255)
    assert 0 < out[0][np.argmin(np.abs(rescaled + 1000))] < 255


def test_signed_without_window_is_stretched_like_its_unsigned_twin(tmp_path: Path) -> None:
    unsigned = ramp(0, 4000)
    signed = (unsigned.astype(np.int32) - 2000).astype(np.int16)
    a, _ = read(write12(tmp_path / "u.dcm", unsigned))
    b, _ = read(write12(tmp_path / "s.dcm", signed))
    assert np.array_equal(a, b)


def test_voi_lut_sequence_is_applied_before_any_window(tmp_path: Path) -> None:
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 12]
    inverting = np.arange(4095, -1, -1, dtype="<u2")  # the window below would not invert
    lut.add_new("LUTData", "OW", inverting.tobytes())
    pixels = ramp(0, 4095)
    path = write12(tmp_path / "a.dcm", pixels, VOILUTSequence=[lut], WindowCenter=100, WindowWidth=10)
    out, _ = read(path)
    assert out[0, 0] == 255 and out[0, -1] == 0
    assert np.all(np.diff(out[0].astype(int)) <= 0)


def old_display(path: Path) -> np.ndarray:
    """Modality, window or robust stretch on the whole frame in float64, as first written: the spec."""
    ds = pydicom.dcmread(path)
    processing = pydicom.pixels.processing
    values = processing.apply_modality_lut(ds.pixel_array, ds)
    if "WindowCenter" in ds:
        lo, hi = processing.apply_windowing(np.array([-np.inf, np.inf]), ds)
        values = processing.apply_windowing(values, ds)
    else:
        step = max(1, int(np.sqrt(values.size / 1_000_000)))
        lo, hi = np.percentile(values[::step, ::step], dicom.ROBUST_PERCENTILES)
    scaled = (values - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "header",
    [{}, {"RescaleSlope": 0.7, "RescaleIntercept": -1024}, {"WindowCenter": 1900, "WindowWidth": 801}],
    ids=["stretch", "rescale", "window"],
)
def test_pixels_mapped_a_block_at_a_time_equal_the_whole_frame_formula(
    tmp_path: Path, header: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gray, "BLOCK_SIZE", 97)
    pixels = np.random.default_rng(3).integers(0, 4096, SIZE[::-1]).astype(np.uint16)
    path = write12(tmp_path / "a.dcm", pixels, **header)
    assert np.array_equal(read(path)[0], old_display(path))


def test_invalid_window_falls_back_to_the_stretch_with_a_note(tmp_path: Path) -> None:
    pixels = ramp(1000, 2000)
    plain, _ = read(write12(tmp_path / "plain.dcm", pixels))
    out, info = read(write12(tmp_path / "bad.dcm", pixels, WindowCenter=1500, WindowWidth=0))
    assert np.array_equal(out, plain)
    assert "window ignored" in info["note"]


def test_malformed_modality_lut_is_an_error_not_a_crash(tmp_path: Path) -> None:
    broken = Dataset()
    broken.LUTDescriptor = [256, 0, 16]  # no LUT Data
    path = write_dicom(tmp_path / "a.dcm", ramp(0, 255, np.uint8), ModalityLUTSequence=[broken])
    with pytest.raises(ImageReadError, match="damaged or truncated DICOM file"):
        read(path)


def test_rgb_dicom_becomes_luma_grey(tmp_path: Path) -> None:
    grey = ramp(10, 240, np.uint8)
    rgb = np.stack([grey] * 3, axis=-1)
    out, _ = read(write_dicom(tmp_path / "a.dcm", rgb, photometric="RGB", bits_stored=8))
    assert np.array_equal(out, grey)


# --- frames and compression ---------------------------------------------------------------


def test_multi_frame_uses_the_first_frame_and_says_so(tmp_path: Path) -> None:
    first = ramp(0, 255, np.uint8)
    frames = np.stack([first, np.zeros_like(first), np.full_like(first, 9)])
    out, info = read(write_dicom(tmp_path / "a.dcm", frames, bits_stored=8))
    assert np.array_equal(out, frames[0])
    assert info["note"] == "multi-frame: first of 3 frames"


def test_rle_lossless_reads_the_same_as_uncompressed(tmp_path: Path) -> None:
    pixels = ramp(0, 4095)
    plain = write12(tmp_path / "plain.dcm", pixels)
    ds = pydicom.dcmread(plain)
    ds.compress(uid.RLELossless)
    ds.save_as(tmp_path / "rle.dcm")
    assert pydicom.dcmread(tmp_path / "rle.dcm").file_meta.TransferSyntaxUID == uid.RLELossless
    assert np.array_equal(read(tmp_path / "rle.dcm")[0], read(plain)[0])


def test_jpeg2000_lossless_reads_the_same_as_uncompressed(tmp_path: Path) -> None:
    """Runs where the ``dicom-compressed`` extra (pylibjpeg-openjpeg) is installed."""
    if not pydicom.pixels.get_encoder(uid.JPEG2000Lossless).is_available:
        pytest.skip("no JPEG 2000 encoder here: pip install '.[dicom-compressed]'")
    pixels = np.linspace(0, 4095, 64 * 64).reshape(64, 64).astype(np.uint16)  # OpenJPEG wants >= 32 px
    plain = write12(tmp_path / "plain.dcm", pixels)
    ds = pydicom.dcmread(plain)
    ds.compress(uid.JPEG2000Lossless)
    ds.save_as(tmp_path / "j2k.dcm")
    assert np.array_equal(read(tmp_path / "j2k.dcm")[0], read(plain)[0])


def encapsulated(path: Path, frame: bytes, syntax: str, pixels: np.ndarray) -> Path:
    """Rewrite a file written by write_dicom with ``frame`` as compressed pixel data."""
    write_dicom(path, pixels, bits_stored=8)
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path)
    return path


def test_jpeg_baseline_decodes_through_pillow(tmp_path: Path) -> None:
    pixels = ramp(20, 230, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    out, _ = read(encapsulated(tmp_path / "a.dcm", buf.getvalue(), uid.JPEGBaseline8Bit, pixels))
    assert np.abs(out.astype(int) - pixels).max() <= 4


def test_damaged_compressed_data_is_an_error(tmp_path: Path) -> None:
    damaged = b"\xff\xd8damaged\xff\xd9"
    path = encapsulated(tmp_path / "a.dcm", damaged, uid.JPEGBaseline8Bit, ramp(0, 9, np.uint8))
    with pytest.raises(ImageReadError, match=r"cannot decode the DICOM pixel data \(JPEG Baseline"):
        read(path)


def test_syntax_without_an_installed_decoder_names_the_syntax_and_the_package(tmp_path: Path) -> None:
    if pydicom.pixels.get_decoder(uid.JPEGLosslessSV1).is_available:
        pytest.skip("a JPEG Lossless decoder is installed here")
    lossless = b"\xff\xd8lossless\xff\xd9"
    path = encapsulated(tmp_path / "a.dcm", lossless, uid.JPEGLosslessSV1, ramp(0, 9, np.uint8))
    expected = r"JPEG Lossless.*1\.2\.840\.10008\.1\.2\.4\.70.*pylibjpeg-libjpeg.*dicom-compressed"
    with pytest.raises(ImageReadError, match=expected):
        read(path)


def test_syntax_nobody_decodes_is_an_error_naming_it(tmp_path: Path) -> None:
    path = encapsulated(tmp_path / "a.dcm", b"\x00" * 16, uid.MPEG2MPML, ramp(0, 9, np.uint8))
    with pytest.raises(ImageReadError, match=r"no decoder exists for transfer syntax 'MPEG2"):
        read(path)


# --- what is not a readable DICOM image ---------------------------------------------------


def test_structured_report_without_pixel_data_is_an_error(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "sr.dcm", None, sop_class=uid.BasicTextSRStorage)
    with pytest.raises(ImageReadError, match=r"without an image \(Basic Text SR Storage\)"):
        read(path)


def test_truncated_file_is_an_error(tmp_path: Path) -> None:
    path = write12(tmp_path / "a.dcm", ramp(0, 4095))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 500])
    with pytest.raises(ImageReadError, match="pixel data is less than expected"):
        read(path)


def test_file_cut_inside_the_header_is_an_error(tmp_path: Path) -> None:
    path = write12(tmp_path / "a.dcm", ramp(0, 4095), PatientID="X" * 40)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="truncated"):
        read(path)


def test_dcm_suffix_on_a_png_is_not_a_dicom_file(tmp_path: Path) -> None:
    path = tmp_path / "a.dcm"
    Image.fromarray(ramp(0, 9, np.uint8)).save(path, "PNG")
    with pytest.raises(ImageReadError, match="not a DICOM file"):
        read(path)


def test_absurd_image_size_is_refused_before_decoding(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "a.dcm", ramp(0, 9, np.uint8), Rows=60000, Columns=60000)
    with pytest.raises(ImageReadError, match="claims 60000x60000"):
        read(path)


def test_extensionless_file_with_the_dicm_preamble_is_dicom(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "IM000001", ramp(0, 255, np.uint8))
    assert dicom.is_dicom(path)
    assert np.array_equal(read(path)[0], ramp(0, 255, np.uint8))


def test_missing_pydicom_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_dicom(tmp_path / "a.dcm", ramp(0, 255, np.uint8))
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom -> ImportError
    with pytest.raises(ImageReadError, match=r"pydicom is not installed: pip install 'pydicom>=3'"):
        read(path)


def test_jpeg_and_png_never_load_pydicom(tmp_path: Path) -> None:
    Image.fromarray(ramp(0, 255, np.uint8)).save(tmp_path / "a.png")
    code = (
        "import sys; from cxr_edge.preprocess import Contract, load_image; "
        f"load_image({str(tmp_path / 'a.png')!r}, Contract()); print('pydicom' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "False\n"


def test_pydicom_2_asks_for_an_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_dicom(tmp_path / "a.dcm", ramp(0, 255, np.uint8))
    monkeypatch.setitem(sys.modules, "pydicom.pixels", None)  # pydicom 2.x has no pydicom.pixels
    with pytest.raises(ImageReadError, match=r"pydicom 3 or later.*--upgrade"):
        read(path)


# --- header fields for the report ---------------------------------------------------------


def test_header_fields_reach_info_with_an_iso_study_date(tmp_path: Path) -> None:
    header = {
        "PatientID": "P-0042", "StudyDate": "20240131", "Modality": "DX", "ViewPosition": "PA",
        "BodyPartExamined": "CHEST",
    }
    _, info = read(write_dicom(tmp_path / "a.dcm", ramp(0, 255, np.uint8), **header))
    assert info == {
        "patient_id": "P-0042", "study_date": "2024-01-31", "modality": "DX", "view_position": "PA",
        "body_part": "CHEST",
    }
    assert set(info) <= set(dicom.HEADER_COLUMNS)


@pytest.mark.parametrize("view", ["LL", "RL", "LATERAL"])
def test_lateral_view_gets_a_warning(tmp_path: Path, view: str) -> None:
    _, info = read(write_dicom(tmp_path / "a.dcm", ramp(0, 255, np.uint8), ViewPosition=view))
    assert "lateral view" in info["warning"]


def test_body_part_other_than_chest_gets_a_warning(tmp_path: Path) -> None:
    _, info = read(write_dicom(tmp_path / "a.dcm", ramp(0, 255, np.uint8), BodyPartExamined="ABDOMEN"))
    assert "'ABDOMEN' is not chest" in info["warning"]
