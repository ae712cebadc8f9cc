"""What ``python -m train fit --deterministic`` costs: training images per second with and without it.

``python benchmarks/determinism_cost.py`` trains the shipped recipe's network (Lite0:11 at
224 px, batch 32, full augmentation) on generated pixels for a few steps in child
processes, alternating plain and deterministic, and prints each mode's median rate, the
ratio, and whether each mode's children ended with the same weights. Determinism is
switched on per process and cannot be switched off, hence the children; alternating them
means a shared, noisy machine slows both modes alike.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ARCH = "transfer:EfficientNetLite0:11"


def child(deterministic: bool, arch: str, size: int, batch: int, warmup: int, steps: int) -> dict:
    """Train ``warmup + steps`` steps of ``arch`` as ``train fit`` would; time the last ``steps``."""
    import keras
    import numpy as np

    from train import config, fit, models, pipeline

    fit.seed_everything(0, deterministic)
    cfg = config.make_config(arch, "unused", data="unused", size=size, batch_size=batch)
    n = (warmup + steps) * batch
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    y = rng.integers(0, 2, n)
    model = models.build(arch, (size, size), 1, [0.0])
    fit.compile_model(model, fit.learning_rate(3e-4, 8, warmup + steps, "cosine"), 1)
    ds = pipeline.dataset(pixels, pipeline.one_hot_targets(y, 1), batch, sample_weights=np.ones(n),
                          augment_cfg=config.augment_config(cfg), shuffle_seed=0)
    ends: list[float] = []
    model.fit(ds, epochs=1, verbose=0,
              callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=lambda *_, **__: ends.append(time.perf_counter()))])
    timed = ends[warmup - 1:]
    digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
    return {"deterministic": deterministic, "images_per_s": steps * batch / (timed[-1] - timed[0]), "weights": digest}


def measure(rounds: int, options: list[str]) -> dict[str, list[dict]]:
    """Run the children, alternating modes each round; each child's rate and weights digest, by mode."""
    results: dict[str, list[dict]] = {"plain": [], "deterministic": []}
    for _ in range(rounds):
        for mode in results:
            args = [sys.executable, __file__, "--child", mode, *options]
            done = subprocess.run(args, capture_output=True, text=True, check=True)
            results[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="children per mode")
    parser.add_argument("--arch", default=ARCH)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3, help="steps left out (graph building)")
    parser.add_argument("--steps", type=int, default=20, help="steps timed")
    parser.add_argument("--child", choices=["plain", "deterministic"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    child_args = ["--arch", args.arch, "--size", str(args.size), "--batch", str(args.batch),
             "--warmup", str(args.warmup), "--steps", str(args.steps)]
    if args.child:
        print(json.dumps(child(args.child == "deterministic", args.arch, args.size, args.batch, args.warmup, args.steps)))
        return
    results = measure(args.rounds, child_args)
    rates = {mode: [child["images_per_s"] for child in children] for mode, children in results.items()}
    medians = {mode: statistics.median(r) for mode, r in rates.items()}
    print(json.dumps({"arch": args.arch, "size": args.size, "batch": args.batch, "rates": rates,
                      "median_images_per_s": medians,
                      "deterministic_time_ratio": medians["plain"] / medians["deterministic"],
                      "same_weights_in_every_child": {mode: len({c["weights"] for c in children}) == 1
                                                      for mode, children in results.items()}}, indent=1))


if __name__ == "__main__":
    main()
