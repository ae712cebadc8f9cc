"""``cxr-edge adapt``: refit a bundle's last layer on a site's own labelled films, and keep it only if it helps.

Every clinic's films differ from the training films (machine, exposure, export, population). The
bundle's head is a linear map of the features output (:mod:`cxr_edge.head`), so a site's labelled
films can refit it on the device, without TensorFlow (:mod:`cxr_edge.review.refit`). What makes that
safe is the check around it: folds that never split a patient, the threshold chosen out of fold for
the target sensitivity, the shipped bundle measured on the same films, intervals by patient, and a
rule (:func:`verdict`) that writes the adapted bundle only when it beats the shipped one out of fold.
Otherwise nothing but the report is written: a clinic keeps the shipped bundle (the report gives the
threshold that reaches the target on its films, for ``--threshold``).

Films are read through the engine as ``cxr-edge evaluate`` reads them: unreadable and gate-rejected
films are counted and named, never fitted on.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import functools
import hashlib
import json
import math
import re
import shutil
import sys
from pathlib import Path, PurePath
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from cxr_edge import __version__, decision
from cxr_edge.bundle import Bundle, BundleError, load_bundle, sha256_file, write_bundle
from cxr_edge.discover import Found
from cxr_edge.engine import ERROR, OK, REJECTED, Classifier, Result, classify_files
from cxr_edge.gate import GATE_SUFFIX
from cxr_edge.head import HEAD_SUFFIX, Head
from cxr_edge.preprocess import Prepared
from cxr_edge.review import metrics, refit
from cxr_edge.review.evaluate import N_BOOT, patient_key
from cxr_edge.review.labelled import DataLayoutError, Truth, labelled_inputs

#: Fewest films and patients of each class adapt accepts. Five patient folds need patients of every
#: class in every fold, at least five each (so each fit sees 20 of each class, each check 5); and 40
#: positives all found give an exact 95% lower bound of sensitivity of 0.91, the least that says
#: anything about a 0.95 target (fewer cannot tell 0.95 from 0.85).
MIN_FILMS = 40
MIN_PATIENTS = 5 * refit.N_FOLDS
#: More than this share of the readable films rejected by the gate: the folder is not what the model reads.
MOST_REJECTED = 0.5
DEFAULT_TARGET = 0.95  # when the manifest's threshold rule names none
ADD_FEATURES = "python -m convert.add_gate (docs/conversion.md, 'The out-of-distribution gate')"
REPORT_MD, REPORT_JSON = "adapt-report.md", "adapt-report.json"
RULE = ("the adapted head is written only if, out of fold on the same films, (1) the patient-bootstrap 95% "
        "interval of its AUC gain over the shipped bundle's lies above zero, (2) at the target sensitivity its "
        "specificity is at least the shipped bundle's with a threshold chosen on these same films, and (3) for "
        "a subtype model its three-class accuracy is at least the shipped bundle's")
WHAT_IT_IS = (
    "Adaptation refits only the model's last layer (a linear map of the features it computes) on this "
    "site's labelled films; the network itself is not retrained and does not change. The figures below are "
    "measured on these films alone, each film scored by a fit that never saw its patient: they hold for films "
    "like these, from this site, and are no guarantee for others. Measure again (cxr-edge evaluate) on films "
    "taken after these, and adapt again when the site's equipment or population changes."
)


@dataclasses.dataclass(frozen=True)
class Film:
    """One labelled film the gate let through: what it is, whose it is, and what the model made of it."""

    result: Result
    truth: Truth
    patient: str
    features: tuple[np.ndarray, ...]  # per test-time view, (D,)


class _Capturing(Classifier):
    """The engine's classifier, keeping each screened film's features (per view) beside its result."""

    def __init__(self, bundle: Bundle, kept: dict[str, list[np.ndarray]], threads: int | None = None):
        super().__init__(bundle, threads=threads)
        self.kept = kept

    def replica(self) -> "_Capturing":
        return _Capturing(self.bundle, self.kept, threads=1)

    def run(self, found: Found, prepared: Prepared) -> Result:
        result = super().run(found, prepared)
        if result.status == OK:
            self.kept[found.path] = [view[0] for view in self.features(prepared.pixels[None])]
        return result


def adaptable(bundle: Bundle) -> Bundle:
    """The bundle, if it has what adapting refits: a features output and a head."""
    if bundle.features_output is None or bundle.head is None:
        missing = "features output" if bundle.features_output is None else "head"
        raise BundleError(f"{bundle.manifest_path}: model {bundle.short_id} has no {missing} (manifest schema "
                          f"{bundle.manifest.get('schema_version')}), so there is no last layer to refit; "
                          f"add one with {ADD_FEATURES}")
    return bundle


def default_target(bundle: Bundle) -> float:
    """The sensitivity the bundle's own threshold was chosen for (its manifest's threshold rule)."""
    found = re.search(r"sensitivity\s*>=\s*([0-9.]+)", str(bundle.manifest.get("threshold_rule", "")))
    return float(found.group(1)) if found else DEFAULT_TARGET


def read_patients(path: Path | None) -> dict[str, str]:
    """``file,patient`` rows -> {file as written: patient} (also keyed by the bare file name)."""
    if path is None:
        return {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"file", "patient"} <= set(rows[0]):
        raise DataLayoutError(f"{path}: a patients list needs the columns file,patient")
    known = {PurePath(row["file"]).as_posix(): row["patient"].strip() for row in rows if row["patient"].strip()}
    names = [PurePath(f).name for f in known]
    known.update({PurePath(f).name: p for f, p in list(known.items()) if names.count(PurePath(f).name) == 1})
    return known


def patient_of(result: Result, truth: Truth, listed: dict[str, str]) -> str:
    """The DICOM PatientID, else the ``--patients`` list's entry (by the path below DIR or the bare name),
    else the Kermany file name's patient; "" when none says."""
    if str(result.info.get("patient_id", "")).strip():
        return patient_key(result, truth)
    display = PurePath(result.display).as_posix()
    for key in (display, PurePath(display).name):
        if key in listed:
            return f"listed {listed[key]}"
    return patient_key(result, truth)


def read_site(data_dir: Path, bundle: Bundle, listed: dict[str, str], workers: int | None = None,
              progress: bool = False) -> tuple[list[Result], list[Truth], list[Film]]:
    """Every labelled film through the engine (as ``evaluate`` reads them): all results and truths, and the
    films the gate passed with their features and patients (a film of unknown patient is its own)."""
    inputs = labelled_inputs(data_dir, bundle)
    kept: dict[str, list[np.ndarray]] = {}
    classifier = _Capturing(bundle, kept)
    results: list[Result] = []
    bar = tqdm(total=len(inputs), unit="img", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    with bar:
        for result in classify_files([found for found, _ in inputs], classifier, workers=workers):
            results.append(result)
            bar.update()
    truths = [truth for _, truth in inputs]
    films = [Film(r, t, patient_of(r, t, listed) or f"file {r.display}", tuple(kept[r.path]))
             for r, t in zip(results, truths) if r.status == OK and t.label is not None]
    return results, truths, films


def check_site(bundle: Bundle, results: Sequence[Result], films: Sequence[Film]) -> None:
    """Refuse a folder that cannot give honest figures: mostly rejected, or too few films or patients of a class."""
    readable = [r for r in results if r.status != ERROR]
    rejected = sum(r.status == REJECTED for r in results)
    if not readable:
        raise DataLayoutError(f"none of the {len(results)} films could be read (first: {results[0].display}: "
                              f"{results[0].error})")
    if rejected > MOST_REJECTED * len(readable):
        raise DataLayoutError(f"the gate rejected {rejected} of the {len(readable)} readable films as not upright "
                              "frontal chest films: this folder is not what the model reads (check what was exported)")
    short = []
    for label in bundle.labels:
        mine = [f for f in films if f.truth.label == label]
        patients = len({f.patient for f in mine})
        if len(mine) < MIN_FILMS or patients < MIN_PATIENTS:
            short.append(f"{label} {len(mine)} films of {patients} patients")
    if short:
        raise DataLayoutError(f"too few screened films to adapt honestly: {', '.join(short)}; at least {MIN_FILMS} "
                              f"films of {MIN_PATIENTS} patients of each of {', '.join(bundle.labels)} are needed "
                              f"({refit.N_FOLDS} patient folds, each with patients of every class; an exact lower "
                              "bound of sensitivity needs enough positives)")


def scored(rule: decision.Rule, head_outputs: Sequence[np.ndarray]) -> decision.Decided:
    """What a bundle deciding by this head would make of the films: its averaged output decides and ranks."""
    rule = dataclasses.replace(rule, decided_by=decision.HEAD, cascade=None)  # every view, as the head was fitted
    return decision.decide(rule, head_outputs, head_outputs)


@dataclasses.dataclass
class Side:
    """One bundle's figures on the site's films: decided by ``probability`` at ``threshold``, ranked by ``score``."""

    name: str
    probability: np.ndarray
    score: np.ndarray
    labels: tuple[str, ...]
    threshold: float
    threshold_source: str


@dataclasses.dataclass
class Adaptation:
    """A site's films, the out-of-fold check of a head refitted on them, and the verdict."""

    bundle: Bundle
    data_dir: str
    results: list[Result]
    truths: list[Truth]
    films: list[Film]
    target: float
    oof: refit.OutOfFold
    head: Head
    penalty: float
    threshold: float
    patients_source: str
    n_boot: int = N_BOOT

    @property
    def y(self) -> np.ndarray:
        return np.array([f.truth.positive for f in self.films], dtype=int)

    @property
    def groups(self) -> list[str]:
        return [f.patient for f in self.films]

    @functools.cached_property
    def adapted(self) -> Side:
        decided = scored(self.bundle.rule.with_threshold(self.threshold), self.oof.head_outputs)
        return Side("adapted head, out of fold", decided.probability, decided.probability, decided.labels,
                    self.threshold, f"chosen out of fold for sensitivity >= {self.target:g} on 97.5% of resamples")

    @functools.cached_property
    def base(self) -> Side:
        results = [f.result for f in self.films]
        return Side(f"shipped {self.bundle.short_id}", np.array([r.probability for r in results]),
                    np.array([r.score for r in results]), tuple(r.prediction for r in results),
                    self.bundle.threshold, "its manifest")

    def side_figures(self, side: Side) -> dict[str, Any]:
        """AUC from the ranking, sensitivity and specificity at the side's threshold, with intervals."""
        y, groups = self.y, self.groups
        at = metrics.binary_metrics(y, side.probability, side.threshold)
        ci = metrics.bootstrap_ci(y, side.probability, side.threshold, n_boot=self.n_boot, groups=groups,
                                  metrics=("sensitivity", "specificity"))
        auc_ci = metrics.bootstrap_ci(y, side.score, 0.5, n_boot=self.n_boot, groups=groups, metrics=("auc",))
        found = {
            "threshold": side.threshold, "threshold_source": side.threshold_source,
            "auc": metrics.roc_auc(y, side.score), "auc_ci95": list(auc_ci["auc"]),
            "auc_from_probability": metrics.roc_auc(y, side.probability),
            **{k: at[k] for k in ("sensitivity", "specificity", "tp", "fn", "tn", "fp")},
            "sensitivity_ci95": list(ci["sensitivity"]), "specificity_ci95": list(ci["specificity"]),
            "sensitivity_lower_95": metrics.clopper_pearson(at["tp"], at["tp"] + at["fn"])[0],
        }
        if self.bundle.task == "multiclass":
            found["three_class_accuracy"], found["three_class_accuracy_ci95"] = self._accuracy(side.labels)
        return found

    def _accuracy(self, labels: Sequence[str]) -> tuple[float, list[float]]:
        right = np.array([p == f.truth.label for p, f in zip(labels, self.films)], dtype=float)
        ci = metrics.bootstrap(lambda idx: {"accuracy": float(right[idx].mean())}, len(right), n_boot=self.n_boot,
                               groups=self.groups)["accuracy"]
        return float(right.mean()), list(ci)

    @functools.cached_property
    def figures(self) -> dict[str, Any]:
        base, adapted = self.base, self.adapted
        y = self.y
        recalibrated = metrics.threshold_for_sensitivity(y, base.probability, self.target)
        at_target = metrics.binary_metrics(y, base.probability, recalibrated)
        gain = metrics.bootstrap(
            lambda idx: {"auc_gain": metrics.roc_auc(y[idx], adapted.score[idx]) - metrics.roc_auc(y[idx], base.score[idx])},
            len(y), n_boot=self.n_boot, groups=self.groups)["auc_gain"]
        return metrics.finite_or_none({
            "base": self.side_figures(base),
            "adapted": self.side_figures(adapted),
            "base_at_target": {"threshold": recalibrated, "sensitivity": at_target["sensitivity"],
                               "specificity": at_target["specificity"]},
            "auc_gain": metrics.roc_auc(y, adapted.score) - metrics.roc_auc(y, base.score),
            "auc_gain_ci95": list(gain),
        })

    @functools.cached_property
    def reasons(self) -> list[str]:
        """Why the adapted head is not written (empty: it is)."""
        fig = self.figures
        adapted, base_at = fig["adapted"], fig["base_at_target"]
        found = []
        if not fig["auc_gain_ci95"][0] > 0:
            low, high = fig["auc_gain_ci95"]
            found.append(f"its AUC gain over the shipped bundle, {fig['auc_gain']:+.4f} (95% interval {low:+.4f} to "
                         f"{high:+.4f}), is not surely above zero")
        if adapted["sensitivity"] < self.target:
            found.append(f"its sensitivity out of fold, {adapted['sensitivity']:.3f}, misses the target {self.target:g}")
        if adapted["specificity"] < base_at["specificity"]:
            found.append(f"its specificity at the target, {adapted['specificity']:.3f}, is below the shipped bundle's "
                         f"{base_at['specificity']:.3f} with a threshold chosen on these films")
        if self.bundle.task == "multiclass" and \
                adapted["three_class_accuracy"] < fig["base"]["three_class_accuracy"]:
            found.append(f"its three-class accuracy, {adapted['three_class_accuracy']:.3f}, is below the shipped "
                         f"bundle's {fig['base']['three_class_accuracy']:.3f}")
        return found

    @property
    def improved(self) -> bool:
        return not self.reasons

    def counts(self, of: str) -> dict[str, int]:
        """Films or patients per class among the films fitted on."""
        found: dict[str, set | int] = {}
        for film in self.films:
            label = film.truth.label
            if of == "films":
                found[label] = found.get(label, 0) + 1
            else:
                found.setdefault(label, set()).add(film.patient)
        return {k: v if isinstance(v, int) else len(v) for k, v in found.items()}

    @property
    def not_used(self) -> list[Result]:
        """Films left out: unreadable, rejected by the gate, or (subtype) positives of unknown subtype."""
        used = {id(f.result) for f in self.films}
        return [r for r in self.results if id(r) not in used]

    def record(self, date: str) -> dict[str, Any]:
        """The manifest's ``adapted`` record (and the JSON report's core)."""
        base = self.bundle
        return {
            "base": {"name": base.name, "version": base.manifest.get("version"), "sha256": base.sha256},
            "date": date,
            "data_dir": self.data_dir,
            "films": self.counts("films"),
            "patients": self.counts("patients"),
            "patients_from": self.patients_source,
            "not_used": {"unreadable": sum(r.status == ERROR for r in self.results),
                         "rejected": sum(r.status == REJECTED for r in self.results),
                         "unknown_subtype": sum(r.status == OK for r in self.not_used)},
            "target_sensitivity": self.target,
            "folds": refit.N_FOLDS,
            "penalty": self.penalty,
            "fold_penalties": list(self.oof.penalties),
            "out_of_fold": self.figures,
            "rule": RULE,
            "verdict": "adapted" if self.improved else "not adapted",
            "reasons": self.reasons,
            "created_by": f"cxr-edge {__version__} adapt",
        }


def adapt(data_dir: str | Path, model: str | Path | None = None, target_sensitivity: float | None = None,
          patients: Path | None = None, workers: int | None = None, progress: bool = False,
          n_boot: int = N_BOOT) -> Adaptation:
    """Read the site's films and adapt to them (:func:`fit`); nothing is written yet."""
    bundle = adaptable(load_bundle(model))
    results, truths, films = read_site(Path(data_dir), bundle, read_patients(patients), workers, progress)
    return fit(bundle, results, truths, films, str(data_dir), target_sensitivity, _patients_source(films, patients),
               n_boot)


def fit(bundle: Bundle, results: list[Result], truths: list[Truth], films: list[Film], data_dir: str,
        target_sensitivity: float | None = None, patients_source: str = "", n_boot: int = N_BOOT) -> Adaptation:
    """Refit the head out of fold (for the check and the threshold) and on every film (the head written)."""
    check_site(bundle, results, films)
    site = refit.Site(tuple(np.stack([f.features[v] for f in films]) for v in range(len(bundle.views))),
                      np.array([bundle.labels.index(f.truth.label) for f in films]),
                      np.array([f.patient for f in films]))
    oof = refit.out_of_fold(bundle.head, site)
    target = target_sensitivity or default_target(bundle)
    y = np.array([f.truth.positive for f in films], dtype=int)
    # a threshold tuned to just reach the target on these films misses it on about half of the next: take the
    # lower end of its 95% interval over patient resamples, which reached the target on 97.5% of them
    threshold = metrics.threshold_interval(y, scored(bundle.rule, oof.head_outputs).probability, target,
                                           n_boot=n_boot, groups=[f.patient for f in films])[0]
    penalty = refit.choose_penalty(bundle.head, site)
    return Adaptation(bundle=bundle, data_dir=data_dir, results=results, truths=truths, films=films,
                      target=target, oof=oof, head=refit.fit_head(bundle.head, site, penalty), penalty=penalty,
                      threshold=threshold, patients_source=patients_source, n_boot=n_boot)


def _patients_source(films: Sequence[Film], patients: Path | None) -> str:
    kinds = {f.patient.split(" ")[0] for f in films}
    named = {"PatientID": "DICOM PatientID", "listed": f"--patients {patients}", "file": "one per file"}
    return ", ".join(sorted(named.get(k, "Kermany file names") for k in kinds))


def one_per_file(adaptation: Adaptation) -> int:
    """Films whose patient nothing told: each counted as its own patient."""
    return sum(f.patient.startswith("file ") for f in adaptation.films)


def default_name(adaptation: Adaptation) -> str:
    """``<base>-adapted-<8 hex of the head>``: two adaptations never share a report's ``model`` column."""
    digest = hashlib.sha256(adaptation.head.weights.tobytes() + adaptation.head.bias.tobytes()).hexdigest()
    return f"{adaptation.bundle.name}-adapted-{digest[:8]}"


def write(adaptation: Adaptation, out: Path, name: str | None = None) -> list[Path]:
    """Write the report into ``out`` and, when the rule says so, the adapted bundle beside it."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder: give a new one")
    out.mkdir(parents=True, exist_ok=True)
    date = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    record = adaptation.record(date)
    written = []
    if adaptation.improved:
        written.append(write_bundle_of(adaptation, out, name or default_name(adaptation), record))
    report = {"adapted_bundle": written[0].name if written else None, **record,
              "left_out": [{"file": r.display, "why": left_out_reason(r)} for r in adaptation.not_used]}
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / REPORT_MD).write_text(report_markdown(adaptation, written[0] if written else None, date), encoding="utf-8")
    return written + [out / REPORT_MD, out / REPORT_JSON]


def write_bundle_of(adaptation: Adaptation, out: Path, name: str, record: dict[str, Any]) -> Path:
    """The same ``.tflite`` (its sha256 checked) and gate, the new head and threshold, decided by the head."""
    base = adaptation.bundle
    model_path = out / f"{name}.tflite"
    shutil.copyfile(base.model_path, model_path)
    if sha256_file(model_path) != base.sha256:
        raise BundleError(f"{model_path}: the copy of {base.model_path} does not match its sha256")
    gate_path = out / f"{name}{GATE_SUFFIX}"
    shutil.copyfile(base.gate_path, gate_path)
    head_path = out / f"{name}{HEAD_SUFFIX}"
    adaptation.head.save(head_path)
    # the base's cascade band was measured on its own output's view moves, not the new head's: every view runs
    dropped = ("model_file", "sha256", "schema_version", "edgetpu_model_file", "edgetpu_sha256", "edgetpu", "head",
               "test_time_cascade")
    manifest = {k: v for k, v in base.manifest.items() if k not in dropped}
    adapted = record["out_of_fold"]["adapted"]
    manifest.update({
        "name": name,
        "threshold": adaptation.threshold,
        "threshold_rule": f"sensitivity >= {adaptation.target:g} out of fold on the site's films on 97.5% of patient "
                          "resamples (the lower end of the 95% interval of the threshold that reaches it; cxr-edge "
                          "adapt), averaged over the test-time views, on the films the gate passes",
        "decided_by": decision.HEAD,
        "head": {"file": head_path.name},
        "gate": {**base.manifest["gate"], "file": gate_path.name},
        "metrics": {"split": f"out of fold ({refit.N_FOLDS} patient folds) on {adaptation.data_dir}", "at_threshold":
                    adapted},
        "adapted": record,
        "created_by": record["created_by"],
        "created": record["date"],
    })
    written = write_bundle(model_path, manifest)
    load_bundle(written)  # refuse to leave what cannot be loaded
    return written


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _ci(pair: Sequence[float | None]) -> str:
    return f"{_fmt(pair[0])}-{_fmt(pair[1])}"


def table(adaptation: Adaptation) -> list[str]:
    """The side-by-side table (markdown) of the shipped bundle and the adapted head on the same films."""
    fig = adaptation.figures
    base, adapted = fig["base"], fig["adapted"]
    rows = [
        ("AUC (from the ranking score)", base["auc"], base["auc_ci95"], adapted["auc"], adapted["auc_ci95"]),
        ("sensitivity at its threshold", base["sensitivity"], base["sensitivity_ci95"], adapted["sensitivity"],
         adapted["sensitivity_ci95"]),
        ("specificity at its threshold", base["specificity"], base["specificity_ci95"], adapted["specificity"],
         adapted["specificity_ci95"]),
    ]
    if adaptation.bundle.task == "multiclass":
        rows.append(("three-class accuracy", base["three_class_accuracy"], base["three_class_accuracy_ci95"],
                     adapted["three_class_accuracy"], adapted["three_class_accuracy_ci95"]))
    lines = ["| on the same films | shipped bundle | 95% interval | adapted head (out of fold) | 95% interval |",
             "|---|---|---|---|---|"]
    lines += [f"| {what} | {_fmt(b)} | {_ci(bci)} | {_fmt(a)} | {_ci(aci)} |" for what, b, bci, a, aci in rows]
    lines += [
        f"| threshold | {base['threshold']:.4g} (its manifest) | | {adapted['threshold']:.4g} (out of fold, "
        f"sensitivity >= {adaptation.target:g} on 97.5% of resamples) | |",
        f"| sensitivity, exact 95% lower bound | {_floor(base['sensitivity_lower_95'])} | | "
        f"{_floor(adapted['sensitivity_lower_95'])} | |",
    ]
    if base["auc_from_probability"] is not None and abs(base["auc_from_probability"] - base["auc"]) >= 0.0005:
        lines.append(f"| AUC from the 8-bit probability column | {_fmt(base['auc_from_probability'])} | | "
                     "(same as its score) | |")
    return lines


def _floor(value: float | None) -> str:
    """A lower bound rounded down: it must not round up."""
    return "n/a" if value is None else f"{math.floor(value * 1000) / 1000:.3f}"


def verdict_lines(adaptation: Adaptation, bundle_path: Path | None) -> list[str]:
    fig = adaptation.figures
    low, high = fig["auc_gain_ci95"]
    lines = [f"AUC gain of the adapted head: {fig['auc_gain']:+.4f} (paired patient bootstrap, 95% interval "
             f"{low:+.4f} to {high:+.4f})."]
    at = fig["base_at_target"]
    lines.append(f"The shipped bundle with a threshold chosen on these films for sensitivity >= {adaptation.target:g} "
                 f"({at['threshold']:.4g}): sensitivity {_fmt(at['sensitivity'])}, specificity "
                 f"{_fmt(at['specificity'])}.")
    if bundle_path is not None:
        lines.append(f"**Verdict: adapted.** The adapted bundle is {bundle_path.name}; use it with "
                     f"`cxr-edge classify FILMS --model {bundle_path}`.")
    else:
        lines.append("**Verdict: not adapted; no bundle was written.** The adapted head was kept back: "
                     + "; ".join(adaptation.reasons)
                     + f". Keep the shipped bundle; to move its operating point to this site, use "
                       f"`--threshold {at['threshold']:.4g}` (measured on these films, so optimistic).")
    return lines


def report_markdown(adaptation: Adaptation, bundle_path: Path | None, date: str) -> str:
    """The clinician's report: what was done, the films, the side-by-side table, the verdict, what it is not."""
    base = adaptation.bundle
    films, patients = adaptation.counts("films"), adaptation.counts("patients")
    lines = [
        f"# Adapting {base.short_id} ({base.manifest.get('version')}) to {adaptation.data_dir}",
        "",
        f"{date}; cxr-edge {__version__}.",
        "",
        "## What was done",
        "",
        f"The model's last layer was refitted on the features of this site's labelled films, starting from "
        f"and pulled towards the shipped one (penalty {adaptation.penalty:g}, chosen by inner patient folds). To "
        f"measure it honestly, the films were split into {refit.N_FOLDS} folds by patient (patients from "
        f"{adaptation.patients_source}); each film was scored by a layer fitted on the other folds, and the "
        f"threshold was chosen on those out-of-fold scores for sensitivity >= {adaptation.target:g}, with a margin: the "
        "lower end of that threshold's 95% interval over patient resamples. The shipped "
        "bundle was measured on the same films. Intervals: 95%, resampling patients.",
        "",
        "## Films used",
        "",
        "| class | films | patients |",
        "|---|---|---|",
        *[f"| {label} | {films.get(label, 0)} | {patients.get(label, 0)} |" for label in base.labels],
        "",
    ]
    lines += _left_out(adaptation)
    lines += ["## The shipped bundle and the adapted head on the same films", "", *table(adaptation), "",
              "## Verdict", "", f"The rule: {RULE}.", "", *verdict_lines(adaptation, bundle_path), "",
              "## What adaptation is and is not", "", WHAT_IT_IS, ""]
    return "\n".join(lines)


def left_out_reason(result: Result) -> str:
    """Why a film was not fitted on: the engine's reason (unreadable, rejected), or its unknown subtype."""
    return result.error or "positive of unknown subtype"


def _left_out(adaptation: Adaptation) -> list[str]:
    lines = []
    single = one_per_file(adaptation)
    if single:
        lines += [f"Warning: {single} films have no known patient (no DICOM PatientID, not in --patients, no "
                  "Kermany file name) and each counts as its own patient: if a patient has several films, the "
                  "folds may split them and the figures may be optimistic.", ""]
    left = adaptation.not_used
    if left:
        lines += [f"Left out ({len(left)}: never fitted on, not in the figures):", ""]
        lines += [f"- {r.display}: {left_out_reason(r)}" for r in left]
        lines.append("")
    return lines
