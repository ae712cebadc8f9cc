"""Train several architectures the same way and put them in one table.

The table puts validation metrics next to the robustness measures, because on this data
validation AUC alone cannot choose a model (see robustness.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from train import card, robustness
from train.config import make_config, parse_arch
from train.rundir import METRICS_FILE, ROBUSTNESS_FILE, Threshold, load_run

TABLE_MD = "comparison.md"
TABLE_CSV = "comparison.csv"
COLUMNS = (
    "run", "arch", "task", "normalize", "size", "params", "epochs", "wall_min",
    "val_auc", "val_auc_ci", "threshold", "sens", "spec", "spec_ci", "spec_at_0.5", "ece", "brier",
    "shift_min_auc", "shift_mean_spec", "shift_min_spec", "shift_min_sens", "fullres_mean_dp", "fullres_agree",
    "fullres_missed",
)


def run_name(arch: str) -> str:
    return parse_arch(arch).slug


def row(run_dir: Path) -> dict:
    """One table row from a finished run folder (robustness columns empty if not measured)."""
    cfg, record = load_run(run_dir)
    m = json.loads((run_dir / METRICS_FILE).read_text())
    at, ci = m["at_threshold"], m["ci95_at_threshold"]
    out = {
        "run": run_dir.name, "arch": cfg.arch, "task": cfg.task, "normalize": cfg.normalize, "size": cfg.size,
        "params": record.get("parameters"), "epochs": f"{m['loss']['best_epoch']}/{m['loss']['epochs_run']}",
        "wall_min": round(record.get("wall_s", 0) / 60, 1),
        "val_auc": at["auc"], "val_auc_ci": _ci(ci["auc"]), "threshold": Threshold.from_metrics(m).value,
        "sens": at["sensitivity"], "spec": at["specificity"], "spec_ci": _ci(ci["specificity"]),
        "spec_at_0.5": m["at_0.5"]["specificity"], "ece": m["calibration"]["ece"], "brier": m["calibration"]["brier"],
    }
    robust_file = run_dir / ROBUSTNESS_FILE
    if robust_file.exists():
        r = json.loads(robust_file.read_text())
        s, p = r["summary"], r.get("fullres_parity") or {}
        out.update(shift_min_auc=s["min_auc"], shift_mean_spec=s["mean_specificity"],
                   shift_min_spec=s["min_specificity"], shift_min_sens=s["min_sensitivity"],
                   fullres_mean_dp=p.get("mean_abs_dp"), fullres_agree=p.get("decision_agreement"),
                   fullres_missed=p.get("missed"))
    return out


def _ci(pair) -> str:
    return "n/a" if pair[0] is None else f"{pair[0]:.3f}-{pair[1]:.3f}"


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def table(run_dirs: list[Path], columns: tuple[str, ...] = COLUMNS) -> tuple[str, str]:
    """(markdown, csv) of the runs, one row each."""
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown}; choose from {', '.join(COLUMNS)}")
    rows = [row(Path(d)) for d in run_dirs]
    md = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    md += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    csv = [",".join(columns)] + [",".join(_cell(r.get(c)) for c in columns) for r in rows]
    return "\n".join(md) + "\n", "\n".join(csv) + "\n"


def write_table(run_dirs: list[Path], out: Path, columns: tuple[str, ...] = COLUMNS) -> str:
    md, csv = table(run_dirs, columns)
    out.mkdir(parents=True, exist_ok=True)
    (out / TABLE_MD).write_text(md)
    (out / TABLE_CSV).write_text(csv)
    return md


def compare(out: Path, archs: list[str], fullres: Path | None, log=print, **options) -> str:
    """Train (or resume) each architecture into ``out/<arch>``, measure robustness, tabulate.

    ``options`` are the fit options; unset ones (None) take each architecture's defaults.
    """
    from train import run  # lazy: the trainer loads TensorFlow, which `table` does not need

    run_dirs = []
    for arch in archs:
        cfg = make_config(arch, str(out / run_name(arch)), **options)
        log(f"== {arch} -> {cfg.out}")
        run.train(cfg, resume=True, log=log)
        robustness.measure(Path(cfg.out), fullres, log=log)
        card.write_card(Path(cfg.out))  # the card quotes robustness.json
        run_dirs.append(Path(cfg.out))
    return write_table(run_dirs, out)
