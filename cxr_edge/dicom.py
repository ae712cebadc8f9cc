"""DICOM input for the preprocessing contract (optional extra ``dicom``: pydicom 3).

pydicom is imported only when a DICOM file is met, so JPEG-only users never need it.

Stored pixels become 8-bit grey the way a radiologist's viewer shows them (docs/dicom.md):

1. first frame only (a multi-frame file gets a note);
2. Modality LUT: the Modality LUT Sequence or Rescale Slope/Intercept;
3. VOI: the first VOI LUT of the VOI LUT Sequence, else the first Window Center/Width
   pair (LINEAR, LINEAR_EXACT or SIGMOID), its output range mapped to 0..255;
   without either (or with an invalid one, noted), 8-bit unsigned unrescaled pixels are
   kept as they are (they are already display values, like a PNG) and anything else is
   stretched from its 0.5th to its 99.5th percentile, so a few hot or dead pixels and
   collimator edges do not flatten the picture;
4. MONOCHROME1 is inverted so that bone is bright, as in the training films.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from cxr_edge.gray import MAX_PIXELS, ImageReadError, map_blocks, scale_to_uint8, to_gray8

DICOM_SUFFIXES = {".dcm", ".dicom"}
#: Optional report columns filled from the DICOM header (empty for other files).
HEADER_COLUMNS = ("patient_id", "study_date", "modality", "view_position", "body_part")
#: Columns left out of the report entirely with ``--no-phi``.
PHI_COLUMNS = ("patient_id", "study_date")
INSTALL_HINT = "pip install 'pydicom>=3' (the 'dicom' extra: pip install '.[edge,dicom]' in the checkout)"
COMPRESSED_HINT = (
    "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle "
    "(the 'dicom-compressed' extra: pip install '.[edge,dicom-compressed]' in the checkout)"
)
#: Percentiles of the stored values stretched to 0..255 when the file has no window.
ROBUST_PERCENTILES = (0.5, 99.5)
#: The percentiles are taken on a regular subsample of at most about this many pixels.
_PERCENTILE_SAMPLES = 1_000_000
_DEFER_SIZE = "1 MB"
_HEADER_KEYWORDS = {
    "patient_id": "PatientID",
    "study_date": "StudyDate",
    "modality": "Modality",
    "view_position": "ViewPosition",
    "body_part": "BodyPartExamined",
}
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL"})
CHEST_WORDS = ("CHEST", "THORAX", "LUNG")
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT")
#: Which package of the ``dicom-compressed`` extra decodes a family of transfer syntaxes.
_DECODER_PACKAGES = {
    "JPEG 2000": "pylibjpeg-openjpeg",  # also names HTJ2K ("High-Throughput JPEG 2000")
    "JPEG": "pylibjpeg-libjpeg",  # baseline, extended, lossless, JPEG-LS
}


def is_dicom(path: Path) -> bool:
    """A ``.dcm``/``.dicom`` suffix, or the ``DICM`` magic at byte 128 (extension-less files)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _pydicom() -> Any:
    """Import pydicom 3 or explain how to install it (2.x lacks ``pydicom.pixels``)."""
    try:
        import pydicom
    except ImportError as exc:
        raise ImageReadError(f"DICOM file, but pydicom is not installed: {INSTALL_HINT}") from exc
    try:
        import pydicom.pixels  # noqa: F401  (pydicom >= 3)
    except ImportError as exc:
        raise ImageReadError(
            f"DICOM needs pydicom 3 or later, this is pydicom {pydicom.__version__}: {INSTALL_HINT} --upgrade"
        ) from exc
    return pydicom


def read_gray8(path: Path) -> tuple[Image.Image, int, int, dict[str, str]]:
    """Read a DICOM image as 8-bit grayscale: (image, width, height, header info).

    ``info`` holds the :data:`HEADER_COLUMNS` present in the header, ``note`` (multi-frame,
    window ignored) and ``warning`` (lateral view, body part other than chest).
    """
    pydicom = _pydicom()
    try:
        return _read(pydicom, path)
    except (ImageReadError, FileNotFoundError, PermissionError):
        raise  # load_image words the last two
    except pydicom.errors.InvalidDicomError as exc:
        raise ImageReadError("not a DICOM file (no 'DICM' marker after the 128-byte preamble)") from exc
    except Exception as exc:  # pydicom raises many types for damaged files, some lazily on access
        raise ImageReadError(f"damaged or truncated DICOM file: {exc}") from exc


def _read(pydicom: Any, path: Path) -> tuple[Image.Image, int, int, dict[str, str]]:
    # Values over 1 MB (the pixel data) are read when first used: once, and never for a
    # file refused on its header (no image, no decoder, absurd size).
    ds = pydicom.dcmread(path, defer_size=_DEFER_SIZE)
    _check_image(pydicom, ds)
    notes = []
    frames = pydicom.pixels.utils.get_nr_frames(ds, warn=False)
    if frames > 1:
        notes.append(f"multi-frame: first of {frames} frames")
    gray, voi_note = _display_gray8(pydicom, _first_frame(pydicom, ds), ds)
    notes += [voi_note] if voi_note else []
    info = header_info(ds)
    for key, texts in (("note", notes), ("warning", view_warnings(info))):
        if texts:
            info[key] = "; ".join(texts)
    return Image.fromarray(gray), int(ds.Columns), int(ds.Rows), info


def _check_image(pydicom: Any, ds: Any) -> None:
    """Refuse what is not a decodable grey or colour picture, with the reason."""
    if "PixelData" not in ds:
        sop = ds.get("SOPClassUID")
        if sop is None or "Image" in sop.name:
            raise ImageReadError(f"DICOM {sop.name if sop else 'file'} without pixel data (truncated file?)")
        raise ImageReadError(f"DICOM file without an image ({sop.name}): no pixel data")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in _MONOCHROME + _COLOUR:
        raise ImageReadError(f"unsupported DICOM Photometric Interpretation {photometric!r}")
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if not 0 < rows * columns <= MAX_PIXELS:
        raise ImageReadError(f"DICOM image claims {columns}x{rows} pixels (allowed: 1 to {MAX_PIXELS:,})")
    _check_decoder(pydicom, ds.file_meta.get("TransferSyntaxUID"))


def _check_decoder(pydicom: Any, syntax: Any) -> None:
    """Name the transfer syntax and the package that would decode it when none can."""
    if syntax is None:
        raise ImageReadError("DICOM file without a Transfer Syntax UID in its file meta header")
    label = f"transfer syntax {syntax.name!r} ({syntax})"
    try:
        decoder = pydicom.pixels.get_decoder(syntax)
    except NotImplementedError as exc:
        raise ImageReadError(f"no decoder exists for {label} in pydicom {pydicom.__version__}") from exc
    if not decoder.is_available:
        raise ImageReadError(f"cannot decode {label} without {_package_for(syntax)}: {COMPRESSED_HINT}")


def _package_for(syntax: Any) -> str:
    """The package of the ``dicom-compressed`` extra that decodes ``syntax``."""
    return next((p for family, p in _DECODER_PACKAGES.items() if family in syntax.name), "pylibjpeg")


def _first_frame(pydicom: Any, ds: Any) -> np.ndarray:
    """Decode only the first frame (a multi-frame file is not decoded whole)."""
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        return pydicom.pixels.pixel_array(ds, index=0)
    except Exception as exc:  # decoders raise many types for damaged data
        reason = " ".join(str(exc).split())  # decoders list every plugin's failure on its own line
        if syntax.is_compressed and "pylibjpeg" not in pydicom.pixels.get_decoder(syntax).available_plugins:
            # e.g. a 12-bit JPEG: Pillow reads only 8-bit ones
            reason += f" ({_package_for(syntax)} may decode it: {COMPRESSED_HINT})"
        raise ImageReadError(f"cannot decode the DICOM pixel data ({syntax.name}): {reason}") from exc


def _display_gray8(pydicom: Any, frame: np.ndarray, ds: Any) -> tuple[np.ndarray, str]:
    """Stored values -> 8-bit display grey (steps 2 to 4 of the module doc), plus a note."""
    photometric = ds.PhotometricInterpretation
    if photometric not in _MONOCHROME:
        if frame.dtype != np.uint8:
            raise ImageReadError(f"{photometric} DICOM with {ds.BitsStored}-bit samples is not supported")
        return np.asarray(to_gray8(Image.fromarray(frame))), ""  # the contract's luma, as for colour JPEGs

    def modality(stored: np.ndarray) -> np.ndarray:  # elementwise, so it can run a block at a time
        return pydicom.pixels.apply_modality_lut(stored, ds)

    gray, note = _apply_voi(pydicom, frame, modality, ds)
    if gray is None:
        gray = _as_displayed(frame, modality, ds)
    if gray is None:
        gray = _robust_stretch(frame, modality)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return gray, note


Mapping = Callable[[np.ndarray], np.ndarray]


def _apply_voi(pydicom: Any, frame: np.ndarray, modality: Mapping, ds: Any) -> tuple[np.ndarray | None, str]:
    """The first VOI LUT or window mapped to 0..255; None when absent or invalid (noted).

    Modality and VOI run a block of pixels at a time (:func:`map_blocks`): on the whole
    frame their float64 temporaries took over 30 bytes per pixel.
    """
    processing = pydicom.pixels.processing
    try:
        if ds.get("VOILUTSequence"):
            item = ds.VOILUTSequence[0]
            first, entries = int(item.LUTDescriptor[1]), int(item.LUTDescriptor[0]) or 2**16
            # The LUT's own entries bound its output (some descriptors overstate their bit depth).
            table = processing.apply_voi(np.arange(first, first + entries), ds)
            lo, hi = float(table.min()), float(table.max())
            voi = lambda values: processing.apply_voi(np.rint(values).astype(np.int64), ds)  # noqa: E731
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            # pydicom maps the window onto the stored range; probing with -inf/+inf gives that range.
            lo, hi = map(float, processing.apply_windowing(np.array([-np.inf, np.inf]), ds))
            voi = lambda values: processing.apply_windowing(values, ds)  # noqa: E731
        else:
            return None, ""
        return map_blocks(frame, lambda stored: scale_to_uint8(voi(modality(stored)), lo, hi)), ""
    except (ValueError, TypeError, IndexError, AttributeError, NotImplementedError) as exc:
        return None, f"VOI LUT/window ignored ({exc})"


def _as_displayed(frame: np.ndarray, modality: Mapping, ds: Any) -> np.ndarray | None:
    """8-bit unsigned values untouched by the Modality LUT are shown as they are; else None."""
    if int(ds.get("BitsStored", 16)) > 8 or int(ds.get("PixelRepresentation", 0)) != 0:
        return None
    values = modality(frame)  # whole: 8-bit stored values come from small films
    if values.min() >= 0 and values.max() <= 255 and np.all(values == np.rint(values)):
        return values.astype(np.uint8)
    return None


def _robust_stretch(frame: np.ndarray, modality: Mapping) -> np.ndarray:
    """Stretch the 0.5th..99.5th percentile to 0..255, measured on a regular subsample."""
    step = max(1, int(np.sqrt(frame.size / _PERCENTILE_SAMPLES)))
    lo, hi = np.percentile(modality(frame[::step, ::step]), ROBUST_PERCENTILES)
    return map_blocks(frame, lambda stored: scale_to_uint8(modality(stored), float(lo), float(hi)))


def header_info(ds: Any) -> dict[str, str]:
    """The :data:`HEADER_COLUMNS` present and non-empty in the header (dates as YYYY-MM-DD)."""
    info = {}
    for column, keyword in _HEADER_KEYWORDS.items():
        text = str(ds.get(keyword) or "").strip()
        if text:
            info[column] = text
    date = info.get("study_date", "")
    if len(date) == 8 and date.isdigit():
        info["study_date"] = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    return info


def view_warnings(info: dict[str, str]) -> list[str]:
    """Warnings for views the model was not trained on (it only knows frontal chest films)."""
    found = []
    view = info.get("view_position", "").upper()
    if view in LATERAL_VIEWS:
        found.append(f"lateral view ({view}): the model was trained on frontal chest films only")
    body = info.get("body_part", "")
    if body and not any(word in body.upper() for word in CHEST_WORDS):
        found.append(f"body part {body!r} is not chest: the model was trained on chest films only")
    return found
