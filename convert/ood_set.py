"""The out-of-distribution set: inputs a frontal-chest-film screener must refuse, made here.

Nothing in it is a dataset image: *foreign* pictures are drawn (blank, noise, text pages,
coloured shapes) or taken from what installed packages ship (scikit-image's sample photos
and microscopy, pydicom's CT, MR and ultrasound test files); *made-wrong* films are chest
films the caller gives, turned sideways or upside down, inverted, or cut to a corner. Each
image is grey pixels at the contract's size, made through :mod:`cxr_edge.preprocess` as a
device would make them, with the category it stands for.

Two disjoint halves (``part="fit"`` and ``part="check"``, by seed and by source file) let
the gate learn from one and be measured on the other.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cxr_edge.preprocess import Contract, prepare_gray, to_gray8

PARTS = ("fit", "check")
FOREIGN = ("blank", "noise", "document", "shapes", "photo", "cross_sectional")
MADE_WRONG = ("rotated_90", "rotated_180", "rotated_270", "inverted", "corner_crop")
CROSS_SECTIONAL_MODALITIES = ("CT", "MR", "US", "NM", "PT")
WORDS = ("patient", "report", "invoice", "date", "signature", "total", "clinic", "page", "name", "amount")


@dataclasses.dataclass(frozen=True)
class OodImage:
    category: str
    source: str
    pixels: np.ndarray  # uint8 (H, W) at the contract's size


def _seeds(part: str, n: int) -> range:
    """Seeds for one half: ``fit`` takes even numbers, ``check`` odd, so the halves never share one."""
    offset = PARTS.index(part)
    return range(offset, 2 * n, 2)


def _size(contract: Contract) -> tuple[int, int]:
    return contract.width * 2, contract.height * 2


def _blank(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    level = rng.choice([0, 255, rng.integers(1, 255)])
    noise = rng.normal(0, rng.uniform(0, 4), size[::-1])
    return Image.fromarray(np.clip(level + noise, 0, 255).astype(np.uint8))


def _noise(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    img = Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8))
    return img.filter(ImageFilter.GaussianBlur(float(rng.choice([0, 1, 3, 8]))))


def _document(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    img = Image.new("L", size, int(rng.integers(215, 256)))
    draw = ImageDraw.Draw(img)
    y = int(rng.integers(10, 40))
    while y < size[1] - 20:
        line = " ".join(rng.choice(WORDS, int(rng.integers(2, 9))))
        draw.text((int(rng.integers(8, 40)), y), line, fill=int(rng.integers(0, 60)))
        y += int(rng.integers(12, 30))
    return img


def _shapes(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    img = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 12))):
        box = sorted(rng.integers(0, size[0], 2)), sorted(rng.integers(0, size[1], 2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((box[0][0], box[1][0], box[0][1], box[1][1]), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return img


DRAWN: dict[str, Callable[[np.random.Generator, tuple[int, int]], Image.Image]] = {
    "blank": _blank, "noise": _noise, "document": _document, "shapes": _shapes,
}


def _package_files(part: str) -> Iterator[tuple[str, str]]:
    """(category, path) of the pictures installed packages ship, alternating between the halves."""
    found: list[tuple[str, str]] = []
    try:
        import skimage.data

        folder = os.path.dirname(skimage.data.__file__)
        found += [("photo", p) for p in sorted(glob.glob(os.path.join(folder, "*.png")) + glob.glob(
            os.path.join(folder, "*.jpg")))]
    except ImportError:
        pass
    try:
        import pydicom.data  # its own folder only: get_testdata_files() would try to download more

        folder = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files")
        found += [("cross_sectional", p) for p in sorted(glob.glob(os.path.join(folder, "*.dcm")))]
    except ImportError:
        pass
    offset = PARTS.index(part)
    yield from found[offset::2]


def _read_package_file(path: str) -> Image.Image | None:
    """A package's picture as an 8-bit grey image, or None when it is not a CT/MR/US/NM picture of
    at least 32 px (pydicom's test files include dose grids, 3-pixel patterns and broken files)."""
    if path.endswith(".dcm"):
        img = _dicom_picture(path)
    else:
        with Image.open(path) as opened:
            opened.load()
            img = opened.copy()
    return img if img is not None and min(img.size) >= 32 else None


def _dicom_picture(path: str) -> Image.Image | None:
    import logging
    import warnings

    import pydicom

    from cxr_edge import dicom

    logging.getLogger("pydicom").setLevel(logging.ERROR)  # its test files warn on purpose
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if pydicom.dcmread(path, stop_before_pixels=True).get("Modality") not in CROSS_SECTIONAL_MODALITIES:
                return None
            return dicom.read_gray8(path)[0]
        except Exception:  # noqa: BLE001 - some of pydicom's test files are broken on purpose
            return None


def foreign(contract: Contract, part: str, per_kind: int = 12) -> list[OodImage]:
    """Drawn pictures (``per_kind`` of each) and the packages' pictures of one half."""
    out = []
    for kind, draw in DRAWN.items():
        for seed in _seeds(part, per_kind):
            img = draw(np.random.default_rng(seed), _size(contract))
            out.append(OodImage(kind, f"{kind}:{seed}", prepare_gray(to_gray8(img), contract)))
    for kind, path in _package_files(part):
        img = _read_package_file(path)
        if img is not None:
            out.append(OodImage(kind, os.path.basename(path), prepare_gray(to_gray8(img), contract)))
    return out


def made_wrong(films: np.ndarray, contract: Contract, sources: Sequence[str] = ()) -> list[OodImage]:
    """Each film (uint8 (N, H, W) at the contract's size) turned, inverted and cut to a corner."""
    out = []
    for i, film in enumerate(films):
        source = sources[i] if i < len(sources) else f"film {i}"
        gray = Image.fromarray(film)
        variants = {
            "rotated_90": gray.transpose(Image.Transpose.ROTATE_90),
            "rotated_180": gray.transpose(Image.Transpose.ROTATE_180),
            "rotated_270": gray.transpose(Image.Transpose.ROTATE_270),
            "inverted": Image.fromarray(255 - film),
            "corner_crop": _corner(gray, i),
        }
        out += [OodImage(kind, source, prepare_gray(img, contract)) for kind, img in variants.items()]
    return out


def _corner(gray: Image.Image, i: int) -> Image.Image:
    """One quarter of the film (which one turns with ``i``), enlarged back to full size."""
    w, h = gray.size
    left, top = (i % 2) * w // 2, (i // 2 % 2) * h // 2
    return gray.crop((left, top, left + w // 2, top + h // 2)).resize(gray.size, Image.Resampling.BILINEAR)
