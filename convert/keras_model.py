"""Load a trained Keras model and check it fits the preprocessing contract.

The edge feeds raw grey levels 0..255 as (N, H, W, 1); a model that expects RGB, another
size or integer input would silently get the wrong pixels after conversion, so it is
refused here with a message instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convert.errors import ConvertError
from convert.quiet import captured_output, import_tensorflow

KERAS_SUFFIX = ".keras"


def load_keras(path: Path) -> Any:
    """The Keras model at ``path`` (a ``.keras`` file), or :class:`ConvertError` saying why not."""
    path = Path(path)
    if not path.exists():
        raise ConvertError(f"{path}: no such file")
    if path.is_dir() or path.suffix != KERAS_SUFFIX:
        raise ConvertError(f"{path}: not a Keras model file (expected a {KERAS_SUFFIX} file saved by model.save)")
    import_tensorflow()
    import keras

    try:
        with captured_output():
            model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors... for bad files
        raise ConvertError(f"{path}: cannot be loaded as a Keras model ({type(exc).__name__}: {exc})") from exc
    check_input(model, path)
    return model


def input_hw(model: Any) -> tuple[int, int]:
    """(height, width) of the model's single image input."""
    shape = model.inputs[0].shape
    return int(shape[1]), int(shape[2])


def output_width(model: Any) -> int:
    return int(model.outputs[0].shape[-1])


def check_input(model: Any, path: Path | str = "model") -> None:
    """Refuse a model whose input is not one float32 (batch, H, W, 1) tensor."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConvertError(f"{path}: the model must have one input and one output, "
                           f"it has {len(model.inputs)} and {len(model.outputs)}")
    tensor = model.inputs[0]
    shape = tuple(tensor.shape)
    dtype = str(getattr(tensor, "dtype", "float32"))
    if len(shape) != 4 or shape[3] != 1 or shape[1] is None or shape[2] is None:
        raise ConvertError(f"{path}: input shape {shape} is not (batch, height, width, 1): the contract feeds "
                           "one grey channel at a fixed size")
    if "float32" not in dtype:
        raise ConvertError(f"{path}: input dtype {dtype}; the contract needs float32 grey levels 0..255 "
                           "(with rescaling inside the model)")
