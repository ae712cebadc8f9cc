"""Compile and fit: distribution strategy (one device, local GPUs, a cluster), precision, LR schedule,
best/last checkpoints, resume."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from train.rundir import BEST_MODEL, HISTORY_FILE, LAST_MODEL, MONITOR, STATE_FILE


def cluster_size() -> int:
    """How many training processes (chief and workers) ``TF_CONFIG`` names; 0 when it is unset.

    Read with TensorFlow's resolver, which is plain Python: no TensorFlow op runs.
    """
    jobs = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec().as_dict()
    return sum(len(jobs.get(job, ())) for job in ("chief", "worker"))


def select_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when ``TF_CONFIG`` names several workers, MirroredStrategy across
    several local GPUs, else the default (one device).

    Call it before any other TensorFlow op: MultiWorkerMirroredStrategy configures the runtime's
    collective ops, and returns only once every worker of the cluster has started (docs/training.md).
    """
    if cluster_size() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The public ``tf.distribute`` name of ``strategy``, as run.json records it.

    TensorFlow's own class names differ: MultiWorkerMirroredStrategy is a
    ``CollectiveAllReduceStrategy`` and the default strategy a ``_DefaultDistributionStrategy``.
    """
    for name in ("MultiWorkerMirroredStrategy", "MirroredStrategy"):
        if isinstance(strategy, getattr(tf.distribute, name)):
            return name
    return "DefaultStrategy"


def cluster_task(strategy: tf.distribute.Strategy) -> str | None:
    """This process's task in a cluster ('worker 1'); None on a single machine."""
    resolver = strategy.cluster_resolver
    return f"{resolver.task_type} {resolver.task_id}" if resolver else None


@contextlib.contextmanager
def worker_folder(strategy: tf.distribute.Strategy, out: Path) -> Iterator[Path]:
    """Where this process writes the run: ``out`` on the chief (and on a single machine); a
    temporary folder, deleted afterwards, on the other workers of a cluster.

    Keras's multi-worker pattern: every worker saves, since saving may read synchronised
    variables through collective ops that wait for all of them, but one folder has one writer.
    """
    if strategy.extended.should_checkpoint:
        yield out
        return
    folder = Path(tempfile.mkdtemp(prefix="cxr-edge-worker-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def trained_digest(model: keras.Model) -> str:
    """A short hash of the trainable weights' bytes: equal exactly when two models hold the same.

    On a cluster every worker applies the same all-reduced gradients, so these agree bit for
    bit. Batch norm's moving statistics are left out: Keras 3 updates them on each replica from
    its own share of the batch, without averaging, so the workers' differ (measured: every
    moving mean and variance did, every trainable weight agreed); the chief's are saved.
    """
    digest = hashlib.sha256()
    for weight in model.trainable_weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow; with ``deterministic``, the same weights bit for bit.

    The seed alone does not repeat a run: TensorFlow's threads add floating-point sums and
    draw the augmentation's random numbers in varying order (docs/training.md).
    """
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def select_precision(requested: str) -> str:
    """'auto' -> mixed_float16 on GPUs with tensor cores (compute capability >= 7), else float32.

    On this CPU (AMX bf16) mixed_bfloat16 measured no faster than float32 for the mobile
    model (37.1 vs 36.7 img/s), so auto keeps float32 on CPUs.
    """
    policy = requested
    if requested == "auto":
        policy = "float32"
        for gpu in tf.config.list_physical_devices("GPU"):
            capability = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
            if capability >= (7, 0):
                policy = "mixed_float16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


@keras.saving.register_keras_serializable("cxr_edge")
class ScreenAUC(keras.metrics.AUC):
    """ROC AUC of the screening score P(not NORMAL); for softmax that is 1 - p[NORMAL]."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        if y_pred.shape[-1] > 1:
            y_true, y_pred = 1.0 - y_true[:, :1], 1.0 - y_pred[:, :1]
        return super().update_state(y_true, y_pred, sample_weight)


def learning_rate(peak: float, epochs: int, steps_per_epoch: int, schedule: str):
    """'cosine': one warm-up epoch to ``peak`` then cosine decay to 2% of it; 'constant': ``peak``."""
    if schedule == "constant":
        return peak
    warmup = steps_per_epoch
    decay = max(1, (epochs - 1) * steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(peak / 10, decay, alpha=0.02, warmup_target=peak, warmup_steps=warmup)


def compile_model(model: keras.Model, lr, n_outputs: int) -> None:
    if n_outputs == 1:
        loss, accuracy = "binary_crossentropy", keras.metrics.BinaryAccuracy(name="accuracy")
    else:
        loss, accuracy = "categorical_crossentropy", keras.metrics.CategoricalAccuracy(name="accuracy")
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=[ScreenAUC(name="auc"), accuracy])


class Checkpoints(keras.callbacks.Callback):
    """Save the last epoch (for resume) and the best by validation AUC; stop after ``patience``.

    The best score and wait count live in ``train_state.json`` so a resumed run keeps
    early stopping where it left off. Each file is written beside its name and renamed over
    it, so a crash mid-save leaves the previous checkpoint whole.
    """

    def __init__(self, out: Path, patience: int, state: dict, saved: keras.Model | None = None):
        super().__init__()
        self.out, self.patience, self.state, self.saved = out, patience, state, saved

    def on_epoch_end(self, epoch, logs=None):
        score = float((logs or {}).get(MONITOR, float("nan")))
        state = self.state
        if not math.isnan(score) and score > state.get("best", -1.0):
            state.update(best=score, best_epoch=epoch + 1, wait=0)
            _replace(self.out / BEST_MODEL, (self.saved or self.model).save)
        else:
            state["wait"] = state.get("wait", 0) + 1
        state["epoch"] = epoch + 1
        _replace(self.out / LAST_MODEL, (self.saved or self.model).save)
        _replace(self.out / STATE_FILE, lambda partial: partial.write_text(json.dumps(state, indent=1)))
        if self.patience and state["wait"] >= self.patience:
            self.model.stop_training = True


def _replace(path: Path, write) -> None:
    """``write`` a partial file beside ``path`` (same suffix, as Keras wants) and rename it over ``path``."""
    partial = path.with_name(f".partial-{path.name}")
    write(partial)
    os.replace(partial, path)


def load_state(out: Path) -> dict:
    path = out / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def fit(model: keras.Model, out: Path, train_ds, val_ds, epochs: int, patience: int, state: dict,
        verbose: int = 2, saved: keras.Model | None = None, callbacks: Sequence = ()) -> dict:
    """Train from ``state['epoch']`` (0 for a fresh run) to ``epochs``; return the final state.

    ``saved``: the model checkpoints hold when it is not the one trained (a quantization-aware twin).
    """
    callbacks = [
        *callbacks,
        keras.callbacks.CSVLogger(str(out / HISTORY_FILE), append=bool(state.get("epoch"))),
        Checkpoints(out, patience, state, saved),
    ]
    if state.get("epoch", 0) < epochs and not (patience and state.get("wait", 0) >= patience):
        if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            _fit_on_a_cluster(model, train_ds.element_spec)
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=state.get("epoch", 0),
                  callbacks=callbacks, verbose=verbose, shuffle=False)  # the dataset shuffles itself
    return state


def _fit_on_a_cluster(model: keras.Model, batch_spec) -> None:
    """What Keras 3 (3.15 at least) needs to fit under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Two of its ``strategy.reduce`` calls fail there: before the first batch, fit averages a
    whole batch tuple across workers to build the loss and metric state (the strategy reduces
    single tensors only); after each step, it averages each scalar log along an axis 0 it does
    not have. The build needs only shapes and dtypes, which the dataset's spec gives; the step
    logs are averaged across replicas, as Keras does on one machine. (The logs the callbacks see
    at each epoch's end are read from the metrics themselves, summed across all workers: the
    checkpoints judge the AUC of the whole validation split on every worker alike.)
    """
    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=batch_spec)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    _average_step_logs_across_workers()


@functools.cache
def _average_step_logs_across_workers() -> None:
    """Replace Keras's per-step reduction of the logs for MultiWorkerMirroredStrategy (once per process)."""
    from keras.src.backend.tensorflow import trainer

    keras_reduce = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction == "auto" and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return keras.tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    trainer.reduce_per_replica = reduce_per_replica


def output_bias(counts: np.ndarray, weights: np.ndarray) -> list[float]:
    """Initial output bias from the class prior the loss sees (counts x class weights).

    With balanced class weights that prior is uniform, so the bias is 0; without them a
    sigmoid starts at log(pos/neg), a softmax at log(prior).
    """
    prior = counts * weights / np.sum(counts * weights)
    prior = np.clip(prior, 1e-6, 1.0)
    if len(counts) == 2:
        return [float(np.log(prior[1] / prior[0]))]
    return [float(v) for v in np.log(prior)]


def class_weights(counts: np.ndarray) -> np.ndarray:
    """Balanced weights n / (k * count_k): each class contributes equally to the loss."""
    counts = np.maximum(counts, 1)
    return counts.sum() / (len(counts) * counts)
