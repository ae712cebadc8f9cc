"""Build DICOM Part 10 files for the tests (pydicom 3), so no real patient file is ever committed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset


def write_dicom(
    path: Path,
    pixels: np.ndarray | None,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    sop_class: str = uid.DigitalXRayImageStorageForPresentation,
    **header: Any,
) -> Path:
    """Write a conformant file (preamble, file meta) with ``pixels`` (None: no Pixel Data) and ``header``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid.generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if pixels is not None:
        ds.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8)
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
