"""What is inside a .tflite file: its ops, their tensor types, and the Edge TPU's view of them.

The Edge TPU runs only integer (int8/uint8) tensors and a fixed set of builtin ops; any
other op, and everything after it, falls back to the CPU. Checking that here means a
missing compiler still tells the user whether the model would map.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

# Builtin ops the Edge TPU compiler maps (coral.ai/docs/edgetpu/models-intro, "Supported operations").
EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D",
    "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU",
    "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE",
    "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM",
    "TANH", "TRANSPOSE", "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM",
})
# int32 is how integer models store biases and shapes; float anything means a float op.
INTEGER_DTYPES = (np.int8, np.uint8, np.int32)


def _plain_interpreter(model_path: Path) -> Any:
    """An interpreter without the default XNNPACK delegate, which would hide the ops in one node."""
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:  # a training box with TensorFlow only
        from convert.quiet import import_tensorflow

        litert = import_tensorflow().lite
    interpreter = litert.Interpreter(
        model_path=str(model_path),
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    return interpreter


def op_table(interpreter: Any) -> list[dict[str, Any]]:
    """One entry per op: its name and the dtypes of the tensors it reads and writes."""
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    table = []
    for op in interpreter._get_ops_details():  # the only public-ish op listing in the Python API
        tensors = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]
        table.append({"op": op["op_name"], "dtypes": sorted({dtypes[i] for i in tensors if i in dtypes})})
    return table


def is_integer_op(entry: dict[str, Any]) -> bool:
    return all(np.dtype(d) in [np.dtype(t) for t in INTEGER_DTYPES] for d in entry["dtypes"])


def analyse(model_path: Path) -> dict[str, Any]:
    """Op counts, float ops, the ops the Edge TPU would leave to the CPU, and the I/O dtypes."""
    interpreter = _plain_interpreter(model_path)
    table = op_table(interpreter)
    counts = Counter(entry["op"] for entry in table)
    return {
        "ops": dict(sorted(counts.items())),
        "n_ops": len(table),
        "non_integer_ops": sorted({e["op"] for e in table if not is_integer_op(e)}),
        "edgetpu_unsupported_ops": sorted(op for op in counts if op not in EDGETPU_OPS),
        "input_dtype": np.dtype(interpreter.get_input_details()[0]["dtype"]).name,
        "output_dtype": np.dtype(interpreter.get_output_details()[0]["dtype"]).name,
        "input_quantization": [float(q) for q in interpreter.get_input_details()[0]["quantization"]],
    }


def edgetpu_ready(analysis: dict[str, Any]) -> bool:
    """Would every op map to the Edge TPU (integer everywhere, supported ops, uint8/int8 I/O)?"""
    return (not analysis["non_integer_ops"] and not analysis["edgetpu_unsupported_ops"]
            and analysis["input_dtype"] in ("uint8", "int8") and analysis["output_dtype"] in ("uint8", "int8"))
