"""Does the ported ImageNet EfficientNet-Lite0 pay for itself? A frozen-feature probe.

    python -m train.lite0_probe --data $CXR_DATA --weights runs/weights/efficientnet_lite0.weights.h5 \\
        --fullres ../shared/data/fullres --out runs/lite0_probe

The cheapest honest test of pretrained features: run every image once through the frozen
backbone (global-average-pooled 1280 features), fit a logistic regression on the
patient-grouped training side (its strength chosen by patient-grouped cross-validation),
and score the validation side, clean and under acquisition shifts (exposure, contrast,
gamma, blur, noise, resolution, JPEG), plus the agreement between full-resolution
originals and their 224-px copies. ``--keras-model`` scores any trained Keras model
(e.g. a from-scratch run) through exactly the same split, shifts and metrics, so the
two can be compared row by row. The official test split is never touched.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from cxr_edge import metrics
from cxr_edge.preprocess import Contract, load_image
from train.data import TASK_LABELS, load_pixels, patient_split, scan

Pixels = np.ndarray  # uint8 (N, H, W), the contract's output
Scorer = Callable[[Pixels], dict[str, np.ndarray]]  # task -> class probabilities (N, C)


def _per_image(pixels: Pixels, fn: Callable[[Image.Image], Image.Image]) -> Pixels:
    return np.stack([np.asarray(fn(Image.fromarray(p)), np.uint8) for p in pixels])


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).convert("L")


def _contrast(pixels: Pixels, factor: float) -> np.ndarray:
    mean = pixels.mean(axis=(1, 2), keepdims=True)
    return (pixels - mean) * factor + mean


def _resample(img: Image.Image, side: int) -> Image.Image:
    return img.resize((side, side), Image.Resampling.BILINEAR).resize(img.size, Image.Resampling.BILINEAR)


def _gaussian_noise(pixels: Pixels, sigma: float) -> np.ndarray:
    return pixels + np.random.default_rng(0).normal(0.0, sigma, pixels.shape)


_FLOAT_SHIFTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exposure-": lambda x: x * 0.8,
    "exposure+": lambda x: x * 1.2,
    "contrast-": lambda x: _contrast(x, 0.7),
    "contrast+": lambda x: _contrast(x, 1.3),
    "gamma0.7": lambda x: 255.0 * (x / 255.0) ** 0.7,
    "gamma1.5": lambda x: 255.0 * (x / 255.0) ** 1.5,
    "noise8": lambda x: _gaussian_noise(x, 8.0),
}
_IMAGE_SHIFTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "blur1.5": lambda img: img.filter(ImageFilter.GaussianBlur(1.5)),
    "res112": lambda img: _resample(img, 112),
    "jpeg30": lambda img: _jpeg(img, 30),
}
SHIFTS = ("clean", *_FLOAT_SHIFTS, *_IMAGE_SHIFTS)


def shift(pixels: Pixels, name: str) -> Pixels:
    """``pixels`` as a different X-ray machine or pipeline might have delivered them."""
    if name == "clean":
        return pixels
    if name in _FLOAT_SHIFTS:
        return np.clip(np.rint(_FLOAT_SHIFTS[name](pixels.astype(np.float64))), 0, 255).astype(np.uint8)
    return _per_image(pixels, _IMAGE_SHIFTS[name])


def positive_probability(probs: np.ndarray) -> np.ndarray:
    """P(not NORMAL): the sigmoid itself, or 1 - p[NORMAL] for several classes (the bundle rule)."""
    return probs[:, 0] if probs.shape[1] == 1 else 1.0 - probs[:, 0]


def lite0_backbone(weights: str | None):
    """Frozen Lite0, global-average-pooled: pixels (N, 224, 224, 1) -> (N, 1280) features."""
    import keras

    from train.efficientnet_lite import build_efficientnet_lite0

    keras.utils.set_random_seed(0)  # the 'random' control is the same network every run
    return build_efficientnet_lite0(weights=weights, pooling="avg")


def extract(backbone, pixels: Pixels, batch: int = 32) -> np.ndarray:
    return backbone.predict(pixels[..., None].astype(np.float32), batch_size=batch, verbose=0)


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


def probe_scorer(backbone, heads: dict) -> Scorer:
    return lambda pixels: {task: head.predict_proba(extract(backbone, pixels)) for task, head in heads.items()}


def keras_scorer(path: Path) -> Scorer:
    """A trained cxr-edge Keras model (raw 0..255 input); its task follows from its outputs."""
    import keras

    model = keras.models.load_model(path, compile=False)

    def score(pixels: Pixels) -> dict[str, np.ndarray]:
        probs = model.predict(pixels[..., None].astype(np.float32), batch_size=32, verbose=0)
        return {"binary" if probs.shape[1] == 1 else "subtype": probs}

    return score


def task_metrics(task: str, y: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, float]:
    """Binary screening metrics at the fixed threshold, plus class accuracy for three classes."""
    positive = (y != 0).astype(int)
    row = metrics.binary_metrics(positive, positive_probability(probs), threshold)
    out = {k: row[k] for k in ("auc", "sensitivity", "specificity", "accuracy")}
    if task == "subtype":
        out["class_accuracy"] = float(np.mean(probs.argmax(axis=1) == y))
        pneumonia = y != 0
        out["bacterial_vs_viral"] = float(np.mean(probs[pneumonia, 1:].argmax(axis=1) + 1 == y[pneumonia]))
    return out


def robustness(scorer: Scorer, pixels: Pixels, targets: dict[str, np.ndarray], shifts) -> dict:
    """Per task and shift: metrics at the clean-validation threshold, and mean |change| of P."""
    results: dict[str, dict] = {}
    clean = scorer(pixels)
    for task, probs in clean.items():
        y = targets[task]
        threshold = metrics.threshold_for_sensitivity((y != 0).astype(int), positive_probability(probs), 0.95)
        results[task] = {
            "threshold": threshold,
            "ece": metrics.expected_calibration_error((y != 0).astype(int), positive_probability(probs)),
        }
    for name in shifts:
        shifted = clean if name == "clean" else scorer(shift(pixels, name))
        for task, probs in shifted.items():
            row = task_metrics(task, targets[task], probs, results[task]["threshold"])
            row["mean_abs_dp"] = float(np.mean(np.abs(positive_probability(probs) - positive_probability(clean[task]))))
            results[task][name] = row
        print(f"  {name}: " + ", ".join(f"{t} auc {results[t][name]['auc']:.4f}" for t in shifted), flush=True)
    return results


def fullres_agreement(scorer: Scorer, fullres: Path, data: Path, contract: Contract) -> dict:
    """Full-resolution originals vs their 224-px copies, both through the contract."""
    pairs = [
        (path, data / "train" / path.parent.name / path.name)
        for path in sorted(fullres.glob("*/*.jpeg"))
        if (data / "train" / path.parent.name / path.name).is_file()
    ]
    if not pairs:
        return {"n": 0}
    originals = np.stack([load_image(a, contract).pixels for a, _ in pairs])
    copies = np.stack([load_image(b, contract).pixels for _, b in pairs])
    big, small = scorer(originals), scorer(copies)
    out = {"n": len(pairs)}
    for task in big:
        p, q = positive_probability(big[task]), positive_probability(small[task])
        out[task] = {"mean_abs_dp": float(np.mean(np.abs(p - q))), "max_abs_dp": float(np.max(np.abs(p - q)))}
    return out


def _targets(records, idx) -> dict[str, np.ndarray]:
    return {task: np.array([records[i].target(task) for i in idx]) for task in TASK_LABELS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.lite0_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("CXR_DATA"), help="Kermany-style folder ($CXR_DATA)")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json")
    parser.add_argument("--weights", default=None, help="ported .weights.h5; leave out for the random-weights control")
    parser.add_argument("--keras-model", type=Path, default=None, help="score this trained model instead of a probe")
    parser.add_argument("--fullres", type=Path, default=None, help="full-resolution originals (fullres/{NORMAL,PNEUMONIA})")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path, default=Path(".cache/pixels"))
    parser.add_argument("--shifts", default=",".join(SHIFTS), help=f"comma list from {','.join(SHIFTS)}")
    parser.add_argument("--export", action="store_true", help="also save the probe as OUT/{binary,subtype}.keras")
    args = parser.parse_args(argv)
    if args.data is None:
        parser.error("give --data or set $CXR_DATA")
    shifts = [s for s in args.shifts.split(",") if s]
    unknown = sorted(set(shifts) - set(SHIFTS))
    if unknown:
        parser.error(f"unknown shifts {unknown}; choose from {', '.join(SHIFTS)}")

    contract = Contract()
    records, _ = scan(args.data)
    train_idx, val_idx = patient_split(records, args.val_fraction, args.seed)
    pixels, _ = load_pixels(records, contract, args.cache)
    report: dict = {"command": " ".join(sys.argv), "n_train": len(train_idx), "n_val": len(val_idx)}
    if args.keras_model is not None:
        scorer = keras_scorer(args.keras_model)
        report["scored"] = str(args.keras_model)
    else:
        backbone = lite0_backbone(args.weights)
        train_features = extract(backbone, pixels[train_idx])
        groups = np.array([records[i].patient for i in train_idx])
        heads = {}
        for task, y in _targets(records, train_idx).items():
            heads[task], report[f"{task}_C"] = fit_head(train_features, y, groups)
        scorer = probe_scorer(backbone, heads)
        if args.export:
            args.out.mkdir(parents=True, exist_ok=True)
            sample = pixels[val_idx[:16]]
            for task, head in heads.items():
                exported = export_model(backbone, head, task)
                expected = positive_probability(head.predict_proba(extract(backbone, sample)))
                got = positive_probability(exported.predict(sample[..., None].astype(np.float32), verbose=0))
                report[f"{task}_export_max_abs_dp"] = float(np.max(np.abs(got - expected)))
                exported.save(args.out / f"{task}.keras")
        report["scored"] = f"Lite0 {'imagenet ' + args.weights if args.weights else 'random'} + logistic regression"
    report["robustness"] = robustness(scorer, pixels[val_idx], _targets(records, val_idx), shifts)
    if args.fullres is not None:
        report["fullres"] = fullres_agreement(scorer, args.fullres, args.data, contract)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "robustness"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
