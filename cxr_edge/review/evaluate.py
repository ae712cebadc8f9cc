"""``cxr-edge evaluate``: check a model on a clinic's own labelled folders before trusting it.

``DIR`` holds one subfolder per class, named by the model's labels (any case). For a
multiclass model with subtype labels (BACTERIAL/VIRAL, or BACTERIA/VIRUS), a Kermany-style
``PNEUMONIA/`` folder is read too: the subtype comes from the file name
(``person1_bacteria_2.jpeg``, ``person3_virus_4.jpeg``), and a file without one counts as
positive for the pneumonia metrics only. Images go through the same engine as ``classify``;
the numbers come from :mod:`cxr_edge.review.metrics` (numpy only), so this runs on the device.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
from pathlib import Path, PurePath
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from cxr_edge import report, rows
from cxr_edge.review import metrics
from cxr_edge.bundle import Bundle
from cxr_edge.classify import CPU, EDGETPU, open_classifier
from cxr_edge.decision import HEAD
from cxr_edge.engine import ERROR, OK, REJECTED, Result, classify_files
from cxr_edge.review.kermany import parse_name
from cxr_edge.review.labelled import KERMANY_POSITIVE, DataLayoutError, Truth, labelled_inputs

N_BOOT = 1000
#: Below this many positives a threshold tuned to a sensitivity is a rough estimate.
FEW_POSITIVES = 50
#: Below this many readable images of either class the table warns: the intervals span most
#: of the scale, and one film more or less moves every figure.
MIN_PER_CLASS = 50
#: Below this many images of either class a bootstrap interval of F1, balanced accuracy or
#: AUC is not estimated: two films give "1.000-1.000", which reads as certainty.
MIN_FOR_BOOTSTRAP = 10
#: From this share of Kermany-style file names on, the folder looks like the training set.
KERMANY_SHARE = 0.5
#: Metrics whose interval is the bootstrap's alone (the others also have an exact one).
BOOTSTRAP_ONLY = tuple(m for m in metrics.CI_METRICS if m not in metrics.PROPORTIONS)
PREDICTIONS_CSV = "predictions.csv"
METRICS_JSON = "metrics.json"
TRUTH_COLUMN = "truth"


def patient_key(result: Result, truth: Truth) -> str:
    """Whose film this is, for resampling patients: the DICOM PatientID, else the patient of a
    Kermany file name (``person12_virus_3``, ``IM-0101-0001``), else "" (unknown)."""
    patient_id = str(result.info.get("patient_id", "")).strip()
    if patient_id:
        return f"PatientID {patient_id}"
    return parse_name(PurePath(result.display).stem, KERMANY_POSITIVE if truth.positive else "NORMAL")[0]


@dataclasses.dataclass
class Evaluation:
    """Results of one evaluation and the metrics drawn from them."""

    bundle: Bundle
    data_dir: str
    threshold: float
    threshold_source: str
    truths: list[Truth]
    results: list[Result]
    target_sensitivity: float | None = None
    prevalences: tuple[float, ...] = ()
    n_boot: int = N_BOOT

    def __post_init__(self) -> None:
        ok = [i for i, r in enumerate(self.results) if r.status == OK]
        if not ok:
            raise DataLayoutError(
                f"none of the {len(self.results)} images in {self.data_dir} could be read "
                f"(first: {self.results[0].display}: {self.results[0].error})"
            )
        self.ok = ok
        self.y_true = np.array([self.truths[i].positive for i in ok], dtype=int)
        self.score = np.array([self.results[i].probability for i in ok], dtype=np.float64)
        scores = [self.results[i].score for i in ok]
        # What ranks: the page's order, the head's float score (the int8 probability ties films at its steps);
        # where the head decides, its probability is that score already (both averaged over the views)
        by_head = self.bundle.rule.decided_by == HEAD
        self.rank = self.score if None in scores or by_head else np.array(scores, dtype=np.float64)

    @property
    def ranked_by_score(self) -> bool:
        """Whether the AUC comes from the ``score`` column rather than the ``probability`` that decides."""
        return self.rank is not self.score and not np.array_equal(self.rank, self.score)

    def binary_confusion(self) -> tuple[list[str], list[list[int]]]:
        """(names, rows) of the 2x2 confusion: rows are the truth, columns the prediction."""
        b = self.binary
        return [self.bundle.negative_label, self.bundle.rule.positive_name], [[b["tn"], b["fp"]], [b["fn"], b["tp"]]]

    @property
    def errors(self) -> list[Result]:
        """Images that could not be read."""
        return [r for r in self.results if r.status == ERROR]

    @property
    def rejected(self) -> list[Result]:
        """Labelled films the bundle's gate refused as not frontal chest films: left out of the metrics,
        counted apart, since on a clinic's device they would not have been screened either."""
        return [r for r in self.results if r.status == REJECTED]

    def class_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for truth in self.truths:
            counts[truth.name] = counts.get(truth.name, 0) + 1
        return counts

    @functools.cached_property
    def binary(self) -> dict[str, float]:
        """Metrics at the threshold (of the probability that decides); the AUC from what ranks, the
        probability's beside it (``auc_probability``) where they differ."""
        found = metrics.binary_metrics(self.y_true, self.score, self.threshold)
        if self.ranked_by_score:
            found["auc_probability"], found["auc"] = found["auc"], metrics.roc_auc(self.y_true, self.rank)
        return found

    @functools.cached_property
    def groups(self) -> list[tuple[str, Any]]:
        """The bootstrap's unit for each readable image: its patient when known, else the image
        itself. Films of one patient are alike, so resampling them one by one narrows the intervals."""
        keys = [patient_key(self.results[i], self.truths[i]) for i in self.ok]
        return [("patient", key) if key else ("image", n) for n, key in enumerate(keys)]

    @property
    def resampled(self) -> str:
        """What the bootstrap resampled, for the table and metrics.json."""
        patients = len({key for kind, key in self.groups if kind == "patient"})
        if not patients:
            return f"{_count(len(self.groups), 'image')} (no patient known)"
        alone = sum(kind == "image" for kind, _ in self.groups)
        return _count(patients, "patient") + (f" and {_count(alone, 'image')} of unknown patient" if alone else "")

    @functools.cached_property
    def intervals(self) -> dict[str, tuple[float, float]]:
        """Bootstrap intervals (proportions widened to their exact ones); ``nan`` where the
        sample is too small for the bootstrap alone to say anything (:attr:`too_few_for_bootstrap`)."""
        found = metrics.bootstrap_ci(self.y_true, self.score, self.threshold, n_boot=self.n_boot, groups=self.groups)
        if self.ranked_by_score:
            found["auc"] = metrics.bootstrap_ci(self.y_true, self.rank, self.threshold, n_boot=self.n_boot,
                                                groups=self.groups, metrics=("auc",))["auc"]
        if self.too_few_for_bootstrap:
            found.update({name: (math.nan, math.nan) for name in BOOTSTRAP_ONLY})
        return found

    @property
    def class_sizes(self) -> tuple[int, int]:
        """(positives, negatives) among the readable images."""
        positives = int(self.y_true.sum())
        return positives, len(self.y_true) - positives

    @property
    def too_few_for_bootstrap(self) -> bool:
        return min(self.class_sizes) < MIN_FOR_BOOTSTRAP

    @functools.cached_property
    def warnings(self) -> list[str]:
        """What makes these figures less than they look: too few films, or the training films."""
        positives, negatives = self.class_sizes
        found = []
        if min(positives, negatives) < MIN_PER_CLASS:
            found.append(f"only {positives} positive and {negatives} negative readable images (fewer than "
                         f"{MIN_PER_CLASS} of a class): every figure is rough; check on a few hundred films")
        kermany = sum(bool(patient_key(self.results[i], self.truths[i])) and not self.results[i].info.get("patient_id")
                      for i in self.ok)
        if kermany >= KERMANY_SHARE * len(self.ok):
            found.append(f"{kermany} of {len(self.ok)} file names follow the Kermany et al. pattern "
                         "(person12_virus_3.jpeg, IM-0101-0001.jpeg): the bundled models were trained on that "
                         "dataset's train split, and on films they were trained on the figures are optimistic; "
                         "only its test split is held out")
        return found

    @functools.cached_property
    def multiclass(self) -> dict[str, Any] | None:
        """Per-label metrics for multiclass models, on the images whose exact label is known.

        None without a positive image of known subtype: NORMAL images alone say nothing about
        telling subtypes apart (their "multiclass accuracy" would be the specificity).
        """
        if self.bundle.task != "multiclass":
            return None
        known = [i for i in self.ok if self.truths[i].label is not None]
        if not any(self.truths[i].positive for i in known):
            return None
        labels = list(self.bundle.labels)
        y = [labels.index(self.truths[i].label) for i in known]
        pred = [labels.index(self.results[i].prediction) for i in known]
        return metrics.multiclass_metrics(y, pred, labels)

    @functools.cached_property
    def at_target(self) -> dict[str, float] | None:
        """The threshold reaching the target sensitivity on this data, and what it gives."""
        if self.target_sensitivity is None or not self.y_true.any():
            return None
        t = metrics.threshold_for_sensitivity(self.y_true, self.score, self.target_sensitivity)
        found = metrics.binary_metrics(self.y_true, self.score, t)
        positives = int(self.y_true.sum())
        rough = positives < FEW_POSITIVES  # each positive moves the sensitivity by over 2%
        note = f"rough estimate: only {positives} positives (fewer than {FEW_POSITIVES})" if rough else ""
        current = self.binary
        return {
            "target_sensitivity": self.target_sensitivity,
            "note": note,
            **found,
            # beside the threshold in use: a suggestion may find fewer films than it
            "current": {k: current[k] for k in ("threshold", "sensitivity", "specificity")},
            "missed_vs_current": current["tp"] - found["tp"],
            "false_alarms_vs_current": found["fp"] - current["fp"],
            # the sensitivity reached, at worst (exact): 99 of 100 found is compatible with 0.95
            "sensitivity_lower_95": metrics.clopper_pearson(found["tp"], positives)[0],
            "threshold_ci95": metrics.threshold_interval(self.y_true, self.score, self.target_sensitivity,
                                                         n_boot=self.n_boot, groups=self.groups),
        }

    @functools.cached_property
    def at_prevalences(self) -> list[dict[str, Any]]:
        """Accuracy, PPV and NPV with 95% intervals at each class mix asked for: what a clinic
        whose share of pneumonia differs from this folder's would see, if sensitivity and
        specificity carry over."""
        b = self.binary
        return [
            {
                **metrics.at_prevalence(b["sensitivity"], b["specificity"], p),
                "ci95": metrics.bootstrap_ci(
                    self.y_true, self.score, self.threshold, n_boot=self.n_boot, prevalence=p, groups=self.groups
                ),
            }
            for p in self.prevalences
        ]

    def to_json(self) -> dict[str, Any]:
        binary = self.binary
        return metrics.finite_or_none(
            {
                "model": self.bundle.short_id,
                "model_manifest": str(self.bundle.manifest_path),
                "quantization": self.bundle.quantization,
                "data_dir": self.data_dir,
                "threshold": self.threshold,
                "threshold_source": self.threshold_source,
                "warnings": self.warnings,
                "n_images": len(self.results),
                "n_unreadable": len(self.errors),
                "n_rejected": len(self.rejected),
                "classes": self.class_counts(),
                "binary": binary,
                "auc_from": "score" if self.ranked_by_score else "probability",
                "ci95": {k: list(v) for k, v in self.intervals.items()},  # null: cannot be estimated
                "bootstrap": {
                    "n_boot": self.n_boot,
                    "level": 0.95,
                    "resampled": self.resampled,
                    "proportions": "widened to contain the exact Clopper-Pearson interval",
                },
                "calibration": {
                    "brier": metrics.brier_score(self.y_true, self.score),
                    "ece": metrics.expected_calibration_error(self.y_true, np.clip(self.score, 0, 1)),
                },
                "multiclass": self.multiclass,
                "at_target_sensitivity": self.at_target,
                "at_prevalence": self.at_prevalences,
            }
        )


def run(
    data_dir: str | Path,
    model: str | Path | None = None,
    threshold: float | None = None,
    target_sensitivity: float | None = None,
    prevalences: Sequence[float] = (),
    threads: int | None = None,
    workers: int | None = None,
    edgetpu: bool = False,
    recursive: bool = True,
    progress: bool = False,
    n_boot: int = N_BOOT,
) -> Evaluation:
    """Classify every labelled image of ``data_dir`` and return the :class:`Evaluation`."""
    classifier = open_classifier(model, threads, EDGETPU if edgetpu else CPU, threshold)
    bundle = classifier.bundle
    inputs = labelled_inputs(data_dir, bundle, recursive=recursive)
    bar = tqdm(total=len(inputs), unit="img", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    with bar:
        results = []
        for result in classify_files([found for found, _ in inputs], classifier, workers=workers):
            results.append(result)
            bar.update()
    return Evaluation(
        bundle=bundle,
        data_dir=str(data_dir),
        threshold=bundle.threshold,
        threshold_source="manifest" if threshold is None else "--threshold",
        truths=[truth for _, truth in inputs],
        results=results,
        target_sensitivity=target_sensitivity,
        prevalences=tuple(prevalences),
        n_boot=n_boot,
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _cell(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def rejected_line(ev: Evaluation) -> str:
    """How many labelled films the gate rejected (not in the metrics), by class."""
    if ev.bundle.gate is None:
        return "no gate in this model (every readable film is screened)"
    by_class: dict[str, int] = {}
    for result, truth in zip(ev.results, ev.truths):
        if result.status == REJECTED:
            by_class[truth.name] = by_class.get(truth.name, 0) + 1
    detail = f" ({', '.join(f'{k} {v}' for k, v in sorted(by_class.items()))})" if by_class else ""
    return f"{len(ev.rejected)} rejected by the gate as not frontal chest films{detail}, left out of the metrics"


def _interval(low: float, high: float) -> str:
    return "cannot be estimated" if math.isnan(low) or math.isnan(high) else f"{_cell(low)}-{_cell(high)}"


def format_table(ev: Evaluation) -> str:
    """The stdout summary: counts, metrics with 95% intervals, confusion matrices."""
    binary, ci = ev.binary, ev.intervals
    counts = ", ".join(f"{k} {v}" for k, v in ev.class_counts().items())
    lines = [
        f"model {ev.bundle.short_id} ({ev.bundle.quantization}), "
        f"threshold {ev.threshold:g} ({ev.threshold_source})",
        f"{len(ev.results)} images ({counts}); {len(ev.errors)} unreadable; {rejected_line(ev)}",
        *(f"warning: {warning}" for warning in ev.warnings),
        "",
        f"{'metric':<18} {'value':>6}   95% CI",
    ]
    for name in metrics.CI_METRICS:
        lines.append(f"{name:<18} {_cell(binary[name]):>6}   {_interval(*ci[name])}")
    if ev.ranked_by_score:
        lines.append(f"(auc: from the score column, the order of the page; from the 8-bit probability column, "
                     f"which ties films, {_cell(binary['auc_probability'])})")
    lines.append(f"(intervals: {ev.n_boot} resamples of {ev.resampled}"
                 + (f"; none for {', '.join(BOOTSTRAP_ONLY)} with fewer than {MIN_FOR_BOOTSTRAP} images of a "
                    "class, where a bootstrap says nothing" if ev.too_few_for_bootstrap else "") + ")")
    lines += ["", "confusion (rows: truth, columns: prediction)"]
    lines += _matrix(*ev.binary_confusion())
    multi = ev.multiclass
    if multi:
        lines += ["", f"multiclass accuracy {_cell(multi['accuracy'])}, macro F1 {_cell(multi['macro_f1'])}"]
        lines += _matrix(list(ev.bundle.labels), multi["confusion"])
    elif ev.bundle.task == "multiclass":
        folders = "/ or ".join(ev.bundle.rule.positive_labels)
        lines += ["", f"no subtype metrics: no positive image has a known subtype ({folders}/ folder, "
                      f"or _bacteria_ / _virus_ in a {KERMANY_POSITIVE}/ file name)"]
    target = ev.at_target
    if target:
        lines += [
            "",
            f"threshold for sensitivity >= {target['target_sensitivity']:g} on this data: "
            f"{rows.threshold_cell(target['threshold'])} "
            f"(sensitivity {_cell(target['sensitivity'])}, specificity {_cell(target['specificity'])})"
            + (f"; {target['note']}" if target["note"] else ""),
            f"  95% CI of that threshold over resamples: {_interval(*target['threshold_ci95'])}; "
            "the sensitivity it reaches is at least "  # rounded down: a lower bound must not round up
            f"{_cell(math.floor(target['sensitivity_lower_95'] * 1000) / 1000)} (exact 95% bound)",
            *_beside_current(target, ev.bundle),
        ]
    elif ev.target_sensitivity is not None:  # asked for, so say why it is missing
        lines += ["", f"no threshold for sensitivity >= {ev.target_sensitivity:g}: no readable positive image"]
    lines += _prevalence_lines(ev)
    return "\n".join(lines)


def _beside_current(target: dict[str, Any], bundle: Bundle) -> list[str]:
    """The suggested threshold beside the one in use, on the same films, and what changing would
    cost: films it would miss that the current one finds, or films it would add, and the false alarms."""
    current = target["current"]
    lines = [f"  {'':<10} {'threshold':>10} {'sensitivity':>12} {'specificity':>12}"]
    for name, point in (("current", current), ("suggested", target)):
        lines.append(f"  {name:<10} {rows.threshold_cell(point['threshold']):>10} "
                     f"{_cell(point['sensitivity']):>12} {_cell(point['specificity']):>12}")
    missed, alarms = target["missed_vs_current"], target["false_alarms_vs_current"]
    films = f"{bundle.rule.positive_name} film{'' if abs(missed) == 1 else 's'}"
    than = f"the current one ({rows.threshold_cell(current['threshold'])})"
    cost = (f"{abs(alarms)} {'more' if alarms > 0 else 'fewer'} false alarm{'' if abs(alarms) == 1 else 's'}"
            if alarms else "as many false alarms")
    if missed > 0:
        lines.append(f"  the suggested threshold would miss {missed} {films} that {than} finds, for {cost}")
    elif missed < 0:
        lines.append(f"  the suggested threshold finds {-missed} {films} more than {than}, for {cost}")
    return lines


def _prevalence_lines(ev: Evaluation) -> list[str]:
    if not ev.prevalences:
        return []
    here = ev.y_true.mean()
    lines = ["", f"expected at another share of {ev.bundle.rule.positive_name} (here {here:.3f}), "
             "if sensitivity and specificity carry over:"]
    for row in ev.at_prevalences:
        cells = [f"{m} {_cell(row[m])} ({_cell(row['ci95'][m][0])}-{_cell(row['ci95'][m][1])})"
                 for m in metrics.PREVALENCE_METRICS]
        lines.append(f"  {row['prevalence']:g}: " + ", ".join(cells))
    return lines


def _matrix(names: Sequence[str], rows: Sequence[Sequence[int]]) -> list[str]:
    width = max(10, *(len(n) + 1 for n in names))
    out = [" " * width + "".join(f"{n:>{width}}" for n in names)]
    out += [f"{name:<{width}}" + "".join(f"{v:>{width}}" for v in row) for name, row in zip(names, rows)]
    return out


def write_outputs(ev: Evaluation, out_dir: str | Path) -> list[Path]:
    """Write metrics.json and the per-image CSV (with a ``truth`` column) into ``out_dir``.

    The CSV never carries patient identifiers (``patient_id``, ``study_date``): an evaluation
    needs the truth and the answer, not who the patient was. The plots are
    :mod:`cxr_edge.review.plots`' own (:func:`~cxr_edge.review.plots.remove_plots` first, so that none
    stays beside metrics it was not drawn from).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / METRICS_JSON
    metrics_path.write_text(json.dumps(ev.to_json(), indent=2) + "\n", encoding="utf-8")
    csv_path = out / PREDICTIONS_CSV
    bundle = ev.bundle
    header = [*rows.columns(bundle.labels, multiclass=bundle.task == "multiclass", phi=False), TRUTH_COLUMN]
    with report.ReportWriter(csv_path, header, bundle.short_id, overwrite=True) as writer:
        for result, truth in zip(ev.results, ev.truths):
            row = rows.result_row(result, bundle.labels, ev.threshold, bundle.short_id)
            writer.write({**row, TRUTH_COLUMN: truth.name})
    return [metrics_path, csv_path]
