"""Time and peak memory of ``cxr-edge adapt`` on about 300 films, most of them full size.

A labelled folder is made of links: the ``fullres/`` originals (its ``manifest.csv`` gives each
one's class) and, to reach ``--films``, 224-px films of ``chest_xray_224/train``, alternating classes.
Patients come from the Kermany file names. The command runs in a child process as a clinic would
run it; its wall time and peak RSS (``VmHWM`` of the child, read by ``/usr/bin/time -v`` when present,
else ``ru_maxrss`` of the children) are printed as a markdown row. The verdict does not matter here
(the shipped model was trained on these films, so it is usually "not adapted", exit 5).

    python benchmarks/adapt_cost.py --data ../shared/data [--model pneumonia] [--films 300]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("NORMAL", "PNEUMONIA")


def labelled_folder(data: Path, folder: Path, films: int) -> dict[str, int]:
    """Link the full-size originals, then 224-px films, into ``folder/<class>/``; films per kind."""
    for label in CLASSES:
        (folder / label).mkdir(parents=True, exist_ok=True)
    with open(data / "fullres" / "manifest.csv", newline="") as fh:
        originals = [(row["label"], data / "fullres" / row["label"] / row["filename"]) for row in csv.DictReader(fh)]
    originals = [(label, path) for label, path in originals if path.is_file()][:films]
    small = {label: sorted((data / "chest_xray_224" / "train" / label).glob("*.jpeg")) for label in CLASSES}
    taken = {p.name for _, p in originals}
    extra = []
    for i in range(films - len(originals)):
        label = CLASSES[i % 2]
        extra.append((label, next(p for p in small[label] if p.name not in taken)))
        taken.add(extra[-1][1].name)
    for label, path in originals + extra:
        os.symlink(path.resolve(), folder / label / path.name)
    return {"full size": len(originals), "224 px": len(extra)}


def measure(folder: Path, model: str, out: Path) -> dict[str, float | int]:
    command = [sys.executable, "-m", "cxr_edge", "adapt", str(folder), "--model", model, "--out", str(out), "-q"]
    timer = Path("/usr/bin/time").is_file()
    start = time.perf_counter()
    done = subprocess.run((["/usr/bin/time", "-v"] if timer else []) + command, capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1, 5):
        raise SystemExit(f"adapt failed ({done.returncode}): {done.stderr[-2000:]}")
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    peak_kib = int(found.group(1)) if found else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"exit": done.returncode, "seconds": seconds, "peak_mib": peak_kib / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("CXR_DATA", ROOT.parent / "shared" / "data")),
                        help="the shared data folder (with fullres/ and chest_xray_224/)")
    parser.add_argument("--model", default="pneumonia")
    parser.add_argument("--films", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="adapt-cost-") as tmp:
        kinds = labelled_folder(args.data, Path(tmp) / "site", args.films)
        row = measure(Path(tmp) / "site", args.model, Path(tmp) / "out")
    films = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    print("| model | films | exit | wall s | peak RSS MiB | CPUs |\n|---|---|---|---|---|---|")
    print(f"| {args.model} | {films} | {row['exit']} | {row['seconds']:.1f} | {row['peak_mib']:.0f} | {os.cpu_count()} |")


if __name__ == "__main__":
    main()
