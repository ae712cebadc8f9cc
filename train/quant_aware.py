"""Quantization-aware fine-tuning: train a float model as its int8 file will compute.

Post-training int8 of the full EfficientNet-Lite0 subtype model changed 4% of its labels
and gave back all its accuracy gain. Simulating the roundings on the float model
(:func:`rounding_effects`, ``python -m train rounding RUN``) showed why: on its 1,049
validation films, rounding the weights alone (per output channel, as TFLite does) changes
3.7% of the labels, the activations alone 1.7%, both 3.9% (the int8 file: 4.0%). So
fine-tuning here does both, as the converter will:

- weights: after every optimizer step each kernel is snapped to its per-channel int8 grid
  and the step's update is kept in a float shadow copy (the straight-through estimator),
  so the model always runs, validates and is saved with weights the converter keeps exactly;
- activations: :class:`FakeQuant` layers round every tensor TFLite stores in uint8 (after
  each ReLU6, projection, residual add, the input scaling and the pooled features), with
  ranges tracked as moving min/max;
- batch norm is frozen (its statistics are folded into the weights at conversion).

The fine-tuned model is the ordinary float model (the twin shares its layers); the usual
converter, calibration and parity reports apply unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from train import data
from train.robustness import clean_inputs, validation_images
from train.rundir import MODEL_FILE, load_run, split_records

INT8_MAX = 127
RANGE_IMAGES = 256  # training images that start the activation ranges (the converter calibrates on 300)
ROUNDING_FILE = "rounding.json"


class FakeQuant(keras.layers.Layer):
    """Round a tensor to 256 levels over its range, as a uint8 tensor of the TFLite model.

    ``fixed`` ranges (ReLU6: 0..6) are what the converter uses; others are a moving
    min/max (always including 0, as TFLite's are) updated while training. Gradients pass
    straight through inside the range.
    """

    def __init__(self, fixed: tuple[float, float] | None = None, momentum: float = 0.99, **kwargs):
        super().__init__(**kwargs)
        self.fixed, self.momentum = fixed, momentum
        self.passing = False  # True while ranges are measured on the float values, as calibration does

    def build(self, input_shape) -> None:
        self.low = self.add_weight(shape=(), initializer="zeros", trainable=False, name="low")
        self.high = self.add_weight(shape=(), initializer="zeros", trainable=False, name="high")

    def call(self, x, training=False):
        if self.passing:
            return x
        if self.fixed is not None:
            low, high = self.fixed
        else:
            if training:
                m = self.momentum
                self.low.assign(m * self.low + (1 - m) * tf.minimum(tf.reduce_min(x), 0.0))
                self.high.assign(m * self.high + (1 - m) * tf.maximum(tf.reduce_max(x), 0.0))
            low, high = self.low, self.high
        return tf.quantization.fake_quant_with_min_max_vars(x, low, high, num_bits=8)

    def start_range(self, x: np.ndarray) -> None:
        """Set the moving range from calibration activations ``x``."""
        self.low.assign(min(float(np.min(x)), 0.0))
        self.high.assign(max(float(np.max(x)), 0.0))


def quantization_range(layer: keras.layers.Layer, feeds_relu: bool) -> tuple[float, float] | str | None:
    """Where TFLite stores ``layer``'s output in uint8: a fixed range, 'moving', or None (fused away).

    Convolutions fuse with their batch norm and ReLU6, so only the op that ends a fused
    group is a quantized tensor: a ReLU6, a batch norm that ``feeds`` no ReLU (the linear
    projections), a residual add, the input scaling and the pooling.
    """
    if isinstance(layer, keras.layers.ReLU) and layer.max_value is not None:
        return (0.0, float(layer.max_value))
    if isinstance(layer, (keras.layers.Add, keras.layers.GlobalAveragePooling2D, keras.layers.Rescaling)):
        return "moving"
    if isinstance(layer, keras.layers.BatchNormalization) and not feeds_relu:
        return "moving"
    return None


def flat_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of ``model``, nested models opened up."""
    out = []
    for layer in model.layers:
        out += flat_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return out


def _rebuild(model: keras.Model, inputs: list, fakes: list[FakeQuant]):
    """Call ``model``'s own layers on ``inputs`` in graph order, a FakeQuant after each quantized tensor.

    Reads the functional graph from each layer's ``_inbound_nodes`` (Keras 3), opening nested models.
    """
    tensors = {id(t): x for t, x in zip(model.inputs, inputs)}
    relu_inputs = {id(t) for layer in model.layers if isinstance(layer, keras.layers.ReLU)
                   for node in layer._inbound_nodes for t in keras.tree.flatten(node.arguments.args)}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        node = next(n for n in layer._inbound_nodes
                    if all(id(t) in tensors for t in keras.tree.flatten(n.arguments.args)))
        args = keras.tree.map_structure(lambda t: tensors[id(t)], node.arguments.args)
        if isinstance(layer, keras.Model):
            out = _rebuild(layer, list(keras.tree.flatten(args)), fakes)
        else:
            out = layer(*args, **node.arguments.kwargs)
        where = quantization_range(layer, id(node.outputs[0]) in relu_inputs)
        if where is not None:
            fakes.append(FakeQuant(fixed=None if where == "moving" else where, name=f"fake_quant_{len(fakes)}"))
            out = fakes[-1](out)
        tensors[id(node.outputs[0])] = out
    return tensors[id(model.outputs[0])]


def twin(model: keras.Model, pixels: np.ndarray) -> tuple[keras.Model, list[FakeQuant]]:
    """A model that shares ``model``'s layers (so training it trains ``model``) and rounds like int8.

    ``pixels`` (N, H, W, 1), training images, start the moving ranges, as calibration
    images do for the converter: an empty range would round every value to zero.
    """
    for layer in flat_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # frozen: inference statistics, as folded at conversion
    fakes: list[FakeQuant] = []
    inputs = keras.Input(model.inputs[0].shape[1:], name=model.inputs[0].name)
    rounded = keras.Model(inputs, _rebuild(model, [inputs], fakes), name=f"{model.name}_quant_aware")
    _start_ranges(rounded, fakes, pixels)
    return rounded, fakes


def range_picks(count: int, seed: int) -> np.ndarray:
    """Indices of the training images (of ``count``) that start the activation ranges, reproducibly by ``seed``."""
    return np.random.default_rng(seed).permutation(count)[:RANGE_IMAGES]


def _start_ranges(qmodel: keras.Model, fakes: list[FakeQuant], pixels: np.ndarray, batch_size: int = 32) -> None:
    """Measure each moving range on float activations (every FakeQuant passing), as the converter calibrates."""
    moving = [f for f in fakes if f.fixed is None]
    probe = keras.Model(qmodel.inputs[0], [f.input for f in moving])
    for fake in fakes:
        fake.passing = True
    outputs = [probe(pixels[i:i + batch_size], training=False) for i in range(0, len(pixels), batch_size)]
    for fake in fakes:
        fake.passing = False
    for k, fake in enumerate(moving):
        fake.start_range(np.concatenate([np.asarray(batch[k]) for batch in outputs]))


def quantized_kernels(model: keras.Model) -> list[tuple[Any, int]]:
    """(kernel variable, output-channel axis) of every convolution and dense layer."""
    axes = {keras.layers.DepthwiseConv2D: 2, keras.layers.Conv2D: 3, keras.layers.Dense: 1}
    found = []
    for layer in flat_layers(model):
        axis = next((a for cls, a in axes.items() if isinstance(layer, cls)), None)
        if axis is not None:
            found.append((layer.kernel, axis))
    return found


def snap(weights: np.ndarray, axis: int) -> np.ndarray:
    """``weights`` rounded to symmetric int8 per channel along ``axis`` (max |w| maps to 127), as float."""
    others = tuple(i for i in range(weights.ndim) if i != axis)
    step = np.max(np.abs(weights), axis=others, keepdims=True) / INT8_MAX
    step = np.where(step > 0, step, 1.0)
    return (np.round(weights / step) * step).astype(weights.dtype)


class SnapWeights(keras.callbacks.Callback):
    """Keep every kernel on its int8 grid; the optimizer's steps accumulate in float shadows."""

    def __init__(self, model: keras.Model):
        super().__init__()
        self.kernels = quantized_kernels(model)
        self.shadows = [np.array(v.numpy()) for v, _ in self.kernels]
        self._snap_all()

    def _snap_all(self) -> None:
        for (variable, axis), shadow in zip(self.kernels, self.shadows):
            variable.assign(snap(shadow, axis))

    def on_train_batch_end(self, batch, logs=None) -> None:
        for (variable, axis), shadow in zip(self.kernels, self.shadows):
            shadow += variable.numpy() - snap(shadow, axis)  # the step taken from the snapped weights
        self._snap_all()


def _labels(probs: np.ndarray) -> np.ndarray:
    return probs.argmax(axis=1) if probs.shape[1] > 1 else probs[:, 0] >= 0.5


def rounding_effects(model: keras.Model, pixels: np.ndarray, calibration: np.ndarray) -> dict[str, dict[str, float]]:
    """How often int8's roundings change ``model``'s label on ``pixels`` (N, H, W, 1): weights, activations, both.

    Labels are the argmax (multiclass) or P >= 0.5 (binary): a diagnosis of where an int8
    file loses agreement, before any conversion. ``model``'s weights are left as they were.
    """
    float_probs = model.predict(pixels, verbose=0)
    rounded, _ = twin(model, calibration)
    probs = {"activations": rounded.predict(pixels, verbose=0)}
    kernels = quantized_kernels(model)
    originals = [variable.numpy() for variable, _ in kernels]
    for variable, axis in kernels:
        variable.assign(snap(variable.numpy(), axis))
    probs["weights"] = model.predict(pixels, verbose=0)
    probs["both"] = rounded.predict(pixels, verbose=0)
    for (variable, _), original in zip(kernels, originals):
        variable.assign(original)
    return {name: {"label_agreement": float(np.mean(_labels(p) == _labels(float_probs))),
                   "mean_abs_dp": float(np.mean(np.abs(p - float_probs)))} for name, p in probs.items()}


def measure_rounding(run_dir: Path, log=print) -> dict:
    """:func:`rounding_effects` of a run's model on its validation split; writes ``RUN/rounding.json``."""
    cfg, _record = load_run(run_dir)
    model = keras.models.load_model(run_dir / MODEL_FILE, compile=False)
    raw, _ = validation_images(run_dir)
    pixels = clean_inputs(raw, cfg.contract)[..., None].astype("float32")
    train = split_records(run_dir)["train"]
    pick = range_picks(len(train), cfg.seed)
    calibration, _ = data.load_pixels([train[i] for i in pick], cfg.contract, None)
    log(f"rounding {run_dir.name}'s model as int8 would, on {len(pixels)} validation images "
        f"(activation ranges from {len(pick)} training images)")
    effects = rounding_effects(model, pixels, calibration[..., None].astype("float32"))
    result = {"run": run_dir.name, "images": len(pixels), "range_images": len(pick), "effects": effects}
    (run_dir / ROUNDING_FILE).write_text(json.dumps(result, indent=1) + "\n")
    return result
