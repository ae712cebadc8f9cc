"""``python -m convert.add_views``: average a bundle's probabilities over test-time views.

Issue 26's candidate C won by the rule written before it was tried (``docs/shift-validation.md``):
averaged over the film and its copy down-sampled to half and back, the same network ranked the
shift-aware validation better (AUC +0.0024, 95% interval +0.0004 to +0.0044). The ``.tflite``
and the gate stay as they are. The manifest names the views (``test_time_views``). Averaging
moves the scores, so the threshold is chosen again by the bundle's own rule (highest
specificity at the target sensitivity). It is chosen on the run's validation films, read as a
device reads them: through the contract, the gate and the views. The split is remade from its
seed and checked against the manifest's fingerprint, as ``convert.add_gate`` does.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click
import numpy as np

from convert.add_gate import EXIT_BAD_INPUT, split_files
from convert.bundles import amend, install
from convert.errors import ConvertError
from cxr_edge import metrics
from cxr_edge.bundle import Bundle, BundleError, load_bundle
from cxr_edge.discover import Found
from cxr_edge.engine import OK, Classifier, classify_files
from cxr_edge.evaluate import Evaluation
from cxr_edge.labelled import truth_of
from cxr_edge.preprocess import VIEWS


def evaluate_files(bundle: Bundle, files: list[str], data: Path, target: float) -> Evaluation:
    """The bundle on ``files`` (under ``data/<split>/<class>/``), at the threshold reaching ``target``
    sensitivity on them; rejected films are left out, as on a device."""
    classifier = Classifier(bundle)
    found = [Found(f, str(Path(f).relative_to(data))) for f in files]
    truths = [truth_of(Path(f).parent.name, Path(f).name, bundle) for f in files]
    results = list(classify_files(found, classifier))
    passed = [i for i, r in enumerate(results) if r.status == OK]
    threshold = metrics.threshold_for_sensitivity([truths[i].positive for i in passed],
                                                  [results[i].probability for i in passed], target)
    bundle = dataclasses.replace(bundle, threshold=threshold)
    results = [dataclasses.replace(r, prediction=bundle.decide(np.array([r.label_probs]))[0]) if r.status == OK else r
               for r in results]
    return Evaluation(bundle, str(data), threshold, "chosen on these films", truths, results)


def manifest_fields(ev: Evaluation, views: tuple[str, ...], target: float, version: str | None) -> dict:
    """What changes in the manifest: the views, the threshold and its rule, the validation figures."""
    fields = {
        "test_time_views": list(views),
        "threshold": ev.threshold,
        "threshold_rule": f"highest specificity at sensitivity >= {target:g} on validation, averaged over the "
                          f"test-time views, on the films the gate passes",
        "metrics": metrics.finite_or_none({
            "split": f"patient-grouped validation carved from train ({len(ev.ok)} images the gate passes); "
                     "optimistic: the official test split differs in acquisition and class mix",
            "at_threshold": ev.binary,
            "ci95_at_threshold": {k: list(v) for k, v in ev.intervals.items()},
            "calibration": {"brier": metrics.brier_score(ev.y_true, ev.score),
                            "ece": metrics.expected_calibration_error(ev.y_true, np.clip(ev.score, 0, 1))},
            **({"multiclass": ev.multiclass} if ev.multiclass else {}),
        }),
    }
    return {**fields, "version": version} if version else fields


def _views(value: str) -> tuple[str, ...]:
    views = tuple(v.strip() for v in value.split(","))
    if views[0] != "film" or any(v not in VIEWS for v in views):
        raise click.BadParameter(f"{value!r}: start with 'film', then any of {sorted(VIEWS)}")
    return views


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("model")
@click.option("--views", "views", default="film,half_and_back", show_default=True,
              help="Comma-separated test-time views, the film itself first.")
@click.option("--data", envvar="CXR_DATA", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The dataset the model was trained on ({train,val}/{NORMAL,PNEUMONIA}/), or $CXR_DATA.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the new bundle (.tflite, .gate.npz, .json: the first two copied unchanged).")
@click.option("--seed", type=int, default=42, show_default=True, help="The run's patient-split seed.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="The run's validation fraction.")
@click.option("--target-sensitivity", type=click.FloatRange(0.5, 1.0), default=0.95, show_default=True,
              help="The threshold rule's sensitivity on validation.")
@click.option("--model-version", default=None, help="Version recorded in the new manifest.")
def main(model: str, views: str, data: Path, out: Path, seed: int, val_fraction: float,
         target_sensitivity: float, model_version: str | None) -> None:
    """Make a copy of the bundle MODEL that averages over test-time views, with its threshold chosen again.

    \b
    Example:
      python -m convert.add_views pneumonia --data chest_xray_224 --out build/views --model-version 2.4.0
    """
    try:
        chosen = _views(views)
        bundle = load_bundle(model)
        expected = (bundle.manifest.get("training_run") or {}).get("validation_patients")
        _, val_files = split_files(data, val_fraction, seed, expected)
        ev = evaluate_files(dataclasses.replace(bundle, views=chosen), val_files, data, target_sensitivity)
        copied = install(bundle, out, bundle.name)
        written = amend(copied, **manifest_fields(ev, chosen, target_sensitivity, model_version))
    except (BundleError, ConvertError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    b = ev.binary
    click.echo(f"{len(ev.ok)} validation films screened ({len(ev.rejected)} rejected by the gate); threshold "
               f"{ev.threshold:.4f}: sensitivity {b['sensitivity']:.3f}, specificity {b['specificity']:.3f}, "
               f"AUC {b['auc']:.4f}")
    click.echo(f"wrote {written.manifest_path}", err=True)


if __name__ == "__main__":
    main()
