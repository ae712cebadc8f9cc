"""Issue 26's candidates that need no training run of their own, scored on the shift-aware split.

    python -m experiments.shift_candidates tta runs/shift-A-base --out runs/shift-C-tta
    python -m experiments.shift_candidates probe --data $CXR_DATA --val-patients runs/shift/val_patients.txt \\
        --weights runs/weights/efficientnet_lite0.weights.h5 --out runs/shift-D-probe
    python -m experiments.shift_candidates ensemble runs/shift-A-base runs/shift-A2-seed43 --out runs/shift-G-seeds

Each writes ``OUT/val_predictions.csv`` in a run folder's format (:func:`train.rundir.write_predictions`)
and ``OUT/candidate.json`` (what was done), so ``python -m train select BASELINE OUT`` judges it
by the rule written before any candidate was trained (``docs/shift-validation.md``).

- ``tta`` (candidate C): a run's own model, its probabilities averaged over the film and the
  film down-sampled to half and back. The second view is softer, and that is the point:
  the sharpness cue then counts for less. On a device this costs a second invoke per film.
  ``--average negative`` averages only the NORMAL probability and leaves the split among the
  pneumonia classes to the film (for ``subtype``).
- ``probe`` (candidate D): frozen ImageNet Lite0 features and a logistic regression
  (:mod:`experiments.lite0_probe`'s model A), fitted on the split's training side.
- ``ensemble``: several finished candidates' class probabilities averaged film by film (a
  small ensemble; on a device, one invoke per member and view).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

from cxr_edge.decision import VIEW_AVERAGES, average_views
from cxr_edge.preprocess import half_and_back
from train import data, rundir
from train.predict import predict

CANDIDATE_FILE = "candidate.json"


def run_tta(run_dir: Path, out: Path, how: str = "all") -> dict:
    """Candidate C: the run's model, averaged over the film and its half-resolution copy, as a bundle
    with ``test_time_average`` ``how`` averages them (:func:`cxr_edge.decision.average_views`)."""
    import keras

    cfg, _ = rundir.load_run(run_dir)
    val = rundir.split_records(run_dir)["val"]
    pixels, _ = data.load_pixels(val, cfg.contract, Path(cfg.cache_dir) if cfg.cache_dir else None)
    model = keras.models.load_model(run_dir / rundir.MODEL_FILE, compile=False)
    per_view = [predict(model, pixels), predict(model, half_and_back(pixels))]
    probs = average_views(per_view, negative=0, how=how)  # every task's labels start with NORMAL
    rundir.write_predictions(out / rundir.PREDICTIONS_FILE, probs, val, Path(cfg.data), cfg.labels, cfg.task)
    return {"candidate": "C: test-time average of the film and its half-resolution copy", "average": how,
            "run": str(run_dir)}


def run_probe(data_dir: Path, val_patients: Path, weights: str, out: Path, cache_dir: Path) -> dict:
    """Candidate D: frozen Lite0 features + logistic regression on the listed split's training side."""
    from experiments.lite0_probe import extract, fit_head, lite0_backbone
    from train.config import make_config

    records, _ = data.scan(data_dir)
    train_idx, val_idx = data.split_by_list(records, data.read_val_patients(val_patients), val_patients)
    contract = make_config("mobile", str(out), data=str(data_dir)).contract  # what fit's runs read, so A's cache serves
    pixels, _ = data.load_pixels(records, contract, cache_dir)
    backbone = lite0_backbone(weights)
    head, strength = fit_head(extract(backbone, pixels[train_idx]), np.array([records[i].target("binary") for i in train_idx]),
                              np.array([records[i].patient for i in train_idx]))
    probs = head.predict_proba(extract(backbone, pixels[val_idx]))
    labels = data.TASK_LABELS["binary"]
    rundir.write_predictions(out / rundir.PREDICTIONS_FILE, probs, [records[i] for i in val_idx], data_dir, labels, "binary")
    return {"candidate": "D: frozen ImageNet Lite0 features + logistic regression", "weights": weights,
            "regularisation_C": strength, "n_train": len(train_idx), "n_val": len(val_idx)}


def run_ensemble(members: list[Path], out: Path) -> dict:
    """The members' scores and class probabilities averaged per film; every member must have seen the same films."""
    tables = []
    for member in members:
        with open(member / rundir.PREDICTIONS_FILE, newline="") as f:
            tables.append(sorted(csv.DictReader(f), key=lambda row: row["file"]))
    if any([row["file"] for row in table] != [row["file"] for row in tables[0]] for table in tables):
        raise SystemExit(f"error: {', '.join(map(str, members))} were not validated on the same films")
    averaged = [c for c in tables[0][0] if c == "score" or c.startswith("p_")]
    with open(out / rundir.PREDICTIONS_FILE, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(tables[0][0]))
        writer.writeheader()
        for rows in zip(*tables):
            writer.writerow({**rows[0], **{c: repr(float(np.mean([float(r[c]) for r in rows]))) for c in averaged}})
    return {"candidate": f"ensemble of {len(members)}: class probabilities averaged", "members": list(map(str, members))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.shift_candidates", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="which", required=True)
    tta = sub.add_parser("tta", help="candidate C: test-time averaging of a finished run's model")
    tta.add_argument("run", type=Path)
    tta.add_argument("--average", choices=VIEW_AVERAGES, default="all",
                     help="average every class's probability, or only NORMAL's (the film splits the rest)")
    probe = sub.add_parser("probe", help="candidate D: frozen Lite0 features + logistic regression")
    probe.add_argument("--data", type=Path, default=os.environ.get("CXR_DATA"))
    probe.add_argument("--val-patients", type=Path, required=True)
    probe.add_argument("--weights", required=True)
    probe.add_argument("--cache-dir", type=Path, default=os.environ.get("CXR_CACHE") or Path.home() / ".cache" / "cxr-edge")
    ensemble = sub.add_parser("ensemble", help="finished candidates averaged film by film")
    ensemble.add_argument("members", type=Path, nargs="+")
    for each in (tta, probe, ensemble):
        each.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.which == "tta":
        record = run_tta(args.run, args.out, args.average)
    elif args.which == "ensemble":
        record = run_ensemble(args.members, args.out)
    else:
        record = run_probe(args.data, args.val_patients, args.weights, args.out, args.cache_dir)
    record["command"] = " ".join(["python -m experiments.shift_candidates", *(argv or sys.argv[1:])])
    (args.out / CANDIDATE_FILE).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
