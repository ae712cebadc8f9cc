"""The preprocessing contract: the one place that turns an image file into model input.

Training (``train/``), conversion (``convert/``) and the edge tool all read images
through :func:`load_image`, so a model never sees pixels prepared differently from the
ones it was trained on (no train/serve skew).

Contract ``cxr-gray-squash/2`` (``/1`` is the same without step 5):

1. decode the file (JPEG, PNG 8/16 bit, BMP, TIFF; DICOM through :mod:`cxr_edge.dicom`);
   large JPEGs are decoded in Pillow's draft mode at the smallest DCT scale that is still
   at least the model size (both sides), which is several times faster on full-size films;
2. apply the EXIF orientation;
3. convert to 8-bit grayscale (:func:`to_gray8`);
4. squash-resize the whole image to the model size with a bilinear filter (no crop: the
   Kermany 224-px copies were made that way, and bilinear is the filter that matches
   them best, see ``../shared/DATA.md``);
5. if step 4 resized, re-encode the result as JPEG at ``reencode_quality`` (75): the
   publisher made the training copies by squash-resizing and saving at quality 75, and a
   model fine-tuned on them reads a clean downscaled film differently (pneumonia
   probabilities fell by 0.09 on full-resolution originals; ``docs/pretrained.md``).
   Images already at the model size, such as the copies themselves, are left alone;
6. optionally stretch intensities (``normalize="autocontrast"``): the 1st..99th
   percentile of grey levels is mapped to 0..255, which removes exposure and contrast
   differences between X-ray machines.

The parameters live in the model bundle's manifest (:class:`Contract`), so a device
always prepares images the way its model expects.
"""

from __future__ import annotations

import dataclasses
import io
import stat
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageOps

from cxr_edge import dicom
from cxr_edge.gray import MAX_PIXELS, ImageReadError, to_gray8

CONTRACT_V1 = "cxr-gray-squash/1"  # no re-encoding after the resize
CONTRACT_ID = "cxr-gray-squash/2"
NORMALIZE_CHOICES = ("none", "autocontrast")
AUTOCONTRAST_CUTOFF = 1  # percent of darkest and brightest pixels clipped
_RESAMPLE = Image.Resampling.BILINEAR


@dataclasses.dataclass(frozen=True)
class Contract:
    """Parameters of the preprocessing contract, as recorded in a model manifest."""

    width: int = 224
    height: int = 224
    normalize: str = "none"
    draft: bool = True
    reencode_quality: int | None = None  # JPEG quality after a resize; None: contract /1

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE_CHOICES:
            raise ValueError(f"normalize must be one of {NORMALIZE_CHOICES}, not {self.normalize!r}")
        if self.reencode_quality is not None and not 1 <= self.reencode_quality <= 95:
            raise ValueError(f"reencode_quality must be 1..95 or None, not {self.reencode_quality!r}")
        if self.width < 8 or self.height < 8:
            raise ValueError(f"model input {self.width}x{self.height} is too small")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as Pillow wants it."""
        return (self.width, self.height)

    def to_manifest(self) -> dict[str, Any]:
        """Version 1 without re-encoding, so bundles made before version 2 keep their manifests."""
        manifest = {
            "contract": CONTRACT_V1 if self.reencode_quality is None else CONTRACT_ID,
            "width": self.width,
            "height": self.height,
            "resample": "bilinear",
            "grayscale": "luma-601 (8-bit modes); min-max of stored range (16-bit, int, float)",
            "normalize": self.normalize,
            "draft": self.draft,
        }
        if self.reencode_quality is not None:
            manifest["reencode_jpeg_quality"] = self.reencode_quality
        return manifest

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> "Contract":
        version = data.get("contract")
        if version not in (CONTRACT_V1, CONTRACT_ID):
            raise ValueError(
                f"model expects preprocessing contract {version!r}; "
                f"this cxr-edge implements {CONTRACT_V1!r} and {CONTRACT_ID!r}"
            )
        return cls(
            width=int(data["width"]),
            height=int(data["height"]),
            normalize=data.get("normalize", "none"),
            draft=bool(data.get("draft", True)),
            reencode_quality=int(data["reencode_jpeg_quality"]) if version == CONTRACT_ID else None,
        )


@dataclasses.dataclass
class Prepared:
    """Model-ready pixels plus what the report wants to know about the original."""

    pixels: np.ndarray  # uint8, shape (height, width)
    width: int  # original width in pixels
    height: int  # original height in pixels
    info: dict[str, str] = dataclasses.field(default_factory=dict)  # e.g. DICOM header fields, notes


def prepare_gray(gray: Image.Image, contract: Contract) -> np.ndarray:
    """Steps 4 to 6 of the contract on an 8-bit grayscale image: resize, re-encode, normalise."""
    if gray.size != contract.size:
        gray = gray.resize(contract.size, _RESAMPLE)
        if contract.reencode_quality is not None:
            gray = jpeg_round_trip(gray, contract.reencode_quality)
    if contract.normalize == "autocontrast":
        gray = ImageOps.autocontrast(gray, cutoff=AUTOCONTRAST_CUTOFF)
    return np.asarray(gray, dtype=np.uint8)


def jpeg_round_trip(gray: Image.Image, quality: int) -> Image.Image:
    """Encode as JPEG and decode again: the compression texture the training copies carry."""
    buffer = io.BytesIO()
    gray.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("L")


def _open_raster(path: Path, contract: Contract) -> tuple[Image.Image, int, int]:
    """Open a raster file, decode it (in draft mode if allowed) and orient it."""
    img = Image.open(path)
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise ImageReadError(f"image claims {width}x{height} pixels, over the {MAX_PIXELS:,} limit")
    if contract.draft and img.format == "JPEG":
        # Draft keeps both sides >= the requested size, so the squash-resize still
        # downsamples; rotated EXIF orientations swap the sides, hence the max.
        side = max(contract.width, contract.height)
        img.draft("L", (side, side))
    img.load()
    return _orient(img), width, height


# EXIF orientation (tag 0x0112) -> the transpose that displays the image upright.
_ORIENTATION_TAG = 0x0112
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orient(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (step 2) to the pixels only.

    Not ``ImageOps.exif_transpose``: it also re-writes the EXIF block, and Pillow fails
    to serialise damaged metadata (TypeError, struct.error) on films whose pixels are fine.
    """
    method = _UPRIGHT.get(img.getexif().get(_ORIENTATION_TAG))
    return img if method is None else img.transpose(method)


def _check_regular_file(path: Path) -> None:
    """Refuse folders, empty files and pipes/devices (opening a FIFO would block forever)."""
    st = path.stat()
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError("is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError("not a regular file (a pipe, socket or device)")
    if st.st_size == 0:
        raise ImageReadError("empty file (0 bytes)")


def load_image(path: str | Path, contract: Contract) -> Prepared:
    """Read ``path`` and return model-ready pixels, or raise :class:`ImageReadError`."""
    path = Path(path)
    try:
        _check_regular_file(path)
        if dicom.is_dicom(path):
            gray, width, height, info = dicom.read_gray8(path)
            return Prepared(prepare_gray(gray, contract), width, height, info)
        img, width, height = _open_raster(path, contract)
        return Prepared(prepare_gray(to_gray8(img), contract), width, height)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"refused as a decompression bomb: {exc}") from exc
    except FileNotFoundError as exc:
        raise ImageReadError("file not found (moved or deleted while running?)") from exc
    except PermissionError as exc:
        raise ImageReadError("permission denied") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageReadError("not a readable image (unknown or damaged format)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # the system's error, not the decoder's
            raise ImageReadError(f"cannot read the file: {exc.strerror}") from exc
        raise ImageReadError(f"damaged or truncated image: {exc}") from exc
    except MemoryError:
        raise
    except Exception as exc:  # a decoder plugin's own error on damaged data: one bad file, not the run
        raise ImageReadError(f"damaged image ({type(exc).__name__}: {exc})") from exc


def half_and_back(pixels: np.ndarray) -> np.ndarray:
    """Each (H, W) uint8 film of a batch down-sampled to half (area average) and back (bilinear).

    A softer copy: the publisher's normals are sharper than its pneumonia films, and a model
    that also reads sharpness leans on it less when it averages over this view
    (``docs/shift-validation.md``, candidate C).
    """
    out = np.empty_like(pixels)
    for i, film in enumerate(pixels):
        image = Image.fromarray(film)
        small = image.resize((film.shape[1] // 2, film.shape[0] // 2), Image.Resampling.BOX)
        out[i] = np.asarray(small.resize(image.size, _RESAMPLE))
    return out


#: Test-time views a bundle may average over (manifest ``test_time_views``); "film" is the film itself.
VIEWS = {"film": lambda pixels: pixels, "half_and_back": half_and_back}


def checked_views(views: Sequence[str]) -> tuple[str, ...]:
    """``views`` as a tuple, if a device can make them: the film itself first (the gate reads its
    features), then only names of :data:`VIEWS`; ValueError otherwise."""
    views = tuple(views)
    if not views or views[0] != "film" or any(v not in VIEWS for v in views):
        raise ValueError(f"test_time_views {list(views)}: must start with 'film' and name only {sorted(VIEWS)}")
    return views


def view(name: str, pixels: np.ndarray) -> np.ndarray:
    """A batch (N, H, W) of prepared pixels as the test-time view ``name`` shows it."""
    return VIEWS[name](pixels)
