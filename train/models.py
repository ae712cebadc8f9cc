"""Architectures selectable by name; every model takes raw grey levels and rescales inside.

Input is float32 (H, W, 1) holding 0..255, so the exported model and the int8 bundle
(uint8 input, scale 1, zero point 0) see the same numbers the contract produces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras
from keras import layers

ARCHS = ("baseline", "tuned", "mobile")
# Keras' default 0.99 leaves the moving variance dominated by its initial 1.0 for the
# first few hundred steps (measured: stem variance 0.004, moving estimate 0.07 after two
# epochs of 131 steps), which collapses validation outputs to a constant early on.
BN_MOMENTUM = 0.9
TRANSFER_PREFIX = "transfer:"


class ModelError(Exception):
    """An architecture or weights request that cannot be honoured; the message says why."""


def head(x, n_outputs: int, bias: list[float], dropout: float, name: str = "prediction"):
    """Classifier head: one sigmoid unit for binary tasks, softmax for several classes."""
    if dropout:
        x = layers.Dropout(dropout)(x)
    activation = "sigmoid" if n_outputs == 1 else "softmax"
    init = keras.initializers.Constant(bias)
    return layers.Dense(n_outputs, activation=activation, bias_initializer=init, name=name, dtype="float32")(x)


def _input(shape: tuple[int, int]):
    inputs = keras.Input((*shape, 1), dtype="float32", name="image")
    return inputs, layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)


def baseline(shape, n_outputs, bias):
    """The seed projects' baseline: Conv2D + MaxPooling blocks, Dense, no regularisation."""
    inputs, x = _input(shape)
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    return keras.Model(inputs, head(x, n_outputs, bias, 0.0), name="baseline")


def tuned(shape, n_outputs, bias):
    """The baseline plus batch norm and dropout (class weights and augmentation come from the trainer)."""
    inputs, x = _input(shape)
    for filters in (32, 64, 128, 128):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
        x = layers.SpatialDropout2D(0.1)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(128, activation="relu")(x)
    return keras.Model(inputs, head(x, n_outputs, bias, 0.4), name="tuned")


def _conv_bn(x, filters: int, kernel: int, strides: int):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.ReLU(6.0)(x)


def _separable(x, filters: int, strides: int):
    """Depthwise 3x3 + pointwise 1x1, each with batch norm (folded at export) and ReLU6."""
    x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.ReLU(6.0)(x)
    return _conv_bn(x, filters, 1, 1)


# (filters, stride) per depthwise-separable block; a stride-2 3x3 stem comes first.
MOBILE_BLOCKS = ((48, 2), (48, 1), (96, 2), (96, 1), (160, 2), (160, 1), (256, 2), (256, 1))


def mobile(shape, n_outputs, bias, width: float = 1.0):
    """Edge model for int8 and the Coral Edge TPU: only Conv/DepthwiseConv/ReLU6/Mean/FC/Logistic.

    About 0.2M parameters (~0.25 MB as int8); batch norm folds into the convolutions at
    conversion, dropout disappears at inference.
    """
    inputs, x = _input(shape)
    x = _conv_bn(x, int(32 * width), 3, 2)
    for filters, strides in MOBILE_BLOCKS:
        x = _separable(x, int(filters * width), strides)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, head(x, n_outputs, bias, 0.3), name="mobile")


def transfer(name: str, shape, n_outputs, bias, weights: str):
    """A keras.applications backbone (or the ported EfficientNet-Lite0) with a new head.

    Grayscale is repeated to three channels inside the model; each family's own
    preprocessing is applied to the 0..255 values, as its ImageNet weights expect.
    """
    inputs = keras.Input((*shape, 1), dtype="float32", name="image")
    rgb = layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
    backbone, preprocess = _backbone(name, (*shape, 3), weights)
    x = backbone(preprocess(rgb))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, head(x, n_outputs, bias, 0.3), name=f"transfer_{name}")


def _backbone(name: str, shape, weights: str):
    """(backbone without top, preprocessing layer) with weights 'imagenet', a path or 'none'."""
    if name == "EfficientNetLite0":
        from train.efficientnet_lite import build_efficientnet_lite0  # lazy: optional port

        path = None if weights == "none" else weights
        if weights == "imagenet":
            raise ModelError("EfficientNetLite0 weights come from a ported file: give --weights PATH (see train/port_lite0.py)")
        return build_efficientnet_lite0(shape, weights=path), _scale_layer(1 / 127.5, -1.0)
    factory = getattr(keras.applications, name, None)
    if not callable(factory):
        raise ModelError(f"unknown keras.applications model {name!r} (e.g. MobileNetV2, EfficientNetB0, VGG16, ResNet50V2)")
    load = {"none": None, "imagenet": "imagenet"}.get(weights, None)
    try:
        backbone = factory(include_top=False, weights=load, input_shape=shape)
    except Exception as exc:  # noqa: BLE001 - keras raises many types for a failed download
        raise ModelError(f"could not load {name} weights {weights!r}: {exc}. "
                         "Without network access use --weights PATH (a .weights.h5 file) or --weights none") from exc
    if weights not in ("none", "imagenet"):
        if not Path(weights).is_file():
            raise ModelError(f"weights file {weights} not found")
        backbone.load_weights(weights)
    return backbone, _family_preprocessing(name)


def _scale_layer(scale: float, offset: float):
    return layers.Rescaling(scale, offset=offset, name="backbone_preprocess")


def _family_preprocessing(name: str):
    """Map 0..255 to the range the family's ImageNet weights were trained on."""
    lowered = name.lower()
    if lowered.startswith(("efficientnet", "convnext")):
        return _scale_layer(1.0, 0.0)  # these include their own normalisation
    if lowered.startswith(("mobilenet", "resnet50v2", "resnet101v2", "resnet152v2", "inception", "xception", "nasnet")):
        return _scale_layer(1 / 127.5, -1.0)
    return _scale_layer(1 / 255.0, 0.0)


BUILDERS: dict[str, Callable] = {"baseline": baseline, "tuned": tuned, "mobile": mobile}


def build(arch: str, shape: tuple[int, int], n_outputs: int, bias: list[float], weights: str = "none") -> keras.Model:
    """Build architecture ``arch`` (a name in :data:`ARCHS` or ``transfer:<name>``)."""
    if arch.startswith(TRANSFER_PREFIX):
        return transfer(arch[len(TRANSFER_PREFIX):], shape, n_outputs, bias, weights)
    if arch not in BUILDERS:
        raise ModelError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)} or transfer:<keras.applications name>")
    return BUILDERS[arch](shape, n_outputs, bias)
