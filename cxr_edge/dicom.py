"""DICOM input for the preprocessing contract (optional extra ``dicom``: pydicom).

pydicom is imported only when a DICOM file is met, so JPEG-only users never need it.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from cxr_edge.preprocess import ImageReadError, stretch_to_uint8

DICOM_SUFFIXES = {".dcm", ".dicom"}
#: Optional report columns filled from the DICOM header (empty for other files).
HEADER_COLUMNS = ("patient_id", "study_date", "modality", "view_position", "body_part")
#: Columns left out of the report entirely with ``--no-phi``.
PHI_COLUMNS = ("patient_id", "study_date")
INSTALL_HINT = "pip install 'cxr-edge[dicom]'"


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


def _pydicom():
    try:
        import pydicom
    except ImportError as exc:
        raise ImageReadError(f"DICOM file, but pydicom is not installed: {INSTALL_HINT}") from exc
    return pydicom


def read_gray8(path: Path) -> tuple[Image.Image, int, int, dict[str, str]]:
    """Read a DICOM image as 8-bit grayscale: (image, width, height, header info)."""
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for damaged files
        raise ImageReadError(f"unreadable DICOM: {exc}") from exc
    gray = stretch_to_uint8(arr)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        gray = 255 - gray
    height, width = gray.shape[:2]
    return Image.fromarray(gray), width, height, {}
