"""What a backbone would cost on the device before anyone trains it: int8 size and interpreter time.

``python benchmarks/backbone_cost.py [ARCH ...]`` builds each architecture untrained (random
weights cost the same as trained ones), converts it to int8 with uint8 I/O exactly as
``python -m convert`` does (calibrated on random grey levels), and times one invoke per image
at batch 1 on one interpreter thread (one x86 core, as issue 26's budget reads), rounds
interleaved so machine noise hits all alike. Ratios are to the first architecture, the
shipped ``transfer:EfficientNetLite0:11``; the budget is 2.0 and 5 MB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from gate_cost import WARMUP, per_call_ms

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # train/ and convert/ are not installed

from convert.quantize import convert_model  # noqa: E402
from cxr_edge.runtime import make_interpreter  # noqa: E402

DEFAULT_ARCHS = ("transfer:EfficientNetLite0:11", "transfer:EfficientNetLite2:15", "transfer:EfficientNetLite1:15",
                 "transfer:EfficientNetLite0")


def int8_bytes(arch: str, size: int, log: Path) -> bytes:
    """The architecture, untrained, as full-int8 TFLite with uint8 input."""
    from train import models

    model = models.build(arch, (size, size), 1, [0.0])
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(8):
            yield [rng.uniform(0, 255, (1, size, size, 1)).astype(np.float32)]

    return convert_model(model, ["int8"], representative, log)["int8"]


def measure(archs: list[str], rounds: int, repeats: int, size: int = 224) -> list[tuple[str, float, float]]:
    """(arch, MB, median ms per invoke) for each architecture."""
    interpreters, sizes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            blob = int8_bytes(arch, size, Path(tmp) / "convert.log")
            path = Path(tmp) / f"{len(sizes)}.tflite"
            path.write_bytes(blob)
            sizes[arch] = len(blob) / 1e6
            interpreter = make_interpreter(str(path), threads=1)
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                                   np.random.default_rng(1).integers(0, 256, (1, size, size, 1), dtype=np.uint8))
            per_call_ms(interpreter.invoke, WARMUP)
            interpreters[arch] = interpreter
        times: dict[str, list[float]] = {arch: [] for arch in archs}
        for _ in range(rounds):
            for arch, interpreter in interpreters.items():
                times[arch].append(per_call_ms(interpreter.invoke, repeats))
    return [(arch, sizes[arch], statistics.median(times[arch])) for arch in archs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archs", nargs="*", default=list(DEFAULT_ARCHS), help="--arch values; the first is the reference")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=20, help="invokes per architecture per round")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels (the bundles': 224)")
    args = parser.parse_args()
    rows = measure(args.archs, args.rounds, args.repeats, args.size)
    first = rows[0][2]
    print("| architecture | int8 MB | ms per invoke | ratio |\n|---|---|---|---|")
    for arch, mb, ms in rows:
        print(f"| {arch} | {mb:.2f} | {ms:.2f} | {ms / first:.2f} |")


if __name__ == "__main__":
    main()
