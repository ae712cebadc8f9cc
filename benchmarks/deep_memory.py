"""Peak memory of decoding one large deep (16-bit PNG, 12-bit DICOM) film.

Each case runs ``load_image`` in a fresh child process, which reports its own peak RSS
(``VmHWM`` in ``/proc/self/status``, Linux; ``ru_maxrss`` would carry the parent's peak
across ``exec``) after importing the library and after decoding: the difference is what
one decode worker adds, and the Raspberry Pi runs up to four of them at once.

    python benchmarks/deep_memory.py            # 4300x3500 PNG, 3000x3000 DICOMs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dicom_files import write_dicom  # noqa: E402  (the tests' DICOM writer: no patient file is ever used)

_CHILD = """
import json, re, sys
from pathlib import Path
from cxr_edge.preprocess import Contract, load_image
import cxr_edge.dicom, pydicom.pixels  # imported before the baseline, like a warm worker
def hwm():
    return int(re.search(r"VmHWM:\s*(\d+)", Path("/proc/self/status").read_text()).group(1))
base = hwm()
prepared = load_image(sys.argv[1], Contract())
peak = hwm()
print(json.dumps({"base_kib": base, "peak_kib": peak, "pixels": prepared.width * prepared.height}))
"""


def film(width: int, height: int, bits: int) -> np.ndarray:
    """A smooth film-like gradient with noise, using the whole ``bits`` range."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    body = np.sin(x / width * np.pi) * np.sin(y / height * np.pi)
    noisy = body + rng.normal(0, 0.05, (height, width)).astype(np.float32)
    top = 2**bits - 1
    return np.clip(noisy * top, 0, top).astype(np.uint16)


def make_cases(folder: Path) -> dict[str, Path]:
    """The measured files: the sizes the audit named."""
    png = folder / "film16.png"
    Image.fromarray(film(4300, 3500, 16)).save(png)
    dicom12 = film(3000, 3000, 12)
    return {
        "PNG 16-bit 4300x3500": png,
        "DICOM 12-bit 3000x3000, rescale, no window": write_dicom(
            folder / "rescale.dcm", dicom12, bits_stored=12, RescaleSlope=1, RescaleIntercept=-1024
        ),
        "DICOM 12-bit 3000x3000, window": write_dicom(
            folder / "window.dcm", dicom12, bits_stored=12, WindowCenter=2048, WindowWidth=3000
        ),
    }


def measure(path: Path) -> dict[str, int]:
    """Peak RSS (KiB) of a fresh process before and after decoding ``path``, and its pixel count."""
    argv = [sys.executable, "-c", _CHILD, str(path)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in make_cases(Path(tmp)).items():
            rss = measure(path)
            added = (rss["peak_kib"] - rss["base_kib"]) * 1024
            print(
                f"{name}: peak RSS {rss['peak_kib'] / 1024:.0f} MiB "
                f"(after imports {rss['base_kib'] / 1024:.0f} MiB; decode adds {added / 2**20:.0f} MiB, "
                f"{added / rss['pixels']:.1f} bytes/pixel)"
            )


if __name__ == "__main__":
    main()
