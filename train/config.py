"""What shapes a run: :class:`RunConfig`, the per-architecture defaults, and the one parser of ``--arch``.

The bottom of ``train/`` above ``data``: it imports nothing else of the package, so the
run-folder format, the features, the measurements and the trainer all read it downward.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path
from typing import NamedTuple

from cxr_edge.preprocess import Contract
from train import data

TRANSFER_PREFIX = "transfer:"
LITE0 = "EfficientNetLite0"
BUILT_IN_ARCHS = ("baseline", "tuned", "mobile")


class Arch(NamedTuple):
    """One ``--arch`` value, parsed: ``baseline``, ``tuned``, ``mobile`` or ``transfer:<backbone>[:<blocks>]``.

    ``backbone`` is a keras.applications name or ``EfficientNetLite0``; ``blocks`` (Lite0 only,
    the text after its second colon, "" when absent) is how many of its blocks to keep.
    """

    name: str
    backbone: str | None = None
    blocks: str = ""

    @property
    def pretrained(self) -> bool:
        """A pretrained backbone with a new head (``transfer:...``), the only kind --freeze-backbone and --weights apply to."""
        return self.backbone is not None

    @property
    def slug(self) -> str:
        """A folder-safe name (``transfer:MobileNetV2`` -> ``transfer-MobileNetV2``)."""
        return self.name.replace(TRANSFER_PREFIX, "transfer-").replace("/", "-")


def parse_arch(arch: str) -> Arch:
    """The one reading of the ``transfer:X:N`` grammar; every other module asks this."""
    if not arch.startswith(TRANSFER_PREFIX):
        return Arch(arch)
    backbone, _, blocks = arch[len(TRANSFER_PREFIX):].partition(":")
    return Arch(arch, backbone, blocks)


@dataclasses.dataclass
class RunConfig:
    """Every choice that shapes a run (saved as run.json)."""

    data: str
    out: str
    task: str = "binary"
    arch: str = "mobile"
    weights: str = "none"
    freeze_backbone: bool = False
    size: int = 224
    normalize: str = "none"
    epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-3
    schedule: str = "cosine"
    patience: int = 5
    augment: bool = True
    hflip: bool = False
    jpeg_augment: bool = True
    reencode_jpeg: int | None = 75
    class_weights: bool = True
    val_fraction: float = 0.2
    seed: int = 42
    split_seed: int | None = None
    deterministic: bool = False
    teacher: tuple[str, ...] = ()
    distill_weight: float = 0.5
    init_from: str | None = None
    quant_aware: bool = False
    precision: str = "auto"
    target_sensitivity: float = 0.95
    cache_dir: str | None = None
    smoke: bool = False

    @property
    def patient_split_seed(self) -> int:
        """The split's own seed, so runs with different training seeds can share validation patients."""
        return self.seed if self.split_seed is None else self.split_seed

    def command(self) -> str:
        """The full ``python -m train fit`` command that remakes this run, every option spelt out."""
        args = ["python", "-m", "train", "fit"]
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            flag = "--" + field.name.replace("_", "-")
            if isinstance(value, (tuple, list)):
                args += [a for item in value for a in (flag, item)]
            elif isinstance(value, bool):
                if value or field.name in ("augment", "jpeg_augment", "class_weights"):
                    args.append(flag if value else f"--no-{flag[2:]}")
            elif value is not None:
                args += [flag, str(value)]
            elif field.name == "reencode_jpeg":
                args += [flag, "0"]  # contract 1: the option's default would re-encode
        return " ".join(shlex.quote(a) for a in args)

    @property
    def contract(self) -> Contract:
        return Contract(width=self.size, height=self.size, normalize=self.normalize,
                        reencode_quality=self.reencode_jpeg)

    @property
    def labels(self) -> tuple[str, ...]:
        return data.TASK_LABELS[self.task]

    @property
    def n_outputs(self) -> int:
        return 1 if len(self.labels) == 2 else len(self.labels)


# Per-architecture defaults: baseline reproduces the seed projects (no augmentation, no
# class weights, constant Adam 1e-3, 10 epochs); the others use the full recipe.
ARCH_DEFAULTS = {
    "baseline": {"epochs": 10, "augment": False, "class_weights": False, "schedule": "constant"},
    "tuned": {"epochs": 15},
    "mobile": {"epochs": 15},
}
FALLBACKS = {"epochs": 10, "schedule": "cosine", "augment": True, "class_weights": True}


def make_config(arch: str, out: str, **options) -> RunConfig:
    """CLI options (None = not given) -> RunConfig, filling gaps from the architecture's defaults."""
    options = dict(options)
    for key, value in {**FALLBACKS, **ARCH_DEFAULTS.get(arch, {})}.items():
        if options.get(key) is None:
            options[key] = value
    if not options.get("cache_dir"):
        options["cache_dir"] = os.environ.get("CXR_CACHE") or str(Path.home() / ".cache" / "cxr-edge")
    return RunConfig(arch=arch, out=out, **options)


def augment_config(cfg: RunConfig):
    """The run's training augmentation, or None when it trains on clean images."""
    from train.augment import AugmentConfig  # lazy: augment imports TensorFlow

    if not cfg.augment:
        return None
    default = AugmentConfig(hflip=cfg.hflip)
    return default if cfg.jpeg_augment else dataclasses.replace(default, jpeg_prob=0.0)
