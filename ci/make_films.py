"""Write N generated chest-film-like pictures for the emulated Pi check (run from the repository root).

    python ci/make_films.py OUT_DIR [N]

Drawn by :mod:`cxr_edge.testing.synthetic`, like ``tests/assets/drawings/``, but with other seeds and sizes
(half with opacities; JPEG quality 75 like the training copies, every third as PNG), so
that the check covers files the sample set does not. No patient, no dataset.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cxr_edge.testing.synthetic import synthetic_xray  # noqa: E402


def write_films(out_dir: Path, count: int) -> list[Path]:
    """``count`` films named ``film_NN_{normal,opacity}.{jpg,png}``, deterministic for a Pillow version."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(count):
        lesion = i % 2 == 1
        size = (480 + 48 * (i % 5), 440 + 40 * (i % 4))
        path = out_dir / f"film_{i:02d}_{'opacity' if lesion else 'normal'}.{'png' if i % 3 == 2 else 'jpg'}"
        options = {"quality": 75} if path.suffix == ".jpg" else {}
        synthetic_xray(100 + i, size, lesion=lesion, n_lesions=1 + i % 3 if lesion else 1).save(path, **options)
        written.append(path)
    return written


if __name__ == "__main__":
    films = write_films(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 12)
    print(f"wrote {len(films)} films in {sys.argv[1]}")
