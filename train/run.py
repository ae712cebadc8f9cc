"""One training run, start to finish: data -> split -> model -> fit -> predictions -> report.

Everything a run leaves goes into its folder, so a run can be audited, resumed,
evaluated again (``python -m train evaluate RUN``) and converted (``python -m convert RUN``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from train import data, distill, report, rundir
from train.config import RunConfig, augment_config
from train.leakage import check_start
from train.predict import predict
from train.rundir import (BEST_MODEL, LAST_MODEL, MODEL_FILE, PREDICTIONS_FILE, RUN_FILE, SPLIT_FILE, SUMMARY_FILE,
                          load_run, now, write_run_json, write_split)

if TYPE_CHECKING:
    import tensorflow as tf

    from cxr_edge.bundle import Bundle

SMOKE_PER_CLASS = 24


@dataclasses.dataclass(frozen=True)
class Split:
    """A run's records and its patient-grouped split, known before anything is written."""

    records: list[data.Record]
    unparsed: list[Path]
    train_idx: list[int]
    val_idx: list[int]

    @property
    def val_patients(self) -> set[str]:
        return {self.records[i].patient for i in self.val_idx}


def plan_split(cfg: RunConfig) -> Split:
    """Scan the data folder and split it by patient (file names only: fast, no decoding)."""
    records, unparsed = data.scan(Path(cfg.data))
    unlabelled = [r.path.name for r in records if r.subtype not in data.SUBTYPES] if cfg.task == "subtype" else []
    if unlabelled:
        raise data.DataError(f"{len(unlabelled)} PNEUMONIA file name(s) say neither bacteria nor virus (e.g. "
                             f"{unlabelled[0]}), so the subtype task cannot label them: rename or remove them")
    if cfg.smoke:
        records = _smoke_subset(records, cfg.patient_split_seed)
    if cfg.val_patients:
        listed = data.read_val_patients(Path(cfg.val_patients))
        return Split(records, unparsed, *data.split_by_list(records, listed, Path(cfg.val_patients)))
    return Split(records, unparsed, *data.patient_split(records, cfg.val_fraction, cfg.patient_split_seed))


def prepare_data(cfg: RunConfig, split: Split | None = None, log=print, out: Path | None = None):
    """Decode (cached) the split's images; write split.csv and the data summary into ``out`` [``cfg.out``]."""
    out = out or Path(cfg.out)
    split = split or plan_split(cfg)
    records, unparsed, train_idx, val_idx = split.records, split.unparsed, split.train_idx, split.val_idx
    pixels, sizes = data.load_pixels(records, cfg.contract, Path(cfg.cache_dir) if cfg.cache_dir else None)
    summary = data.summarize(records, train_idx, val_idx, sizes, unparsed)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    write_split(out / SPLIT_FILE, records, set(val_idx), Path(cfg.data))
    log(data.summary_text(summary))
    return records, np.asarray(train_idx), np.asarray(val_idx), pixels


def _smoke_subset(records, seed: int):
    """A few images per class folder: enough to run every step in seconds."""
    rng = np.random.default_rng(seed)
    keep = []
    for label in data.CLASS_DIRS:
        idx = [i for i, r in enumerate(records) if r.label == label]
        keep.extend(rng.permutation(idx)[:SMOKE_PER_CLASS])
    return [records[i] for i in sorted(keep)]


def train(cfg: RunConfig, resume: bool = False, log=print) -> Path:
    """Run training as configured; return the run folder.

    On a cluster (``TF_CONFIG``: docs/training.md) every worker runs this on the same --out: the
    chief writes the run folder, the others write the same files into a temporary folder.
    """
    from train import fit  # lazy: TensorFlow loads when a run starts, not when the CLI does

    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise data.DataError(f"run folder {out} is not empty: use --resume to continue it or choose another --out")
    # What a resume reads is read before the strategy exists: no worker writes until all have started.
    cfg, earlier = resumed_config(cfg, out) if resume else (cfg, {})
    state = fit.load_state(out) if resume else {}
    strategy = fit.select_strategy()  # before any other TensorFlow op, as MultiWorkerMirroredStrategy requires
    with fit.worker_folder(strategy, out) as folder:
        if folder != out:
            log(f"{fit.cluster_task(strategy)}: the chief writes {out}; this worker writes into {folder}, deleted at the end")
        _train(cfg, folder, strategy, state, earlier, log)
    return out


def _train(cfg: RunConfig, out: Path, strategy: tf.distribute.Strategy, state: dict, earlier: dict, log=print) -> None:
    """Train, writing into ``out`` (:func:`train.fit.worker_folder`); resume from ``state`` and the
    last checkpoint in the run folder, ``cfg.out``."""
    import keras

    from train import fit, models, pipeline  # lazy: TensorFlow

    run_folder = Path(cfg.out)
    split = plan_split(cfg)
    teachers = distill.load_teachers(cfg, split.val_patients)  # a wrong teacher or start fails before the run folder exists
    if cfg.init_from:
        check_start(cfg, Path(cfg.init_from), split.val_patients)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    fit.seed_everything(cfg.seed, cfg.deterministic)
    policy = fit.select_precision(cfg.precision)
    records, train_idx, val_idx, pixels = prepare_data(cfg, split, log, out)
    y = np.array([r.target(cfg.task) for r in records])
    counts = np.bincount(y[train_idx], minlength=len(cfg.labels)).astype(float)
    weights = fit.class_weights(counts) if cfg.class_weights else np.ones(len(cfg.labels))
    steps = int(np.ceil(len(train_idx) / cfg.batch_size))
    lr = fit.learning_rate(cfg.lr, cfg.epochs, steps, cfg.schedule)
    with strategy.scope():
        if state.get("epoch") and (run_folder / LAST_MODEL).exists():
            log(f"resuming after epoch {state['epoch']} from {run_folder / LAST_MODEL}")
            model = keras.models.load_model(run_folder / LAST_MODEL)
        elif cfg.init_from:
            state = {}
            model = keras.models.load_model(Path(cfg.init_from) / MODEL_FILE, compile=False)
            fit.compile_model(model, lr, cfg.n_outputs)
        else:
            state = {}
            model = models.build(cfg.arch, (cfg.size, cfg.size), cfg.n_outputs, fit.output_bias(counts, weights), cfg.weights,
                                 cfg.freeze_backbone)
            fit.compile_model(model, lr, cfg.n_outputs)
        trained, callbacks = (quant_aware_twin(cfg, model, lr, pixels[train_idx], state.get("epoch", 0) * steps, log)
                              if cfg.quant_aware else (model, []))
    log(f"{cfg.arch}: {model.count_params():,} parameters; precision {policy}; {strategy.num_replicas_in_sync} replica(s); "
        f"class weights {np.round(weights, 3).tolist()}")
    write_run_json(cfg, out, {"class_counts_train": counts.tolist(), "class_weights": weights.tolist(),
                               "precision": policy, "parameters": model.count_params(),
                               "started": earlier.get("started", now()), "strategy": fit.strategy_name(strategy),
                               "replicas": strategy.num_replicas_in_sync})
    train_ds = pipeline.dataset(pixels[train_idx], training_targets(cfg, y[train_idx], pixels[train_idx], teachers, out, log),
                                cfg.batch_size, sample_weights=weights[y[train_idx]],
                                augment_cfg=augment_config(cfg), shuffle_seed=cfg.seed)
    val_ds = pipeline.dataset(pixels[val_idx], pipeline.one_hot_targets(y[val_idx], cfg.n_outputs), 64)
    epochs = 2 if cfg.smoke else cfg.epochs
    state = fit.fit(trained, out, train_ds, val_ds, epochs, cfg.patience, state, verbose=0 if cfg.smoke else 2,
                    saved=model, callbacks=callbacks)
    task = fit.cluster_task(strategy)
    if task:  # every worker must end with the same trained weights: compare these lines
        log(f"{task}: trained weights sha256 {fit.trained_digest(model)} after epoch {state.get('epoch')}")
    if out != run_folder:
        return  # not the chief: the run folder's predictions and report are the chief's
    shutil.copyfile(out / BEST_MODEL, out / MODEL_FILE)
    best = keras.models.load_model(out / MODEL_FILE, compile=False)
    write_predictions(out / PREDICTIONS_FILE, best, records, val_idx, pixels, cfg)
    write_run_json(cfg, out, {"finished": now(), "wall_s": round(earlier.get("wall_s", 0) + time.time() - started, 1),
                               "best_epoch": state.get("best_epoch"), "epochs_run": state.get("epoch")})
    report.write_report(out, log=log)


def quant_aware_twin(cfg: RunConfig, model, lr, train_pixels: np.ndarray, step: int = 0, log=print) -> tuple[Any, list]:
    """The twin that trains ``model`` as int8 computes, compiled, and the callback that keeps weights on the grid.

    Its optimizer is new, so its schedule starts at ``step``: where a resumed run stopped.
    """
    from train import fit, quant_aware  # lazy: TensorFlow

    snapper = quant_aware.SnapWeights(model)
    pick = quant_aware.range_picks(len(train_pixels), cfg.seed)
    trained, fakes = quant_aware.twin(model, train_pixels[pick][..., None].astype("float32"))
    fit.compile_model(trained, lr, cfg.n_outputs)
    trained.optimizer.iterations.assign(step)
    log(f"quantization-aware: {len(snapper.kernels)} kernels on their int8 grid, {len(fakes)} rounded activations, "
        f"ranges started from {len(pick)} training images")
    return trained, [snapper]


def training_targets(cfg: RunConfig, y: np.ndarray, pixels: np.ndarray, teachers: list[Bundle], out: Path,
                     log=print) -> np.ndarray:
    """What the loss fits: the labels, or their blend with the teacher bundles' mean probabilities."""
    from train import pipeline  # lazy: TensorFlow

    hard = pipeline.one_hot_targets(y, cfg.n_outputs)
    if not teachers:
        return hard
    ids = [b.short_id for b in teachers]
    log(f"distilling from {' + '.join(ids)} on {len(pixels)} training images (weight {cfg.distill_weight})")
    write_run_json(cfg, out, {"teachers": ids})
    return distill.blend(hard, distill.teacher_probabilities(teachers, pixels), cfg.distill_weight)


def resumed_config(cfg: RunConfig, out: Path) -> tuple[RunConfig, dict]:
    """A resumed run keeps its recorded config (only a larger --epochs extends it, at the floor
    of the schedule fixed for the old length: ``docs/training.md``) and its record.

    So resuming never rewrites what a run was, e.g. a finished baseline resumed by
    ``compare`` with other options.
    """
    if not (out / RUN_FILE).exists():
        return cfg, {}
    saved, record = load_run(out)
    return dataclasses.replace(saved, epochs=max(saved.epochs, cfg.epochs)), record


def write_predictions(path: Path, model, records, idx, pixels, cfg: RunConfig) -> None:
    """Validation predictions, one row per image: the record and each class probability."""
    rundir.write_predictions(path, predict(model, pixels[idx]), [records[i] for i in idx], Path(cfg.data),
                             cfg.labels, cfg.task)


