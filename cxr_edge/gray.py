"""Grey levels: any decoded image or pixel array -> 8-bit grayscale, and the limits on what is decoded.

The leaf under :mod:`cxr_edge.preprocess` (the contract) and :mod:`cxr_edge.dicom` (DICOM
display): both turn pixels into 0..255 the same way, so neither needs the other for it.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
from PIL import Image

#: Refuse images above this many pixels (a header claiming 50,000 x 50,000 is a bomb).
MAX_PIXELS = 120_000_000
# Pillow's own bomb check at the same limit, set once: it raises from twice the limit and
# only warns between (``_open_raster`` refuses those itself). A per-call warnings filter
# would race between the decoding threads.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Damaged EXIF blocks make Pillow's TIFF tag parser warn per tag; the pixels are fine and
# the warnings would only interleave with the progress bar.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")


class ImageReadError(Exception):
    """An input file could not be turned into model input; the message says why."""


def to_gray8(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit grayscale.

    8-bit modes (1, L, LA, P, RGB, RGBA, CMYK, YCbCr, ...) use Pillow's ITU-R 601-2 luma
    and ignore alpha. Deeper modes (I;16*, I, F) are scaled linearly from their own
    min..max to 0..255 because their stored range varies by detector (10, 12, 14, 16 bit);
    a constant image becomes black.
    """
    if img.mode == "L":
        return img
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        return Image.fromarray(stretch_to_uint8(np.asarray(img)))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("L")


def stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map an array linearly from its finite min..max to 0..255 uint8 (constant -> 0)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "biu":  # always finite: no float copy just to find the range
        if arr.size == 0:
            return np.zeros(arr.shape, np.uint8)
        return scale_to_uint8(arr, float(arr.min()), float(arr.max()))
    finite = np.isfinite(arr)
    if not finite.any():
        return np.zeros(arr.shape, np.uint8)
    lo, hi = arr.min(where=finite, initial=np.inf), arr.max(where=finite, initial=-np.inf)
    return scale_to_uint8(arr, float(lo), float(hi))


def scale_to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``lo..hi`` linearly to 0..255 uint8, clipping outside (``hi <= lo`` -> 0).

    Shared by the min-max stretch above and DICOM windowing, whose bounds come from the
    header rather than from the pixels. Integers of up to 16 bits go through a table of
    every possible value; anything else is mapped a block at a time. Both give the pixels
    of :func:`_scale` on the whole array without its float64 temporaries (about 45 bytes
    per pixel, enough to get a Raspberry Pi's workers killed on a 15-megapixel film).
    """
    arr = np.asarray(values)
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    if arr.dtype.kind in "iu" and arr.dtype.itemsize <= 2:
        first = int(np.iinfo(arr.dtype).min)
        table = _scale(np.arange(first, np.iinfo(arr.dtype).max + 1), lo, hi)
        return map_blocks(arr, lambda block: table[block.astype(np.intp) - first])
    return map_blocks(arr, lambda block: _scale(block, lo, hi))


def _scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The contract's formula, in float64: linear, rounded half to even, clipped (``hi > lo``)."""
    arr = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=lo, posinf=hi, neginf=lo)
    return np.clip(np.rint((arr - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


#: Elements per block in :func:`map_blocks`: 2 MiB of float64 per temporary.
BLOCK_SIZE = 1 << 18


def map_blocks(values: np.ndarray, to_uint8: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply an elementwise ``to_uint8`` to :data:`BLOCK_SIZE` elements at a time.

    The result equals ``to_uint8(values)``, but its temporaries exist for one block only.
    """
    flat = np.asarray(values).reshape(-1)
    out = np.empty(flat.shape, np.uint8)
    for start in range(0, flat.size, BLOCK_SIZE):
        out[start : start + BLOCK_SIZE] = to_uint8(flat[start : start + BLOCK_SIZE])
    return out.reshape(np.shape(values))
