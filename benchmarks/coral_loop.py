"""The Coral example's loop: what pycoral's ``examples/classify_image.py`` does, once per file.

Run as a child process by ``run_all.py`` (``python benchmarks/coral_loop.py --model M --files LIST``).
Per file, as the example does for its one ``--input``: open the image with Pillow, convert it to
the model's channels, resize it to the model's input with LANCZOS (the example's
``Image.ANTIALIAS``), set it as the input tensor, invoke, and read the output, dequantized with
the output tensor's own parameters (``classify.get_classes``). One interpreter with the
runtime's default threads (pycoral's ``make_interpreter``), the bundle's ``.tflite``, the film
view only: no gate, no head, no second view, no JPEG draft mode. Prints one CSV line per file
(``path,probability``) as it is done, so ``run_all.py`` times it the way it times ``cxr-edge``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_edge import runtime
from cxr_edge.bundle import load_bundle

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import read_list  # noqa: E402  (a sibling script, not a package)


def classify_file(interpreter, path: str) -> float:
    """The example's per-file work; returns the first output's first value (the sigmoid's P(positive))."""
    details = interpreter.get_input_details()[0]
    _, height, width, channels = details["shape"]
    image = Image.open(path).convert("L" if channels == 1 else "RGB").resize((width, height), Image.LANCZOS)
    pixels = np.asarray(image, dtype=np.uint8).reshape(1, height, width, channels)
    interpreter.set_tensor(details["index"], pixels)
    interpreter.invoke()
    output = interpreter.get_output_details()[0]
    return float(runtime.from_output_tensor(interpreter.get_tensor(output["index"]), output).reshape(-1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="bundle name or manifest (.json): its .tflite is used")
    parser.add_argument("--files", required=True, help="file with one image path a line")
    args = parser.parse_args()
    interpreter = runtime.make_interpreter(load_bundle(args.model).model_path)
    print("path,probability", flush=True)
    for path in read_list(args.files):
        print(f"{path},{classify_file(interpreter, path):.6f}", flush=True)


if __name__ == "__main__":
    main()
