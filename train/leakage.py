"""Whether a bundle may be scored on, or taught to, a run: same labels, contract and patients.

A model trained on another split has seen some of a run's validation patients: scored
there it looks better than it is, and as a distillation teacher or a starting point it
would carry those patients into training. A run's split is known exactly from its
``split.csv``; a bundle's manifest records a fingerprint of its run's validation patients
(bundles converted before it was recorded fall back to the split seed and validation
fraction in their training command, which identify the split only for the same data folder).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Collection

from train.config import RunConfig
from train.rundir import MODEL_FILE, RUN_FILE, fingerprint, load_run, split_patients

if TYPE_CHECKING:
    from cxr_edge.bundle import Bundle


def training_split(manifest: dict) -> tuple[int, float]:
    """(patient split seed, validation fraction) a bundle's model was trained with, from its manifest."""
    command = (manifest.get("training_run") or {}).get("command")
    if not command:
        raise ValueError("its manifest records no training command")
    args = shlex.split(command)

    def option(flag: str) -> str | None:
        return args[args.index(flag) + 1] if flag in args else None

    # RunConfig's defaults are what a command without the flags used
    seed = option("--split-seed") or option("--seed") or RunConfig.seed
    return int(seed), float(option("--val-fraction") or RunConfig.val_fraction)


def check_split(bundle: Bundle, cfg: RunConfig, val_patients: Collection[str], role: str = "bundle",
                require: bool = True) -> bool:
    """Refuse a bundle trained on another patient split than ``cfg``'s; True when the splits match.

    ``val_patients`` are the run's validation patients. A bundle whose manifest records
    neither their fingerprint nor a training command is refused when ``require``, else
    reported as unchecked (False), for the caller to say so.
    """
    name = f"{role} {bundle.short_id}"
    recorded = (bundle.manifest.get("training_run") or {}).get("validation_patients")
    if recorded:
        if recorded != fingerprint(val_patients):
            raise ValueError(f"{name} was validated on other patients than this run: it has seen some of this "
                             "run's validation patients")
        return True
    try:
        split = training_split(bundle.manifest)
    except ValueError as exc:
        if require:
            raise ValueError(f"{name}: {exc}, so it may have seen this run's validation patients") from exc
        return False
    _same_split(name, split, cfg)
    return True


def check_bundle(bundle: Bundle, cfg: RunConfig, val_patients: Collection[str], role: str = "bundle") -> None:
    """Refuse a bundle that would mislead on ``cfg``'s run: other labels, contract, or validation patients."""
    name = f"{role} {bundle.short_id}"
    if tuple(bundle.labels) != tuple(cfg.labels):
        raise ValueError(f"{name} predicts {list(bundle.labels)}, this run {list(cfg.labels)}")
    if bundle.contract != cfg.contract:
        raise ValueError(f"{name} reads films through another preprocessing contract than this run")
    check_split(bundle, cfg, val_patients, role)


def check_start(cfg: RunConfig, source_dir: Path, val_patients: Collection[str]) -> None:
    """Refuse to start ``cfg``'s run from the model in ``source_dir`` unless it is the same model and
    trained on none of ``val_patients`` (this run's validation patients).

    One with other labels, architecture or input size is another model. The rest of the
    contract may change: fine-tuning under a new contract is adapting to it.
    """
    name = f"--init-from {source_dir}"
    if not (source_dir / RUN_FILE).is_file() or not (source_dir / MODEL_FILE).is_file():
        raise ValueError(f"{name} is not a finished run (it needs {RUN_FILE} and {MODEL_FILE})")
    source, _ = load_run(source_dir)
    for field in ("task", "arch", "size"):
        if getattr(source, field) != getattr(cfg, field):
            raise ValueError(f"{name} was trained with another {field} ({getattr(source, field)}) than this run "
                             f"({getattr(cfg, field)})")
    seen = split_patients(source_dir, "train") & set(val_patients)
    if seen:
        raise ValueError(f"{name} trained on {len(seen)} of this run's {len(set(val_patients))} validation patients: "
                         "it has seen some of this run's validation patients")


def _same_split(name: str, split: tuple[int, float], cfg: RunConfig) -> None:
    if split != (cfg.patient_split_seed, cfg.val_fraction):
        raise ValueError(f"{name} was trained on patient split (seed, fraction) {split}, this run uses "
                         f"{(cfg.patient_split_seed, cfg.val_fraction)}: it has seen some of this run's validation patients")
