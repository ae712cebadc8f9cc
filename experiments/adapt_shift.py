"""Issue 33: does adapting to a site hold out of the films it was fitted on?

    python -m experiments.adapt_shift measure runs/shift-heldout/pneumonia --model BUNDLE.json --out runs/adapt_shift/pneumonia
    python -m experiments.adapt_shift site --data $CXR_DATA --model pneumonia --out runs/adapt_site/pneumonia \
        [--only-patients runs/shift/val_patients.txt]

A site is a folder of class folders with a ``file,patient`` list: the held-out films of the
shift-aware split (``docs/shift-validation.md``) for a bundle trained on its training side, or, made
by ``site``, the validation films of a bundle's own patient split (remade from the seed and fraction
in its manifest, the patient fingerprint checked), which it never trained on. For each seed they are halved by patient (stratified by the
patient's class): ``cxr-edge adapt``'s library adapts ``BUNDLE`` on one half, exactly as the command
does (patient folds, threshold out of fold, the rule), and the adapted head is measured on the other
half at its own threshold, beside the bundle itself at its manifest threshold on the same films. The
films are read through the engine once; the adapted head's figures on the other half come from the
same :func:`cxr_edge.review.adapt.scored` the adapted bundle decides by. Writes ``OUT/adapt_shift.json``
and ``OUT/adapt_shift.md`` (a row per seed, then the mean and standard deviation).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cxr_edge.bundle import load_bundle
from cxr_edge.review import adapt as adapting
from cxr_edge.review import metrics, refit

RESULT = "adapt_shift"
SEEDS = (0, 1, 2, 3, 4)
COUNTS = ("adapt_films", "test_films")
COLUMNS = ("verdict", *COUNTS, "base_auc", "base_auc_probability", "base_sensitivity",
           "base_specificity", "adapted_auc", "adapted_sensitivity", "adapted_specificity", "base_accuracy",
           "adapted_accuracy")


def halves(films: Sequence[adapting.Film], bundle_labels: Sequence[str], seed: int,
           parts: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (adapt, test): one of ``parts`` patient folds of the films (stratified by the
    patient's class) to adapt on, the others to measure on; two parts are two halves."""
    classes = np.array([bundle_labels.index(f.truth.label) for f in films])
    fold = refit.patient_folds(classes, [f.patient for f in films], k=parts, seed=seed)
    return fold == 0, fold != 0


def measure(adaptation: adapting.Adaptation, films: Sequence[adapting.Film]) -> dict[str, Any]:
    """The adapted head (at its own threshold) and the bundle (at its manifest's) on ``films``."""
    bundle = adaptation.bundle
    y = np.array([f.truth.positive for f in films], dtype=int)
    outputs = [adaptation.head.outputs(np.stack([f.features[v] for f in films])) for v in range(len(bundle.views))]
    adapted = adapting.scored(bundle.rule.with_threshold(adaptation.threshold), outputs)
    base_p = np.array([f.result.probability for f in films])
    base_s = np.array([f.result.score for f in films])
    at_base = metrics.binary_metrics(y, base_p, bundle.threshold)
    at_adapted = metrics.binary_metrics(y, adapted.probability, adaptation.threshold)
    row = {
        "verdict": "adapted" if adaptation.improved else "not adapted", "reasons": adaptation.reasons,
        "adapt_films": len(adaptation.films), "test_films": len(films),
        "base_auc": metrics.roc_auc(y, base_s), "base_auc_probability": metrics.roc_auc(y, base_p),
        "base_sensitivity": at_base["sensitivity"], "base_specificity": at_base["specificity"],
        "adapted_auc": metrics.roc_auc(y, adapted.score), "adapted_sensitivity": at_adapted["sensitivity"],
        "adapted_specificity": at_adapted["specificity"],
    }
    if bundle.task == "multiclass":
        row["base_accuracy"] = float(np.mean([f.result.prediction == f.truth.label for f in films]))
        row["adapted_accuracy"] = float(np.mean([p == f.truth.label for p, f in zip(adapted.labels, films)]))
    return row


def run(heldout: Path, model: str, seeds: Sequence[int], n_boot: int, patients: Path | None,
        parts: int = 2) -> list[dict[str, Any]]:
    bundle = adapting.adaptable(load_bundle(model))
    listed = adapting.read_patients(patients or heldout / "patients.csv")
    results, truths, films = adapting.read_site(heldout, bundle, listed, progress=sys.stderr.isatty())
    rows = []
    for seed in seeds:
        mine, theirs = halves(films, bundle.labels, seed, parts)
        fitting = [f for f, m in zip(films, mine) if m]
        kept = {id(f.result) for f in fitting}
        adaptation = adapting.fit(bundle, [r for r in results if id(r) in kept], [f.truth for f in fitting], fitting,
                                  str(heldout), n_boot=n_boot)
        rows.append({"seed": seed, **measure(adaptation, [f for f, t in zip(films, theirs) if t])})
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """Mean and standard deviation (over seeds) of each figure."""
    return {c: [float(np.mean([r[c] for r in rows])), float(np.std([r[c] for r in rows], ddof=1))]
            for c in COLUMNS if c in rows[0] and c not in ("verdict", *COUNTS) and len(rows) > 1}


def markdown(rows: Sequence[dict[str, Any]], model: str) -> str:
    columns = [c for c in COLUMNS if c in rows[0]]
    lines = [f"Adapting {model}: adapted on one part of the site's films (by patient), measured on the rest.", "",
             "| seed | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += ["| " + " | ".join([str(r["seed"])] + [_cell(r[c]) for c in columns]) + " |" for r in rows]
    mean = summary(rows)
    if mean:
        lines.append("| mean (sd) | " + " | ".join(
            f"{mean[c][0]:.3f} ({mean[c][1]:.3f})" if c in mean else "" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def validation_site(data: Path, model: str, out: Path, only: Path | None = None,
                    val_patients: Path | None = None) -> Path:
    """``out/<label>/`` links to the validation films of the bundle's own patient split, and
    ``out/patients.csv``: films of patients it never trained on. The split is remade from the seed and
    fraction in its manifest, or from ``val_patients`` for a run trained on a listed split (``fit
    --val-patients``: the shift split's held-out side), its fingerprint checked either way; with ``only``
    (a ``val_patients.txt``), only the films of the patients it lists (the shifted films among them)."""
    from train.data import read_val_patients  # local: the split's one definition lives with training
    from train.rundir import fingerprint, seeded_split

    bundle = load_bundle(model)
    run = bundle.manifest["training_run"]
    fraction = float(re.search(r"--val-fraction ([0-9.]+)", run["command"]).group(1))
    val = seeded_split(data, fraction, int(run["seed"]), val_patients)["val"]
    expected = run.get("validation_patients")  # older manifests lack it: the seed and fraction alone then
    if expected and fingerprint(record.patient for record in val) != expected:
        raise SystemExit(f"the split remade from seed {run['seed']} and fraction {fraction} is not {bundle.name}'s: "
                         "give its --val-patients")
    rows = ["file,patient"]
    kept = read_val_patients(only) if only else None
    for record in val:
        if kept is not None and record.patient not in kept:
            continue
        (out / record.label).mkdir(parents=True, exist_ok=True)
        link = out / record.label / Path(record.path).name
        if not link.exists():
            link.symlink_to(Path(record.path).resolve())
        rows.append(f"{record.label}/{link.name},{record.patient}")
    (out / "patients.csv").write_text("\n".join(rows) + "\n")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    site = commands.add_parser("site", help="link a bundle's own validation films into a site folder")
    site.add_argument("--data", type=Path, required=True, help="the training data (chest_xray_224)")
    site.add_argument("--model", required=True)
    site.add_argument("--out", type=Path, required=True)
    site.add_argument("--val-patients", type=Path, default=None, metavar="val_patients.txt",
                      help="the bundle's run was trained on this listed split (fit --val-patients): remake it from the list")
    site.add_argument("--only-patients", type=Path, default=None, metavar="val_patients.txt",
                      help="keep only these patients' films (e.g. the shift split's held-out patients)")
    measure_it = commands.add_parser("measure", help="adapt on half a site, measure on the other half, per seed")
    measure_it.add_argument("heldout", type=Path, help="class folders of the site's films (and patients.csv)")
    measure_it.add_argument("--model", required=True, help="the bundle to adapt (a shipped-style bundle)")
    measure_it.add_argument("--out", type=Path, required=True)
    measure_it.add_argument("--patients", type=Path, default=None, help="file,patient list [HELDOUT/patients.csv]")
    measure_it.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    measure_it.add_argument("--n-boot", type=int, default=1000)
    measure_it.add_argument("--parts", type=int, default=2,
                            help="adapt on one of this many patient parts, measure on the rest [2: halves]")
    args = parser.parse_args(argv)
    if args.command == "site":
        print(validation_site(args.data, args.model, args.out, args.only_patients, args.val_patients))
        return
    rows = run(args.heldout, args.model, args.seeds, args.n_boot, args.patients, args.parts)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{RESULT}.json").write_text(json.dumps(
        {"model": args.model, "heldout": str(args.heldout), "rows": rows, "mean_sd": summary(rows)}, indent=2) + "\n")
    (args.out / f"{RESULT}.md").write_text(markdown(rows, args.model))
    print(markdown(rows, args.model))


if __name__ == "__main__":
    main()
