"""What shapes a run: :class:`RunConfig`, the per-architecture defaults, and the one parser of ``--arch``.

The bottom of ``train/`` above ``data``: it imports nothing else of the package, so the
run-folder format, the features, the measurements and the trainer all read it downward.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path
from typing import Any, NamedTuple

from cxr_edge import decision
from cxr_edge.preprocess import NORMALIZE_CHOICES, Contract
from train import data
from train.data import TASK_LABELS

TRANSFER_PREFIX = "transfer:"
LITE_BACKBONES = {"EfficientNetLite0": "lite0", "EfficientNetLite1": "lite1", "EfficientNetLite2": "lite2"}
BUILT_IN_ARCHS = ("baseline", "tuned", "mobile")


class Arch(NamedTuple):
    """One ``--arch`` value, parsed: ``baseline``, ``tuned``, ``mobile`` or ``transfer:<backbone>[:<blocks>]``.

    ``backbone`` is a keras.applications name or ``EfficientNetLite0``/``1``/``2``; ``blocks``
    (Lite only, the text after its second colon, "" when absent) is how many of its blocks to keep.
    """

    name: str
    backbone: str | None = None
    blocks: str = ""

    @property
    def pretrained(self) -> bool:
        """A pretrained backbone with a new head (``transfer:...``), the only kind --freeze-backbone and --weights apply to."""
        return self.backbone is not None

    @property
    def lite_variant(self) -> str | None:
        """``lite0``/``lite1``/``lite2`` for the ported EfficientNet-Lite backbones, else None."""
        return LITE_BACKBONES.get(self.backbone or "")

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


def option(default, help: str, **cli) -> Any:
    """A :class:`RunConfig` field and how ``python -m train fit`` offers it: the one place its help,
    type and default are written (``train/cli.py`` makes the Click options from these).

    ``cli`` keys: ``choices``, ``range`` (lo, hi; None: open), ``type``, ``path`` (a folder), ``file``
    (an existing file), ``envvar``,
    ``required``, ``switch`` (``--x/--no-x``), ``multiple``, ``zero_is_none``, ``by_arch`` (the
    option defaults to the architecture's value, :data:`ARCH_DEFAULTS`), ``cli=False`` (not an
    option of its own: ``--arch`` and ``--out`` differ by command).
    """
    if default is dataclasses.MISSING:
        kwargs = {}
    else:
        kwargs = {"default_factory": tuple} if isinstance(default, tuple) else {"default": default}
    return dataclasses.field(metadata={"help": help, **cli}, **kwargs)


@dataclasses.dataclass
class RunConfig:
    """Every choice that shapes a run (saved as run.json)."""

    data: str = option(dataclasses.MISSING, "Kermany-style folder {train,val}/{NORMAL,PNEUMONIA}/ (or $CXR_DATA).",
                       path=True, envvar="CXR_DATA", required=True)
    out: str = option(dataclasses.MISSING, "Run folder to create.", cli=False)
    task: str = option("binary", "binary: NORMAL vs PNEUMONIA; subtype: NORMAL / BACTERIAL / VIRAL.",
                       choices=tuple(TASK_LABELS))
    arch: str = option("mobile", "baseline, tuned, mobile, or transfer:<keras.applications name> (e.g. transfer:MobileNetV2).",
                       cli=False)
    weights: str = option("none", "Backbone weights for transfer:<name>: imagenet, a file path, or none.")
    freeze_backbone: bool = option(False, "transfer:<name> only: train the new head on frozen pretrained features.")
    size: int = option(224, "Input side in pixels.", range=(32, 1024))
    normalize: str = option("none", "Intensity normalisation of the shared preprocessing contract.",
                            choices=NORMALIZE_CHOICES)
    epochs: int = option(10, "Maximum epochs [arch default].", range=(1, None), by_arch=True)
    batch_size: int = option(32, "Global batch: the images of one optimizer step, split among all replicas (local "
                             "GPUs, cluster workers), so a run trains alike on any number of them.", range=(1, None))
    lr: float = option(1e-3, "Peak Adam learning rate.")
    schedule: str = option("cosine", "LR schedule [cosine; baseline: constant].", choices=("cosine", "constant"),
                           by_arch=True)
    patience: int = option(5, "Stop after this many epochs without a better validation AUC (0: never).", range=(0, None))
    augment: bool = option(True, "Training augmentation [on; baseline: off].", switch=True, by_arch=True)
    hflip: bool = option(False, "Also flip horizontally (off: the heart is on the left).", switch=True)
    lowres_prob: float = option(0.25, "Chance a training batch is down-sampled to 40-80% and back (soft films; "
                                "0: never).", range=(0.0, 1.0))
    soften_normals: float = option(0.0, "Chance each NORMAL training film is down-sampled to 40-80% and back, so "
                                   "softness stops predicting pneumonia (the publisher's normals are the sharper "
                                   "films; docs/shift-validation.md).", range=(0.0, 1.0))
    jpeg_augment: bool = option(True, "Also re-encode half the training images as JPEG at quality 25-95 (breaks a "
                                "compression-artifact shortcut).", switch=True)
    reencode_jpeg: int | None = option(75, "Contract 2: JPEG quality of the round trip after a resize, as the Kermany "
                                       "copies were saved (0: none, contract 1).", range=(0, 95), zero_is_none=True)
    class_weights: bool = option(True, "Balanced class weights [on; baseline: off].", switch=True, by_arch=True)
    val_fraction: float = option(0.2, "Share of images (whole patients) carved from train for validation.",
                                 range=(0.05, 0.5))
    val_patients: str | None = option(None, "A file of patient keys, one per line, to validate on instead of a "
                                      "random --val-fraction of patients (e.g. the shift-aware split of "
                                      "`python -m train shift`).", file=True)
    seed: int = option(42, "Seeds weights, augmentation and shuffling.")
    split_seed: int | None = option(None, "Seed of the patient split [--seed]: vary --seed alone to retrain on the "
                                    "same split.", type=int)
    deterministic: bool = option(False, "Bit-for-bit repeatable on the same machine and versions: deterministic "
                                 "TensorFlow kernels and augmentation order (no cost measured on CPU; may be slower "
                                 "on GPUs, see docs/training.md).")
    teacher: tuple[str, ...] = option((), "Distil: blend the labels with this bundle's probabilities (name or manifest; "
                                      "repeat to average an ensemble). It must have been trained on this run's patient "
                                      "split.", multiple=True)
    distill_weight: float = option(0.5, "With --teacher: the teachers' share of each training target.", range=(0.0, 1.0))
    init_from: str | None = option(None, "Start from this finished run's model instead of new weights (same task, "
                                   "arch, size and patient split).", path=True)
    quant_aware: bool = option(False, "Train as the int8 file computes: weights on their int8 grid, activations "
                               "rounded, batch norm frozen (fine-tune an --init-from model with a small --lr).")
    precision: str = option("auto", "auto: mixed_float16 on tensor-core GPUs, else float32.",
                            choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"))
    target_sensitivity: float = option(0.95, "Threshold rule: highest specificity with validation sensitivity >= this.",
                                       range=(0.5, 1.0))
    cache_dir: str | None = option(None, "Where decoded pixels are cached [$CXR_CACHE or ~/.cache/cxr-edge].", path=True)
    smoke: bool = option(False, "A few images and 2 epochs: checks the whole pipeline in seconds.")

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
        return decision.output_width(self.labels)


# Per-architecture defaults of the ``by_arch`` fields (others: RunConfig's): baseline reproduces the seed projects (no augmentation, no
# class weights, constant Adam 1e-3, 10 epochs); the others use the full recipe.
ARCH_DEFAULTS = {
    "baseline": {"epochs": 10, "augment": False, "class_weights": False, "schedule": "constant"},
    "tuned": {"epochs": 15},
    "mobile": {"epochs": 15},
}
def make_config(arch: str, out: str, **options) -> RunConfig:
    """CLI options (None = not given) -> RunConfig, filling gaps from the architecture's defaults
    (:data:`ARCH_DEFAULTS`), then from RunConfig's own."""
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig) if f.metadata.get("by_arch")}
    options = dict(options)
    for key, value in {**defaults, **ARCH_DEFAULTS.get(arch, {})}.items():
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
    default = AugmentConfig(hflip=cfg.hflip, lowres_prob=cfg.lowres_prob, soften_negatives=cfg.soften_normals)
    return default if cfg.jpeg_augment else dataclasses.replace(default, jpeg_prob=0.0)
