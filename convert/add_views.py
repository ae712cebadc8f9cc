"""``python -m convert.add_views``: average a bundle's probabilities over test-time views.

Issue 26's candidate C won by the rule written before it was tried (``docs/shift-validation.md``):
averaged over the film and its copy down-sampled to half and back, the same network ranked the
shift-aware validation better (AUC +0.0024, 95% interval +0.0004 to +0.0044). The ``.tflite``
and the gate stay as they are. The manifest names the views (``test_time_views``). Averaging
moves the scores, so the threshold is chosen again by the bundle's own rule (highest
specificity at the target sensitivity). It is chosen on the run's validation films, read as a
device reads them: through the contract, the gate and the views. The split is remade from its
seed and checked against the manifest's fingerprint, as ``convert.add_gate`` does
(:func:`convert.source.remade_split`).
``--average negative`` (``test_time_average``) averages only the negative label's probability and
leaves the positive labels' split to the film: for ``subtype``, whose bacterial/viral hint the
soft view blurs. ``--cascade MARGIN`` (``test_time_cascade``, :mod:`convert.cascade`) runs the other
views only for films near the threshold, where they can change the decision.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import numpy as np

from convert import cascade
from convert.bundles import amend, install
from convert.cli import AMEND_EXIT_CODES_HELP, command, failures, run_split_options
from convert.source import remade_split
from cxr_edge import decision
from cxr_edge.commands import FloatRange
from cxr_edge.review import metrics
from cxr_edge.bundle import Bundle, load_bundle
from cxr_edge.discover import Found
from cxr_edge.engine import OK, REJECTED, Classifier, classify_files
from cxr_edge.review.kermany import parse_name
from cxr_edge.review.labelled import truth_of
from cxr_edge.preprocess import checked_views

PROG = "python -m convert.add_views"


@dataclasses.dataclass
class Screened:
    """The films a device would screen (the gate passed them), their truth and their averaged scores."""

    bundle: Bundle
    positive: np.ndarray  # 1: not the negative label
    score: np.ndarray
    patients: list[str]
    labels: list[str | None]  # exact label where the file says it (multiclass accuracy)
    label_probs: np.ndarray
    rejected: int


def screen_files(bundle: Bundle, files: list[str], data: Path) -> Screened:
    """The bundle (with its views) on ``files`` under ``data/<split>/<class>/``; rejected films left out."""
    found = [Found(f, str(Path(f).relative_to(data))) for f in files]
    truths = [truth_of(Path(f).parent.name, Path(f).name, bundle) for f in files]
    results = list(classify_files(found, Classifier(bundle)))
    kept = [i for i, r in enumerate(results) if r.status == OK]
    return Screened(bundle, np.array([truths[i].positive for i in kept], dtype=int),
                    np.array([results[i].probability for i in kept]),
                    [parse_name(Path(files[i]).stem, Path(files[i]).parent.name)[0] for i in kept],
                    [truths[i].label for i in kept], np.array([results[i].label_probs for i in kept]),
                    sum(r.status == REJECTED for r in results))


def validation_figures(screened: Screened, threshold: float) -> dict:
    """The manifest's ``metrics`` at ``threshold``: screening figures with patient-bootstrap intervals,
    calibration, and for several positive labels the multiclass figures."""
    y, s = screened.positive, screened.score
    figures = {
        "split": f"patient-grouped validation carved from train ({len(y)} images the gate passes); "
                 "optimistic: the official test split differs in acquisition and class mix",
        "at_threshold": metrics.binary_metrics(y, s, threshold),
        "ci95_at_threshold": {k: list(v) for k, v in metrics.bootstrap_ci(y, s, threshold, groups=screened.patients).items()},
        "calibration": {"brier": metrics.brier_score(y, s),
                        "ece": metrics.expected_calibration_error(y, np.clip(s, 0, 1))},
    }
    rule = screened.bundle.rule.with_threshold(threshold)
    if len(rule.positive_labels) > 1:
        known = [i for i, label in enumerate(screened.labels) if label is not None]
        labels = list(rule.labels)
        predicted = decision.decide_labels(rule, screened.label_probs[known])
        figures["multiclass"] = metrics.multiclass_metrics([labels.index(screened.labels[i]) for i in known],
                                                           [labels.index(p) for p in predicted], labels)
    return metrics.finite_or_none(figures)


def manifest_fields(screened: Screened, target: float, version: str | None) -> dict:
    """What changes in the manifest: the views and what they average, the threshold (by the bundle's rule) and its figures."""
    threshold = metrics.threshold_for_sensitivity(screened.positive, screened.score, target)
    fields = {
        "test_time_views": list(screened.bundle.views),
        "test_time_average": screened.bundle.view_average,
        "threshold": threshold,
        "threshold_rule": f"highest specificity at sensitivity >= {target:g} on validation, averaged over the "
                          f"test-time views, on the films the gate passes",
        "metrics": validation_figures(screened, threshold),
    }
    return {**fields, "version": version} if version else fields


def _views(value: str) -> tuple[str, ...]:
    try:
        return checked_views(v.strip() for v in value.split(","))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@command(PROG, AMEND_EXIT_CODES_HELP,
         "python -m convert.add_views pneumonia --data chest_xray_224 --out build/views --model-version 2.4.1 "
         "--cascade 0.02")
@click.argument("model")
@click.option("--views", "views", default="film,half_and_back", show_default=True,
              help="Comma-separated test-time views, the film itself first.")
@click.option("--average", "view_average", type=click.Choice(decision.VIEW_AVERAGES), default="all", show_default=True,
              help="What the views average: every label's probability, or only the negative label's (the positive "
                   "labels then split the rest as the film alone does; for subtype models).")
@run_split_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the new bundle (.tflite, .gate.npz, .json: the first two copied unchanged).")
@click.option("--target-sensitivity", type=FloatRange(0.5, 1.0), default=0.95, show_default=True,
              help="The threshold rule's sensitivity on validation.")
@click.option("--model-version", default=None, help="Version recorded in the new manifest.")
@click.option("--cascade", "cascade_margin", type=FloatRange(0.0, 0.5), default=None, metavar="MARGIN",
              help="Run the other views only for films whose own probability lies near the threshold: within the "
                   f"largest move averaging gave a validation film, plus MARGIN (e.g. {cascade.DEFAULT_MARGIN}; "
                   "manifest test_time_cascade).")
def main(model: str, views: str, view_average: str, data: Path, out: Path, seed: int, val_fraction: float,
         val_patients: Path | None, target_sensitivity: float, model_version: str | None, cascade_margin: float | None) -> None:
    """Make a copy of the bundle MODEL that averages over test-time views, with its threshold chosen again."""
    with failures(PROG, out):
        chosen = _views(views)
        bundle = load_bundle(model)
        expected = (bundle.manifest.get("training_run") or {}).get("validation_patients")
        _, val_files = remade_split(data, val_fraction, seed, expected, val_patients)
        every_view = dataclasses.replace(bundle, views=chosen, view_average=view_average, cascade=None)
        screened = screen_files(every_view, val_files, data)
        fields = manifest_fields(screened, target_sensitivity, model_version)
        if cascade_margin is not None:
            film = screen_files(dataclasses.replace(every_view, views=chosen[:1]), val_files, data)
            fields["test_time_cascade"] = cascade.manifest_record(film.score, screened.score, screened.positive,
                                                                  fields["threshold"], cascade_margin)
        elif bundle.cascade is not None:
            fields["test_time_cascade"] = None  # its band was measured for other views or another threshold
        copied = install(bundle, out, bundle.name)
        written = amend(copied, **fields)
    b = written.manifest["metrics"]["at_threshold"]
    click.echo(f"{b['n']} validation films screened ({screened.rejected} rejected by the gate); threshold "
               f"{written.threshold:.4f}: sensitivity {b['sensitivity']:.3f}, specificity {b['specificity']:.3f}, "
               f"AUC {b['auc']:.4f}")
    if written.cascade is not None:
        c = written.manifest["test_time_cascade"]
        click.echo(f"cascade: the other views run for films in [{written.threshold - c['below']:.4f}, "
                   f"{written.threshold + c['above']:.4f}): {c['validation']['views_run']} of "
                   f"{c['validation']['films']} validation films, the same decision on {c['validation']['same_decisions']}")
    click.echo(f"wrote {written.manifest_path}", err=True)


if __name__ == "__main__":
    main()
