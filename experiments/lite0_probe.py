"""Does the ported ImageNet EfficientNet-Lite0 pay for itself? A frozen-feature probe.

    python -m experiments.lite0_probe --data $CXR_DATA --weights runs/weights/efficientnet_lite0.weights.h5 \\
        --fullres ../shared/data/fullres --out runs/lite0_probe/imagenet

The cheapest honest test of pretrained features: run every image once through the frozen
backbone (global-average-pooled 1280 features), fit a logistic regression on the
patient-grouped training side (the split of ``python -m train fit`` with the same seed and
fraction; the regression's strength chosen by patient-grouped cross-validation), and fold
scaler and regression into one Keras model (``OUT/{binary,subtype}.keras``: pixels in,
probabilities out, ready for int8 conversion). The binary model is then scored by
:mod:`train.robustness` exactly as a trained run is (``python -m train robustness RUN``):
clean validation, acquisition shifts at the clean-validation threshold, calibration, and
full-resolution originals against their 224-px copies; so its ``robustness.md`` compares
row by row with a from-scratch run's of the same contract. The probe reads films through
contract 1 (no JPEG round trip after a resize), as the runs it was compared with then did:
its clean and shifted rows equal contract 2's (the 224-px copies are not resized), its
full-resolution rows do not. Leave out ``--weights`` for the random-weights control. The
official test split is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from cxr_edge.review import metrics
from cxr_edge.preprocess import Contract
from train import robustness
from train.data import TASK_LABELS, load_pixels, patient_split, scan


def lite0_backbone(weights: str | None):
    """Frozen Lite0, global-average-pooled: pixels (N, 224, 224, 1) -> (N, 1280) features."""
    import keras

    from train.efficientnet_lite import build_efficientnet_lite

    keras.utils.set_random_seed(0)  # the 'random' control is the same network every run
    return build_efficientnet_lite(weights=weights, pooling="avg")


def extract(backbone, pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    return backbone.predict(pixels[..., None].astype(np.float32), batch_size=batch, verbose=0)


def augmented_features(backbone, pixels: np.ndarray, copies: int, batch: int = 128) -> np.ndarray:
    """Features of ``copies`` randomly augmented versions of ``pixels`` (stacked copy by copy).

    The augmentation is the trainer's own (:func:`train.augment.augment`, default strengths),
    so the probe sees what a from-scratch run sees: intensity, sharpness, noise, resolution.
    """
    import tensorflow as tf

    from train.augment import AugmentConfig, augment

    tf.random.set_seed(0)
    cfg = AugmentConfig()
    out = []
    for _ in range(copies):
        for start in range(0, len(pixels), batch):
            images = augment(tf.constant(pixels[start:start + batch, ..., None], tf.float32), cfg)
            out.append(backbone.predict(images.numpy(), batch_size=32, verbose=0))
    return np.concatenate(out) if out else np.zeros((0, backbone.output_shape[-1]), np.float32)


def fit_head(features: np.ndarray, targets: np.ndarray, groups: np.ndarray):
    """Standardise + balanced logistic regression, C chosen by 5-fold patient-grouped CV."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
    scoring = "roc_auc" if len(np.unique(targets)) == 2 else "balanced_accuracy"
    search = GridSearchCV(pipeline, {"logisticregression__C": [0.001, 0.01, 0.1]}, scoring=scoring, cv=GroupKFold(5))
    search.fit(features, targets, groups=groups)
    return search.best_estimator_, float(search.best_params_["logisticregression__C"])


def export_model(backbone, head, task: str):
    """The probe as one Keras model (pixels -> probabilities): the scaler folds into the Dense.

    ``sigmoid/softmax(((f - mean) / scale) @ coef.T + b)`` is what ``predict_proba`` computes,
    so the exported model is the shippable form of the probe, ready for int8 conversion.
    """
    import keras

    scaler, regression = head.named_steps["standardscaler"], head.named_steps["logisticregression"]
    kernel = (regression.coef_ / scaler.scale_).T
    bias = regression.intercept_ - (regression.coef_ * scaler.mean_ / scaler.scale_).sum(axis=1)
    dense = keras.layers.Dense(kernel.shape[1], activation="sigmoid" if task == "binary" else "softmax", name="prediction")
    model = keras.Model(backbone.input, dense(backbone.output), name=f"lite0_probe_{task}")
    dense.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model


def positive_probability(probs: np.ndarray) -> np.ndarray:
    """P(not NORMAL): the sigmoid itself, or 1 - p[NORMAL] for several classes (the bundle rule)."""
    return probs[:, 0] if probs.shape[1] == 1 else 1.0 - probs[:, 0]


def subtype_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Three-class accuracy, bacterial vs viral among true pneumonias, screening AUC."""
    pneumonia = y != 0
    return {
        "class_accuracy": float(np.mean(probs.argmax(axis=1) == y)),
        "bacterial_vs_viral": float(np.mean(probs[pneumonia, 1:].argmax(axis=1) + 1 == y[pneumonia])),
        "screening_auc": metrics.roc_auc(pneumonia.astype(int), positive_probability(probs)),
    }


def binary_robustness(model, pixels: np.ndarray, y: np.ndarray, contract: Contract, fullres: Path | None,
                      data: Path) -> dict:
    """:func:`train.robustness.measure`'s result for a model that is not a run folder."""
    clean = positive_probability(model.predict(pixels[..., None].astype(np.float32), verbose=0))
    threshold = metrics.threshold_for_sensitivity(y, clean, 0.95)
    return robustness.score_shifts(robustness.keras_scorer(model), pixels, y, threshold, contract, fullres, data,
                                   clean=clean)


def _targets(records, idx, task: str) -> np.ndarray:
    return np.array([records[i].target(task) for i in idx])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.lite0_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("CXR_DATA"), help="Kermany-style folder ($CXR_DATA)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the models, results.json and robustness.md")
    parser.add_argument("--weights", default=None, help="ported .weights.h5; leave out for the random-weights control")
    parser.add_argument("--fullres", type=Path, default=None, help="full-resolution originals (fullres/{NORMAL,PNEUMONIA})")
    parser.add_argument("--augment-copies", type=int, default=0,
                        help="also fit on this many augmented copies of the training images (train.augment)")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache-dir", type=Path, default=os.environ.get("CXR_CACHE") or Path.home() / ".cache" / "cxr-edge",
                        help="decoded-pixel cache, shared with python -m train [$CXR_CACHE or ~/.cache/cxr-edge]")
    args = parser.parse_args(argv)
    if args.data is None:
        parser.error("give --data or set $CXR_DATA")

    contract = Contract()  # contract 1: see the module docstring
    records, _ = scan(args.data)
    train_idx, val_idx = patient_split(records, args.val_fraction, args.seed)
    pixels, _ = load_pixels(records, contract, args.cache_dir)
    backbone = lite0_backbone(args.weights)
    train_features, val_features = extract(backbone, pixels[train_idx]), extract(backbone, pixels[val_idx])
    copies = 1 + args.augment_copies
    train_features = np.concatenate([train_features, augmented_features(backbone, pixels[train_idx], args.augment_copies)])
    train_idx_all = list(train_idx) * copies  # an augmented copy keeps its image's label and patient
    groups = np.array([records[i].patient for i in train_idx_all])
    report: dict = {"command": " ".join(["python -m experiments.lite0_probe", *(argv or sys.argv[1:])]),
                    "weights": args.weights or "random", "augment_copies": args.augment_copies,
                    "n_train": len(train_idx), "n_val": len(val_idx)}
    args.out.mkdir(parents=True, exist_ok=True)
    models = {}
    for task in TASK_LABELS:
        head, report[f"{task}_C"] = fit_head(train_features, _targets(records, train_idx_all, task), groups)
        models[task] = export_model(backbone, head, task)
        models[task].save(args.out / f"{task}.keras")
        if task == "subtype":
            report["subtype"] = subtype_metrics(_targets(records, val_idx, task), head.predict_proba(val_features))
    y = _targets(records, val_idx, "binary")
    result = binary_robustness(models["binary"], pixels[val_idx], y, contract, args.fullres, args.data)
    report["binary"] = result
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / robustness.ROBUSTNESS_MD).write_text(robustness.markdown(result))
    print(robustness.markdown(result))
    print(json.dumps({k: v for k, v in report.items() if k != "binary"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
