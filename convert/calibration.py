"""The representative dataset that int8 quantization measures activation ranges on.

Full-integer quantization fixes every tensor's range from what it sees here, so the set
must look like deployment: real training images of every class (a set of one class is
how binary int8 models collapse to one answer), read through the shared contract, and
covering grey levels 0..255 so the uint8 input keeps scale 1 and zero point 0.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from convert.errors import ConvertError
from cxr_edge.discover import discover, is_hidden
from cxr_edge.preprocess import Contract, ImageReadError, load_image

DEFAULT_SIZE = 300
DEFAULT_SEED = 0


@dataclasses.dataclass
class Calibration:
    """Preprocessed calibration pixels (N, H, W) uint8 and how they were chosen."""

    pixels: np.ndarray
    record: dict[str, Any]

    def batches(self) -> Callable[[], Iterator[list[np.ndarray]]]:
        """The converter's ``representative_dataset``: one float32 (1, H, W, 1) sample at a time."""

        def generate() -> Iterator[list[np.ndarray]]:
            for image in self.pixels:
                yield [image[None, :, :, None].astype(np.float32)]

        return generate


def folder_samples(root: Path) -> list[tuple[str, str]]:
    """(path, class) for every image under ``root``; the class is the first-level subfolder."""
    root = Path(root)
    if not root.is_dir():
        raise ConvertError(f"calibration folder {root} does not exist or is not a folder")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not is_hidden(e.name))
    found_by_class = [(found, cls) for cls in classes for found in discover([root / cls])]
    found_by_class += [(found, "(no class folder)") for found in discover([root], recursive=False)]
    unlisted = [found for found, _ in found_by_class if found.error]
    if unlisted:
        raise ConvertError(f"calibration folder {unlisted[0].display}: {unlisted[0].error}")
    samples = [(found.path, cls) for found, cls in found_by_class]
    if not samples:
        raise ConvertError(f"calibration folder {root} holds no image files")
    return samples


def choose(samples: Sequence[tuple[str, str]], size: int, seed: int) -> list[tuple[str, str]]:
    """Up to ``size`` samples, as even across classes as the classes allow, reproducibly by ``seed``."""
    if size < 1:
        raise ConvertError(f"calibration size must be at least 1, not {size}")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[tuple[str, str]]] = {}
    for sample in sorted(samples):
        by_class.setdefault(sample[1], []).append(sample)
    pools = {cls: [items[i] for i in rng.permutation(len(items))] for cls, items in sorted(by_class.items())}
    chosen: list[tuple[str, str]] = []
    while len(chosen) < size and any(pools.values()):
        for pool in pools.values():  # round robin: the small classes are taken whole first
            if pool and len(chosen) < size:
                chosen.append(pool.pop())
    return chosen


def build(samples: Sequence[tuple[str, str]], contract: Contract, size: int = DEFAULT_SIZE,
          seed: int = DEFAULT_SEED, source: str = "", progress: Callable = iter) -> Calibration:
    """Read the chosen samples through the contract; refuse an empty or unreadable set."""
    if not samples:
        raise ConvertError(f"no calibration images found{f' in {source}' if source else ''}")
    chosen = choose(samples, size, seed)
    pixels, classes, unreadable = [], {}, []
    for path, cls in progress(chosen):
        try:
            pixels.append(load_image(path, contract).pixels)
        except ImageReadError as exc:
            unreadable.append(f"{path}: {exc}")
            continue
        classes[cls] = classes.get(cls, 0) + 1
    if not pixels:
        raise ConvertError(f"none of the {len(chosen)} calibration images could be read: {unreadable[:3]}")
    stack = np.stack(pixels)
    anchored = _anchor_full_range(stack)
    record = {
        "source": source,
        "size": len(pixels),
        "requested_size": size,
        "seed": seed,
        "per_class": classes,
        "unreadable": len(unreadable),
        "range_anchored": anchored,
        "pixel_mean": round(float(stack.mean()), 2),
    }
    return Calibration(stack, record)


def _anchor_full_range(stack: np.ndarray) -> bool:
    """Make the set span 0..255 (one pixel each) if it does not already, so the int8 input
    scale is exactly 1 and zero point 0 (raw pixels need no arithmetic on the device)."""
    if stack.min() == 0 and stack.max() == 255:
        return False
    stack[0, 0, 0] = 0
    stack[0, 0, 1] = 255
    return True
