"""Write the synthetic drawings of ``tests/assets/drawings/`` (run from the repository root).

    python tests/assets/drawings/make_samples.py

Every picture is drawn by :mod:`cxr_edge.testing.synthetic`: radiograph-like, from no patient and
no dataset. ``synthetic_normal_*`` have clear lung fields; ``synthetic_opacity_*`` carry
bright blurred blobs in the lungs. They show that the tool reads several formats (JPEG,
PNG, 8- and 16-bit, grey and RGB, different sizes); they are NOT test cases for the
model's accuracy. The output is deterministic for a given Pillow version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cxr_edge.testing.synthetic import synthetic_xray

HERE = Path(__file__).resolve().parent

# (file name, seed, size (w, h), lesion, how to store it)
SAMPLES = [
    ("synthetic_normal_01.jpg", 1, (640, 560), False, "L"),
    ("synthetic_normal_02.png", 2, (512, 512), False, "L"),
    ("synthetic_normal_03_rgb.jpg", 3, (720, 600), False, "RGB"),
    ("synthetic_normal_04_16bit.png", 4, (600, 520), False, "I;16"),
    ("synthetic_opacity_01.jpg", 11, (640, 560), True, "L"),
    ("synthetic_opacity_02.png", 12, (512, 512), True, "L"),
    ("synthetic_opacity_03.jpg", 13, (800, 640), True, "L"),
    ("synthetic_opacity_04_16bit.png", 14, (600, 520), True, "I;16"),
]


def as_mode(gray: Image.Image, mode: str) -> Image.Image:
    """Store the grey picture as ``mode``; 16-bit uses a 12-bit detector-like range."""
    if mode == "I;16":
        return Image.fromarray((np.asarray(gray, dtype=np.uint16) * 16 + 200).astype(np.uint16))
    return gray.convert(mode)


def main(out_dir: Path = HERE) -> None:
    for name, seed, size, lesion, mode in SAMPLES:
        img = as_mode(synthetic_xray(seed, size, lesion=lesion, n_lesions=2 if lesion else 1), mode)
        options = {"quality": 90} if name.endswith(".jpg") else {}
        img.save(out_dir / name, **options)
        print(f"wrote {name} ({img.mode} {img.width}x{img.height})")


if __name__ == "__main__":
    main()
