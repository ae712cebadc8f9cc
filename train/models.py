"""Architectures selectable by name; every model takes raw grey levels and rescales inside.

Input is float32 (H, W, 1) holding 0..255, so the exported model and the int8 bundle
(uint8 input, scale 1, zero point 0) see the same numbers the contract produces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras
from keras import layers

from train.config import BUILT_IN_ARCHS, LITE_BACKBONES, TRANSFER_PREFIX, parse_arch

ARCHS = BUILT_IN_ARCHS
# Keras' default 0.99 leaves the moving variance dominated by its initial 1.0 for the
# first few hundred steps (measured: stem variance 0.004, moving estimate 0.07 after two
# epochs of 131 steps), which collapses validation outputs to a constant early on.
BN_MOMENTUM = 0.9


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


def transfer(name: str, shape, n_outputs, bias, weights: str, freeze: bool = False):
    """A keras.applications backbone (or the ported EfficientNet-Lite0) with a new head.

    keras.applications models get the grey image repeated to three channels and their
    family's preprocessing of 0..255 values, as their ImageNet weights expect;
    EfficientNet-Lite0/1/2 take one grey channel and normalise inside; ``EfficientNetLite0:N``
    keeps its first N of 16 blocks (11: about 0.7 M parameters, for the ~1 MB budget).
    ``freeze`` trains the head only (a linear probe of the pretrained features).
    """
    inputs = keras.Input((*shape, 1), dtype="float32", name="image")
    if parse_arch(TRANSFER_PREFIX + name).lite_variant:
        backbone = _lite(name, shape, weights)
        x = backbone(inputs)
    else:
        backbone = _application(name, (*shape, 3), weights)
        rgb = layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
        x = backbone(_family_preprocessing(name)(rgb))
    backbone.trainable = not freeze
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, head(x, n_outputs, bias, 0.3), name=f"transfer_{name.replace(':', '_')}")


def _lite(name: str, shape, weights: str):
    from train.efficientnet_lite import build_efficientnet_lite, num_blocks  # lazy: optional port

    arch = parse_arch(TRANSFER_PREFIX + name)
    variant, most = arch.lite_variant, num_blocks(arch.lite_variant)
    if arch.blocks and not (arch.blocks.isdigit() and 1 <= int(arch.blocks) <= most):
        raise ModelError(f"{name!r}: the number after {arch.backbone}: is how many of its {most} blocks to keep")
    if weights == "imagenet":
        raise ModelError(f"{arch.backbone}'s ImageNet weights come from a port: run "
                         f"`python -m train.port_lite --variant {variant} --out FILE` and give --weights FILE")
    try:
        return build_efficientnet_lite((*shape, 1), weights=None if weights == "none" else weights,
                                       blocks=int(arch.blocks or most), bn_momentum=BN_MOMENTUM, variant=variant)
    except FileNotFoundError as exc:
        raise ModelError(str(exc)) from exc


def _application(name: str, shape, weights: str):
    """keras.applications backbone without top, weights 'imagenet', a file path or 'none'."""
    factory = getattr(keras.applications, name, None)
    if not callable(factory):
        raise ModelError(f"unknown keras.applications model {name!r} (e.g. MobileNetV2, EfficientNetB0, VGG16, ResNet50V2, "
                         f"or one of {', '.join(LITE_BACKBONES)})")
    if weights not in ("none", "imagenet") and not Path(weights).is_file():
        raise ModelError(f"weights file {weights} not found")
    try:
        backbone = factory(include_top=False, weights="imagenet" if weights == "imagenet" else None, input_shape=shape)
    except Exception as exc:  # noqa: BLE001 - a failed download raises many types
        raise ModelError(f"could not load {name} with weights {weights!r}: {exc}. Without network access "
                         "use --weights PATH (a .weights.h5 file) or --weights none") from exc
    if weights not in ("none", "imagenet"):
        backbone.load_weights(weights)
    return backbone


# keras.applications.imagenet_utils modes, expressed as layers on 0..255 input.
_CAFFE_MEAN = (103.939, 116.779, 123.68)  # BGR means; grey input makes the order moot
_TORCH_MEAN = tuple(255 * m for m in (0.485, 0.456, 0.406))
_TORCH_STD = tuple(255 * s for s in (0.229, 0.224, 0.225))


def _family_preprocessing(name: str):
    """Map 0..255 to what the family's ImageNet weights were trained on (imagenet_utils modes)."""
    lowered = name.lower()
    if lowered.startswith(("efficientnet", "convnext", "regnet", "mobilenetv3", "resnetrs")):
        return layers.Identity(name="backbone_preprocess")  # these normalise inside (include_preprocessing)
    if lowered.startswith(("vgg", "resnet50", "resnet101", "resnet152")) and not lowered.endswith("v2"):
        return layers.Normalization(mean=_CAFFE_MEAN, variance=(1.0, 1.0, 1.0), name="backbone_preprocess")
    if lowered.startswith("densenet"):
        return layers.Normalization(mean=_TORCH_MEAN, variance=tuple(s * s for s in _TORCH_STD), name="backbone_preprocess")
    return layers.Rescaling(1 / 127.5, offset=-1.0, name="backbone_preprocess")  # "tf" mode: MobileNet, ResNetV2, ...


BUILDERS: dict[str, Callable] = {"baseline": baseline, "tuned": tuned, "mobile": mobile}


def build(arch: str, shape: tuple[int, int], n_outputs: int, bias: list[float], weights: str = "none",
          freeze: bool = False) -> keras.Model:
    """Build architecture ``arch`` (a name in :data:`ARCHS` or ``transfer:<name>``)."""
    parsed = parse_arch(arch)
    if parsed.pretrained:
        return transfer(arch[len(TRANSFER_PREFIX):], shape, n_outputs, bias, weights, freeze)
    if arch not in BUILDERS:
        raise ModelError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)} or transfer:<keras.applications name>")
    return BUILDERS[arch](shape, n_outputs, bias)
