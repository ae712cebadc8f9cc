"""PNG plots for ``cxr-edge evaluate --out-dir``: ROC, confusion matrix, probability histograms.

matplotlib is optional on the device (``pip install matplotlib``, the ``plots`` extra): it is imported
only here, only when plots are asked for, and through ``matplotlib.figure.Figure`` (no
pyplot, so no GUI backend and no global state).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_edge.review import metrics
from cxr_edge.rows import threshold_cell

if TYPE_CHECKING:
    from cxr_edge.review.evaluate import Evaluation

PLOT_FILES = ("roc.png", "confusion.png", "histogram.png")
DPI = 110


class PlotsUnavailable(Exception):
    """matplotlib is not installed; the message says how to get it."""


def figure(size: tuple[float, float] = (4.8, 4.2)) -> Any:
    """A matplotlib figure without pyplot's global state, or a clear error without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotsUnavailable(
            "plots need matplotlib, which is not installed: `pip install matplotlib` (the 'plots' extra) "
            "(metrics.json and the CSV were written without them)"
        ) from exc
    return Figure(figsize=size, layout="constrained")


def remove_plots(out_dir: str | Path) -> None:
    """Remove an earlier run's plots, so that none stays beside metrics it was not drawn from
    (``--no-plots``, or no matplotlib this time)."""
    for name in PLOT_FILES:
        (Path(out_dir) / name).unlink(missing_ok=True)


def evaluation_plots(ev: "Evaluation", out_dir: str | Path) -> list[Path]:
    """Write the three plots of an evaluation into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    figures = (roc_figure(ev), confusion_figure(ev), histogram_figure(ev))
    paths = []
    for name, fig in zip(PLOT_FILES, figures):
        fig.savefig(out / name, dpi=DPI)
        paths.append(out / name)
    return paths


def roc_figure(ev: "Evaluation") -> Any:
    """ROC curve with the operating point (and the target-sensitivity point) marked."""
    fig = figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.8", linestyle="--", linewidth=1)
    binary = ev.binary
    if ev.y_true.any() and not ev.y_true.all():
        fpr, tpr, _ = metrics.roc_curve(ev.y_true, ev.rank)  # the ranking the AUC is of
        ax.plot(fpr, tpr, color="tab:blue", label=f"ROC (AUC {binary['auc']:.3f})")
    else:
        ax.text(0.5, 0.5, "one class only: no ROC curve", ha="center")
    point = (1 - binary["specificity"], binary["sensitivity"])
    ax.plot(*point, "o", color="tab:red", label=f"threshold {ev.threshold:g}")
    if ev.at_target:
        t = ev.at_target
        ax.plot(1 - t["specificity"], t["sensitivity"], "s", color="tab:green",
                label=f"sens >= {t['target_sensitivity']:g}: threshold {threshold_cell(t['threshold'])}")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="1 - specificity (false positive rate)",
           ylabel="sensitivity (true positive rate)", title=ev.bundle.short_id)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def confusion_figure(ev: "Evaluation") -> Any:
    """Counts per (truth, prediction), the multiclass matrix for multiclass models."""
    if ev.multiclass:
        names, matrix = list(ev.bundle.labels), np.array(ev.multiclass["confusion"])
    else:
        names, rows = ev.binary_confusion()
        matrix = np.array(rows)
    fig = figure()
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if count > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="prediction", ylabel="truth", title=f"threshold {ev.threshold:g}")
    return fig


def histogram_figure(ev: "Evaluation") -> Any:
    """Histogram of the pneumonia probability for each true class, with the threshold."""
    fig = figure((5.6, 3.8))
    ax = fig.add_subplot()
    names = np.array([ev.truths[i].name for i in ev.ok])
    bins = np.linspace(0, 1, 26)
    for name in dict.fromkeys(names):
        ax.hist(ev.score[names == name], bins=bins, alpha=0.55, label=f"{name} ({np.sum(names == name)})")
    ax.axvline(ev.threshold, color="tab:red", linestyle="--", label=f"threshold {ev.threshold:g}")
    ax.set(xlabel=f"probability of {ev.bundle.rule.positive_name}", ylabel="images", xlim=(0, 1))
    ax.legend(fontsize="small")
    return fig
