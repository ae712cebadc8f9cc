"""The runtime adapter: the one module that knows TFLite interpreters and delegates.

Interpreters are tried in the order ai_edge_litert (current LiteRT, numpy 2), then
tflite_runtime (the only wheel for 32-bit armv7l Pis), then tensorflow.lite (a training
box). Like pycoral's ``adapters/common.py``, it converts between pixels and tensors with
the tensor's own quantization parameters, so float and int8 models are fed the same way.
"""

from __future__ import annotations

import ctypes
import importlib
import platform
from pathlib import Path
from typing import Any

import numpy as np

BACKENDS = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")
DISTRIBUTIONS = {
    "ai_edge_litert": ("ai-edge-litert",),
    "tflite_runtime": ("tflite-runtime",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
}
EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
INSTALL_HINT = (
    "no TFLite interpreter found: install one with `pip install ai-edge-litert` (x86_64/aarch64) or "
    "`pip install tflite-runtime==2.14.0 'numpy<2'` (32-bit armv7l); `pip install '.[edge]'` in the "
    "cxr-edge checkout picks the right one"
)
EDGETPU_HINT = (
    "install the Edge TPU runtime (Debian/Raspberry Pi OS: add the Coral apt repository, then "
    "`sudo apt install libedgetpu1-std`), plug in the Coral accelerator, and use a bundle "
    "compiled with edgetpu_compiler"
)


class RuntimeUnavailable(Exception):
    """No interpreter, or the Edge TPU runtime/device is missing; the message says how to fix it."""


def _backend_module() -> tuple[str, Any]:
    for name in BACKENDS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return name.split(".")[0], module
    raise RuntimeUnavailable(INSTALL_HINT)


def backend_name() -> str:
    """The package that provides the interpreter (for ``cxr-edge info``)."""
    return _backend_module()[0]


def backend_version() -> str:
    """The installed version of the interpreter's distribution (TensorFlow has two names)."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in DISTRIBUTIONS[backend_name()]:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "unknown"


def load_edgetpu_delegate() -> Any:
    """Load the Edge TPU delegate or raise :class:`RuntimeUnavailable` saying how to get it."""
    _, module = _backend_module()
    library = EDGETPU_LIBRARY.get(platform.system(), "libedgetpu.so.1")
    load = getattr(module, "load_delegate", None) or getattr(getattr(module, "experimental", None), "load_delegate")
    try:
        # Open the library first: LiteRT's Delegate, failing to, dies in __del__ with a traceback on stderr.
        ctypes.CDLL(library)
        return load(library)
    except (ValueError, RuntimeError, OSError) as exc:
        raise RuntimeUnavailable(f"Edge TPU not available ({library}: {exc}); {EDGETPU_HINT}") from exc


def make_interpreter(model_path: str | Path, threads: int | None = None, edgetpu: bool = False) -> Any:
    """An allocated interpreter for ``model_path`` on the CPU, or on the Edge TPU if asked."""
    _, module = _backend_module()
    delegates = [load_edgetpu_delegate()] if edgetpu else None
    try:
        interpreter = module.Interpreter(
            model_path=str(model_path), num_threads=threads, experimental_delegates=delegates
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise RuntimeUnavailable(f"{model_path}: the interpreter cannot load this model ({exc})") from exc
    return interpreter


def input_details(interpreter: Any) -> dict[str, Any]:
    return interpreter.get_input_details()[0]


def to_input_tensor(pixels: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    """Turn uint8 grayscale pixels (N, H, W) or (H, W) into the model's input tensor.

    Models take raw 0..255 grey levels (rescaling is inside the model); a quantized input
    is fed ``round(x / scale + zero_point)``, which for the usual scale 1, zero point 0 is
    the pixels themselves.
    """
    batch = pixels if pixels.ndim == 3 else pixels[None]
    batch = batch[..., None]
    dtype = details["dtype"]
    if np.issubdtype(dtype, np.floating):
        return batch.astype(dtype)
    scale, zero_point = details["quantization"]
    if scale in (0, 1.0) and zero_point == 0 and dtype == np.uint8:
        return batch.astype(np.uint8, copy=False)
    info = np.iinfo(dtype)
    q = np.rint(batch.astype(np.float32) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def from_output_tensor(raw: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    """Dequantize an output tensor to float32 probabilities."""
    if np.issubdtype(raw.dtype, np.floating):
        return raw.astype(np.float32)
    scale, zero_point = details["quantization"]
    return (raw.astype(np.float32) - zero_point) * scale


MAX_BATCH = 64  # images per invoke: a whole validation split at once would need gigabytes of activations


def run_batch(interpreter: Any, pixels: np.ndarray) -> np.ndarray:
    """Invoke on a batch of uint8 images (N, H, W); returns the first output (N, outputs) float32."""
    return run_outputs(interpreter, pixels)[0]


def run_outputs(interpreter: Any, pixels: np.ndarray) -> list[np.ndarray]:
    """Invoke on a batch of uint8 images (N, H, W); returns every output, each (N, values) float32.

    The interpreter's batch dimension is resized to the batch size when it differs (one
    resize per new size), so callers can batch occluded copies or use batch 1 alike;
    batches over ``MAX_BATCH`` run in chunks of that size.
    """
    tensor = to_input_tensor(pixels, input_details(interpreter))
    chunks = [_invoke(interpreter, tensor[i:i + MAX_BATCH]) for i in range(0, len(tensor), MAX_BATCH)]
    return [np.concatenate(outputs) for outputs in zip(*chunks)]


def _invoke(interpreter: Any, tensor: np.ndarray) -> list[np.ndarray]:
    details = input_details(interpreter)
    if tuple(details["shape"]) != tensor.shape:
        interpreter.resize_tensor_input(details["index"], tensor.shape)
        interpreter.allocate_tensors()
        details = input_details(interpreter)
    interpreter.set_tensor(details["index"], tensor)
    interpreter.invoke()
    return [from_output_tensor(interpreter.get_tensor(out["index"]), out).reshape(tensor.shape[0], -1)
            for out in interpreter.get_output_details()]
