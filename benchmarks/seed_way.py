"""The way the seed projects classify: TensorFlow, the Keras model, one image at a time.

Run as a child process by ``run_all.py`` (``python benchmarks/seed_way.py --keras M --files LIST``);
prints one JSON object. Like the seed notebooks and scripts it loads the ``.keras`` model
of the training run, reads each image with ``keras.utils.load_img`` (Keras's default
resampling, in the colour mode the model's input needs) and calls ``model.predict`` on a
batch of one. The first image pays for graph building and is left out of the rates.

Where the training run's ``.keras`` is not on disk, ``--arch`` builds the bundle's architecture
untrained instead (``train.models.build``, as ``backbone_cost.py`` does): the time per image is
the same with random weights; the probabilities are then meaningless and say so (``untrained``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # train/ registers the custom layers some models use

from workload import read_list  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--keras", help="the training run's .keras model")
    source.add_argument("--arch", help="build this architecture untrained instead (--arch of train fit)")
    parser.add_argument("--size", type=int, default=224, help="the untrained model's input side in pixels")
    parser.add_argument("--files", required=True, help="file with one image path a line")
    args = parser.parse_args()
    files = read_list(args.files)

    started = time.perf_counter()
    import keras

    with contextlib.suppress(ImportError):
        import train.models  # noqa: F401

    if args.keras:
        model = keras.models.load_model(args.keras, compile=False)
    else:
        from train import models

        model = models.build(args.arch, (args.size, args.size), 1, [0.0])
    _, height, width, channels = model.input_shape
    color_mode = "grayscale" if channels == 1 else "rgb"
    ready = time.perf_counter() - started

    times, probabilities = [], []
    for path in files:
        start = time.perf_counter()
        image = keras.utils.load_img(path, color_mode=color_mode, target_size=(height, width))
        batch = keras.utils.img_to_array(image)[None]
        output = model.predict(batch, verbose=0)
        times.append(time.perf_counter() - start)
        scores = output.reshape(-1)
        probabilities.append(float(scores[0] if scores.size == 1 else 1.0 - scores[0]))  # P(not NORMAL)
    print(json.dumps({"startup_s": ready, "per_image_s": times, "probabilities": probabilities,
                      "untrained": not args.keras}))


if __name__ == "__main__":
    main()
