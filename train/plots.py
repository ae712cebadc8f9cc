"""Run plots: the evaluate plots (ROC, confusion, histogram) plus training curves,
precision-recall, and the most confident false positives and false negatives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxr_edge.review import metrics
from cxr_edge.review.evaluate import Evaluation
from cxr_edge.review.plots import DPI, figure, evaluation_plots
from cxr_edge.preprocess import ImageReadError, load_image
from train.rundir import HISTORY_FILE

N_EXAMPLES = 6


def write_all(run_dir: Path, ev: Evaluation) -> list[Path]:
    paths = evaluation_plots(ev, run_dir)
    for name, fig in (("curves.png", curves_figure(run_dir)), ("pr.png", pr_figure(ev)),
                      ("errors.png", errors_figure(ev))):
        fig.savefig(run_dir / name, dpi=DPI)
        paths.append(run_dir / name)
    return paths


def curves_figure(run_dir: Path):
    """Loss, AUC and accuracy per epoch, training against validation."""
    history = pd.read_csv(run_dir / HISTORY_FILE)
    fig = figure((10.5, 3.4))
    epochs = history["epoch"] + 1
    for k, name in enumerate(("loss", "auc", "accuracy")):
        ax = fig.add_subplot(1, 3, k + 1)
        ax.plot(epochs, history[name], "o-", label="train (augmented, weighted)")
        ax.plot(epochs, history[f"val_{name}"], "o-", label="validation")
        ax.set(xlabel="epoch", title=name)
        ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def pr_figure(ev: Evaluation):
    """Precision against recall (from the ROC points: precision = TP / (TP + FP))."""
    fpr, tpr, _ = metrics.roc_curve(ev.y_true, ev.score)
    n_pos, n_neg = int(ev.y_true.sum()), int(len(ev.y_true) - ev.y_true.sum())
    tp, fp = tpr[1:] * n_pos, fpr[1:] * n_neg
    fig = figure()
    ax = fig.add_subplot()
    ax.plot(tpr[1:], tp / np.maximum(tp + fp, 1e-12),
            label=f"AP {metrics.average_precision(ev.y_true, ev.score):.3f}")
    b = ev.binary
    ax.plot(b["sensitivity"], b["precision"], "o", color="tab:red", label=f"threshold {ev.threshold:.3f}")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.01),
           title="precision-recall (validation)")
    ax.legend(loc="lower left", fontsize="small")
    return fig


def errors_figure(ev: Evaluation):
    """The most confident false positives (top row) and false negatives (bottom row)."""
    flagged = ev.score >= ev.threshold
    fp = np.flatnonzero(flagged & (ev.y_true == 0))
    fn = np.flatnonzero(~flagged & (ev.y_true == 1))
    rows = [("false positive", fp[np.argsort(-ev.score[fp])][:N_EXAMPLES]),
            ("false negative", fn[np.argsort(ev.score[fn])][:N_EXAMPLES])]
    fig = figure((2.0 * N_EXAMPLES, 4.6))
    data_dir = Path(ev.data_dir)
    for r, (kind, idx) in enumerate(rows):
        for c in range(N_EXAMPLES):
            ax = fig.add_subplot(2, N_EXAMPLES, r * N_EXAMPLES + c + 1)
            ax.axis("off")
            if c >= len(idx):
                ax.set_title(f"(no more {kind}s)" if c == len(idx) else "", fontsize=7)
                continue
            result = ev.results[ev.ok[idx[c]]]
            ax.imshow(_pixels(data_dir / result.path, ev), cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{kind}\n{Path(result.path).name[:22]}\np={ev.score[idx[c]]:.3f}", fontsize=7)
    return fig


def _pixels(path: Path, ev: Evaluation) -> np.ndarray:
    try:
        return load_image(path, ev.bundle.contract).pixels
    except ImageReadError:
        return np.zeros((ev.bundle.contract.height, ev.bundle.contract.width), np.uint8)
