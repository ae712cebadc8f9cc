"""model_card.md for a run: what the model is, what it is for, how it scored, how to remake it."""

from __future__ import annotations

import json
from pathlib import Path

from cxr_edge.review.metrics import CI_METRICS
from train.config import parse_arch
from train.rundir import METRICS_FILE, ROBUSTNESS_MD, SUMMARY_FILE, Threshold, load_run

CARD_FILE = "model_card.md"
CITATION = (
    "Kermany D, Zhang K, Goldbaum M. *Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images "
    "for Classification*. Mendeley Data v2, 2018. doi:10.17632/rscbjbr9sj.2 — and Kermany DS et al. "
    "*Identifying Medical Diagnoses and Treatable Diseases by Image-Based Deep Learning*. "
    "Cell 172(5):1122-1131, 2018. doi:10.1016/j.cell.2018.02.010. License: CC BY 4.0."
)
INTENDED_USE = (
    "A **screening aid** that flags pediatric chest X-rays (anterior-posterior, children aged 1-5 "
    "like the training data) for a clinician's review, so that likely pneumonia is read first. It is "
    "**never a diagnosis** and must not be used to rule pneumonia out or in without a qualified reader. "
    "Not validated on adults, lateral views, other hospitals' equipment or other diseases."
)
CAVEAT = (
    "All numbers below are on a validation split carved **by patient** from the official training "
    "split. That split shares hospital, equipment and class mix with training and is far more "
    "optimistic than the official test split: a reference from-scratch CNN scored AUC 0.997 on such a "
    "validation split but 0.939 on the test split (specificity 53% at its validation-chosen threshold). "
    "The same split also chose the best epoch and the threshold, so the sensitivity at the threshold "
    "meets its target by construction, and the bootstrap intervals (which hold the threshold fixed) "
    "leave that choice's own uncertainty out. "
    "Expect lower specificity on other data; check the model on your own labelled films with "
    "`cxr-edge evaluate` before relying on it."
)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def metrics_table(summary: dict) -> list[str]:
    lines = ["| metric | at chosen threshold | 95% CI | at 0.5 | 95% CI |", "| --- | --- | --- | --- | --- |"]
    at_t, ci_t, at_h, ci_h = (summary[k] for k in ("at_threshold", "ci95_at_threshold", "at_0.5", "ci95_at_0.5"))
    for name in CI_METRICS:
        lines.append(f"| {name} | {_fmt(at_t[name])} | {_fmt(ci_t[name][0])}-{_fmt(ci_t[name][1])} "
                     f"| {_fmt(at_h[name])} | {_fmt(ci_h[name][0])}-{_fmt(ci_h[name][1])} |")
    return lines


def data_lines(data: dict) -> list[str]:
    lines = [f"- {data['total_images']} images; {data['unparsed_filenames']} filenames matched no patient pattern."]
    for side in ("train", "val"):
        s = data[side]
        lines.append(f"- {side}: {s['images']} images of {s['patients']} patients; "
                     f"{', '.join(f'{k} {v}' for k, v in s['subtype'].items())}")
    return lines


def render(run_dir: Path) -> str:
    cfg, record = load_run(run_dir)
    summary = json.loads((run_dir / METRICS_FILE).read_text())
    data = json.loads((run_dir / SUMMARY_FILE).read_text())
    threshold = Threshold.from_metrics(summary)
    loss = summary["loss"]
    calib = summary["calibration"]
    lines = [
        f"# Model card: {run_dir.name}",
        "",
        f"- **Task**: {cfg.task} ({' / '.join(record['labels'])}); score = P(not {record['negative_label']}).",
        f"- **Architecture**: `{cfg.arch}`{f' (weights: {cfg.weights})' if parse_arch(cfg.arch).pretrained else ''}, "
        f"{record.get('parameters', 0):,} parameters; input {cfg.size}x{cfg.size} grayscale, raw 0..255 "
        f"(rescaling inside the model).",
        f"- **Preprocessing contract**: `{record['preprocessing']['contract']}`, normalize `{cfg.normalize}`"
        f"{f', JPEG quality {cfg.reencode_jpeg} after a resize' if cfg.reencode_jpeg else ''} "
        "(cxr_edge.preprocess, the same code the edge tool runs).",
        f"- **Decision threshold**: {threshold.value:.4f} — {threshold.rule}.",
        "",
        "## Intended use",
        "",
        INTENDED_USE,
        "",
        "## Data",
        "",
        CITATION,
        "",
        f"Official train and val folders pooled, then split by patient (seed {cfg.patient_split_seed}, "
        f"{cfg.val_fraction:.0%} of each subtype's images to validation; `split.csv` lists every file):",
        *data_lines(data),
        "",
        "## Training",
        "",
        f"- epochs: {loss['epochs_run']} run of at most {cfg.epochs} (early stopping patience {cfg.patience} on "
        f"validation AUC), best epoch {loss['best_epoch']}; batch {cfg.batch_size}; Adam, peak LR {cfg.lr:g}, "
        f"{cfg.schedule} schedule",
        f"- augmentation: {'on (rotation, shift, zoom, gamma, contrast, brightness, blur/sharpen, noise, low resolution' if cfg.augment else 'off'}"
        f"{', JPEG re-encoding at quality 25-95' if cfg.augment and cfg.jpeg_augment else ''}{')' if cfg.augment else ''}"
        f"{'; horizontal flip' if cfg.hflip else ''}; class weights: "
        f"{'balanced ' + str([round(w, 3) for w in record.get('class_weights', [])]) if cfg.class_weights else 'off'}",
        f"- precision {record.get('precision')}; wall time {record.get('wall_s', 0) / 60:.1f} min on "
        f"{record['versions']['cpu_count']} CPU(s) ({record['versions']['platform']})",
        "",
        "## Validation metrics",
        "",
        CAVEAT,
        "",
        *metrics_table(summary),
        "",
        f"Validation loss {loss['val_loss']:.4f}; calibration: Brier {_fmt(calib['brier'])}, "
        f"ECE {_fmt(calib['ece'])}. Per-class report: `classification_report.txt`.",
    ]
    if summary.get("bacterial_vs_viral"):
        bv = summary["bacterial_vs_viral"]
        lines.append(f"Bacterial vs viral among pneumonia images: accuracy {bv['accuracy']:.3f} (n={bv['n']}).")
    robustness = run_dir / ROBUSTNESS_MD
    if robustness.exists():
        lines += ["", "## Robustness (`python -m train robustness`)", "", robustness.read_text().strip()]
    lines += [
        "",
        "## Reproduce",
        "",
        "```",
        record["command"],
        "```",
        "",
        f"Seed {cfg.seed}; " + ", ".join(f"{k} {v}" for k, v in record["versions"].items() if k != "platform") + ".",
        "Bit-identical results need the same versions and hardware; expect small differences elsewhere.",
        "",
    ]
    return "\n".join(lines)


def write_card(run_dir: Path) -> Path:
    path = Path(run_dir) / CARD_FILE
    path.write_text(render(Path(run_dir)))
    return path
