"""Keras model -> TFLite bytes for each quantization variant.

Every variant goes through ``model.export()`` (a SavedModel) and
``TFLiteConverter.from_saved_model``. The model takes float32 raw grey levels 0..255 and
rescales inside, so the full-integer variant, calibrated on real images spanning 0..255,
takes uint8 pixels with scale 1 and zero point 0: the contract's pixels themselves.
TensorFlow's own messages are appended to a log file instead of the terminal.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from convert.errors import ConvertError
from convert.quiet import captured_output, import_tensorflow

VARIANTS = ("float32", "float16", "dynamic", "int8")
Representative = Callable[[], Iterator[list[Any]]]


def convert_model(model: Any, variants: Sequence[str], representative: Representative | None, log_path: Path,
                  progress: Callable[[str], None] = lambda step: None) -> dict[str, bytes]:
    """{variant: TFLite bytes}; ``representative`` (the converter's generator) is needed for int8."""
    with tempfile.TemporaryDirectory(prefix="cxr-convert-") as tmp:
        progress("exporting the SavedModel")
        saved = Path(tmp) / "saved_model"
        with captured_output("model.export", log_path):
            model.export(str(saved), format="tf_saved_model")
        out = {}
        for variant in variants:
            progress(f"converting {variant}")
            out[variant] = convert(saved, variant, representative, log_path)
        return out


def convert(saved_model: Path, variant: str, representative: Representative | None = None,
            log_path: Path | None = None) -> bytes:
    """TFLite bytes of one ``variant`` of a SavedModel."""
    tf = import_tensorflow()
    if variant not in VARIANTS:
        raise ConvertError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        if representative is None:
            raise ConvertError("the int8 variant needs calibration images, and none were given")
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    with captured_output(f"converting the {variant} variant", log_path):
        return converter.convert()
