"""Would a dedicated bacterial-vs-viral head beat a subtype run's own softmax?

    python -m experiments.subtype_head_probe runs/subtype-lite0b11-v1

The subtype model reads bacterial against viral from the same pooled features that also
separate normal films. This probe fits a second head on those features using only the
training side's pneumonia films (balanced logistic regression, strength chosen by
patient-grouped cross-validation, as in :mod:`experiments.lite0_probe`), then compares it with
the run's own reading, ``p_VIRAL / (p_BACTERIAL + p_VIRAL)``, on the validation side's
pneumonia films. Writes ``RUN/subtype_head_probe.json``. The test split is never touched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cxr_edge.review import metrics
from train.data import Record, load_pixels
from experiments.lite0_probe import fit_head
from train.predict import predict
from train.rundir import MODEL_FILE, load_run, split_records

RESULT_FILE = "subtype_head_probe.json"
BACTERIAL, VIRAL = 1, 2  # subtype class indices


def pooled_features(model, pixels: np.ndarray) -> np.ndarray:
    """The input of the model's last Dense layer (global-average-pooled backbone features)."""
    import keras

    head = model.layers[-1]
    features = keras.Model(model.input, head.input)
    return features.predict(pixels[..., None].astype(np.float32), batch_size=64, verbose=0)


def bacterial_vs_viral(y: np.ndarray, p_viral: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and AUC of viral-vs-bacterial scores, called at 0.5."""
    scores = metrics.binary_metrics(y == VIRAL, p_viral, 0.5)
    return {name: scores[name] for name in ("accuracy", "balanced_accuracy", "auc")}


def probe(run_dir: Path) -> dict:
    """Fit the dedicated head on train-side pneumonias; score both readings on val-side pneumonias."""
    import keras

    cfg, _ = load_run(run_dir)
    if cfg.task != "subtype":
        raise ValueError(f"{run_dir} is a {cfg.task} run; this probe needs a subtype run")
    cache = Path(cfg.cache_dir) if cfg.cache_dir else None
    model = keras.models.load_model(run_dir / MODEL_FILE, compile=False)

    sides = split_records(run_dir)

    def pneumonias(side: str) -> tuple[list[Record], np.ndarray, np.ndarray]:
        records = [r for r in sides[side] if r.subtype in ("BACTERIAL", "VIRAL")]
        pixels, _ = load_pixels(records, cfg.contract, cache)
        return records, pixels, np.array([r.target("subtype") for r in records])

    train_records, train_pixels, train_y = pneumonias("train")
    _, val_pixels, val_y = pneumonias("val")
    head, strength = fit_head(pooled_features(model, train_pixels), train_y,
                              np.array([r.patient for r in train_records]))
    own = predict(model, val_pixels)
    return {
        "run": str(run_dir), "n_train": len(train_y), "n_val": len(val_y), "head_C": strength,
        "viral_share_val": float(np.mean(val_y == VIRAL)),
        "own_softmax": bacterial_vs_viral(val_y, own[:, VIRAL] / (own[:, BACTERIAL] + own[:, VIRAL])),
        "dedicated_head": bacterial_vs_viral(val_y, head.predict_proba(pooled_features(model, val_pixels))[:, 1]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.subtype_head_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished subtype run folder")
    args = parser.parse_args(argv)
    try:
        result = probe(args.run)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc
    (args.run / RESULT_FILE).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
