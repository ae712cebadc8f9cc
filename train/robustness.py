"""How a model holds up when films look different, measured without touching the test split.

Validation AUC is saturated (~0.99) and says nothing about another hospital's films.
This module re-scores the validation split under acquisition-like shifts (exposure,
contrast, gamma, blur, sharpening, noise, resolution, JPEG quality), checks that the
full-resolution originals in ``fullres/`` get the same probabilities as their 224-px
copies (parity only: those films are in train, so no accuracy is computed on them), and
reports calibration. The shifts are applied to the grey image *before* the contract's
normalisation, so an intensity-normalising contract gets the credit it deserves.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageFilter

from cxr_edge import decision
from cxr_edge.review import metrics
from cxr_edge.bundle import Bundle, BundleError, load_bundle
from cxr_edge.engine import Classifier
from cxr_edge.preprocess import Contract, ImageReadError, jpeg_round_trip, load_image, prepare_gray
from train import data
from train.leakage import check_split, split_patients
from train.predict import NEGATIVE_INDEX, predict
from train.rundir import MODEL_FILE, ROBUSTNESS_FILE, ROBUSTNESS_MD, load_run, load_threshold, split_records

ON_VALIDATION = "chosen on clean validation"

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]
Scorer = Callable[[np.ndarray], np.ndarray]  # uint8 (N, H, W) -> P(not the negative label)


def _lut(func: Callable[[np.ndarray], np.ndarray]) -> Shift:
    """A shift defined on grey levels 0..255 (exposure, contrast, gamma)."""
    table = np.clip(np.rint(func(np.arange(256, dtype=np.float64))), 0, 255).astype(np.uint8)
    return lambda img, _rng: table[img]


def _pil(filt: Callable[[Image.Image], Image.Image]) -> Shift:
    return lambda img, _rng: np.asarray(filt(Image.fromarray(img)), dtype=np.uint8)


def _noise(std: float) -> Shift:
    return lambda img, rng: np.clip(img + rng.normal(0.0, std, img.shape), 0, 255).astype(np.uint8)


def _resolution(factor: float) -> Shift:
    def shift(img: np.ndarray, _rng) -> np.ndarray:
        h, w = img.shape
        small = Image.fromarray(img).resize((max(8, int(w * factor)), max(8, int(h * factor))), Image.Resampling.BOX)
        return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)
    return shift


def _jpeg(quality: int) -> Shift:
    return _pil(lambda im: jpeg_round_trip(im, quality))


SHIFTS: dict[str, Shift] = {
    "exposure -40": _lut(lambda v: v - 40),
    "exposure +40": _lut(lambda v: v + 40),
    "contrast x0.6": _lut(lambda v: (v - 128) * 0.6 + 128),
    "contrast x1.4": _lut(lambda v: (v - 128) * 1.4 + 128),
    "gamma 0.6": _lut(lambda v: 255 * (v / 255) ** 0.6),
    "gamma 1.6": _lut(lambda v: 255 * (v / 255) ** 1.6),
    "blur r1.5": _pil(lambda im: im.filter(ImageFilter.GaussianBlur(1.5))),
    "sharpen": _pil(lambda im: im.filter(ImageFilter.UnsharpMask(radius=2, percent=150, threshold=0))),
    "noise sd8": _noise(8.0),
    "noise sd16": _noise(16.0),
    "resolution x0.5": _resolution(0.5),
    "resolution x0.25": _resolution(0.25),
    "jpeg q30": _jpeg(30),
}


def shifted_inputs(raw: np.ndarray, shift: Shift, contract: Contract, seed: int = 0) -> np.ndarray:
    """Apply ``shift`` to each raw grey image, then the contract's resize/normalise step."""
    rng = np.random.default_rng(seed)
    return np.stack([prepare_gray(Image.fromarray(shift(img, rng)), contract) for img in raw])


def clean_inputs(raw: np.ndarray, contract: Contract) -> np.ndarray:
    """The unshifted images through the contract: what every shift is compared with."""
    return shifted_inputs(raw, lambda img, _rng: img, contract)


def operating_point(y: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    m = metrics.binary_metrics(y, score, threshold)
    return {k: m[k] for k in ("auc", "sensitivity", "specificity", "accuracy")}


def shift_table(score: Scorer, clean: np.ndarray, raw: np.ndarray, y: np.ndarray, threshold: float,
                contract: Contract, log=print) -> list[dict]:
    """AUC and sensitivity/specificity at ``threshold`` for clean (``clean``: its scores) and each shifted copy."""
    rows = [{"shift": "none", **operating_point(y, clean, threshold), "mean_abs_dp": 0.0}]
    for name, shift in SHIFTS.items():
        shifted = score(shifted_inputs(raw, shift, contract))
        rows.append({"shift": name, **operating_point(y, shifted, threshold),
                     "mean_abs_dp": float(np.mean(np.abs(shifted - clean)))})
        log(f"  {name:<18} AUC {rows[-1]['auc']:.4f}  sens {rows[-1]['sensitivity']:.3f}  spec {rows[-1]['specificity']:.3f}")
    return rows


def positive_score(model, pixels: np.ndarray) -> np.ndarray:
    """P(not the negative label) for each image."""
    return decision.positive_probability(predict(model, pixels), NEGATIVE_INDEX)


def keras_scorer(model) -> Scorer:
    return lambda pixels: positive_score(model, pixels)


def bundle_scorer(bundle) -> Scorer:
    """The edge's own interpreter and decision rule, so a shipped bundle is checked as devices run it."""
    return Classifier(bundle, threads=None).positive_scores


def bundle_fullres_parity(bundle_spec: str, fullres_dir: Path, data_dir: Path) -> dict | None:
    """:func:`fullres_parity` of an installed or converted bundle at its own threshold and contract."""
    bundle = load_bundle(bundle_spec)
    return fullres_parity(bundle_scorer(bundle), fullres_dir, data_dir, bundle.contract, bundle.threshold)


def fullres_parity(score: Scorer, fullres_dir: Path, data_dir: Path, contract: Contract, threshold: float) -> dict | None:
    """Scores of full-size originals (read through the contract) against their 224-px copies.

    Also which way decisions flip: a model that learned the copies' JPEG artifacts as a
    pneumonia cue misses pneumonia on the artifact-free originals (``missed``). ``score`` is
    a Keras model's (:func:`keras_scorer`) or a TFLite bundle's (:func:`bundle_scorer`).
    """
    pairs, positive = [], []
    for label in data.CLASS_DIRS:
        for original in sorted((fullres_dir / label).glob("*.jpeg")):
            copy = data_dir / "train" / label / original.name
            if copy.exists():
                pairs.append((original, copy))
                positive.append(label != data.CLASS_DIRS[0])
    if not pairs:
        return None
    try:
        big = np.stack([load_image(o, contract).pixels for o, _ in pairs])
        small = np.stack([load_image(c, contract).pixels for _, c in pairs])
    except ImageReadError as exc:
        raise data.DataError(f"fullres parity: {exc}") from exc
    p_big, p_small = score(big), score(small)
    diff, positive = np.abs(p_big - p_small), np.array(positive)
    flag_big, flag_small = p_big >= threshold, p_small >= threshold
    return {"pairs": len(pairs), "mean_abs_dp": float(diff.mean()), "max_abs_dp": float(diff.max()),
            "decision_agreement": float(np.mean(flag_big == flag_small)),
            "mean_dp_positive": float(np.mean((p_big - p_small)[positive])) if positive.any() else None,
            "missed": int(np.sum(positive & flag_small & ~flag_big)),
            "new_flags": int(np.sum(~positive & ~flag_small & flag_big))}


def summarize(rows: list[dict]) -> dict:
    """Single numbers for comparing candidates: worst and mean over the shifts."""
    shifted = [r for r in rows if r["shift"] != "none"]
    return {
        "clean_auc": rows[0]["auc"],
        "min_auc": min(r["auc"] for r in shifted),
        "mean_auc": float(np.mean([r["auc"] for r in shifted])),
        "min_sensitivity": min(r["sensitivity"] for r in shifted),
        "min_specificity": min(r["specificity"] for r in shifted),
        "mean_specificity": float(np.mean([r["specificity"] for r in shifted])),
        "mean_abs_dp": float(np.mean([r["mean_abs_dp"] for r in shifted])),
    }


def decoding(contract: Contract) -> Contract:
    """The part of a contract that decodes a film: all but the normalisation, which follows the shifts."""
    return dataclasses.replace(contract, normalize="none")


def check_decoding(bundle: Bundle, contract: Contract) -> None:
    """Refuse a bundle that decodes films otherwise than the run: they are decoded once, the run's way,
    and only normalised the bundle's way, so its scores would come from pixels it never reads."""
    if decoding(bundle.contract) != decoding(contract):
        raise BundleError(f"bundle {bundle.short_id} reads films through another preprocessing contract "
                          f"than this run ({_decoding_text(bundle.contract)}; the run: "
                          f"{_decoding_text(contract)}): score it on a run trained through its contract")


def _decoding_text(contract: Contract) -> str:
    reencode = f", JPEG q{contract.reencode_quality}" if contract.reencode_quality else ""
    return f"{contract.to_manifest()['contract']}, {contract.width}x{contract.height}{reencode}"


def validation_images(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A run's validation films as raw grey levels (contract size, no normalisation) and 0/1 targets."""
    cfg, _record = load_run(run_dir)
    val_records = split_records(run_dir)["val"]
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None
    raw, _ = data.load_pixels(val_records, decoding(cfg.contract), cache_dir)
    return raw, np.array([int(r.target(cfg.task) != 0) for r in val_records])


def score_shifts(score: Scorer, raw: np.ndarray, y: np.ndarray, threshold: float, contract: Contract,
                 fullres_dir: Path | None, data_dir: Path, log=print, clean: np.ndarray | None = None,
                 threshold_source: str = ON_VALIDATION) -> dict:
    """Shift table, calibration and full-resolution parity of one scorer at one threshold.

    ``clean``: the scores of the unshifted images, when the caller already has them;
    ``threshold_source``: where the threshold came from, for the report to say.
    """
    clean = score(clean_inputs(raw, contract)) if clean is None else clean
    rows = shift_table(score, clean, raw, y, threshold, contract, log)
    return {
        "threshold": threshold,
        "threshold_source": threshold_source,
        "summary": summarize(rows),
        "shifts": rows,
        "calibration": {"brier": metrics.brier_score(y, clean), "ece": metrics.expected_calibration_error(y, clean)},
        "fullres_parity": fullres_parity(score, fullres_dir, data_dir, contract, threshold) if fullres_dir else None,
    }


def measure(run_dir: Path, fullres_dir: Path | None = None, log=print) -> dict:
    """Write robustness.json and robustness.md into ``run_dir``; return the summary."""
    import keras  # lazy: TensorFlow loads for the Keras model alone, not for bundles

    cfg, _record = load_run(run_dir)
    threshold = load_threshold(run_dir).value
    raw, y = validation_images(run_dir)
    model = keras.models.load_model(run_dir / MODEL_FILE, compile=False)
    log(f"robustness of {run_dir.name} on {len(y)} validation images at threshold {threshold:.4f}")
    result = score_shifts(keras_scorer(model), raw, y, threshold, cfg.contract, fullres_dir, Path(cfg.data), log)
    (run_dir / ROBUSTNESS_FILE).write_text(json.dumps(result, indent=1) + "\n")
    (run_dir / ROBUSTNESS_MD).write_text(markdown(result))
    log(markdown(result))
    return result


def bundle_threshold(bundles: Sequence[Bundle], y: np.ndarray, clean: np.ndarray, target_sensitivity: float | None,
                     run_target: float) -> tuple[float, str]:
    """The threshold to score ``bundles`` at, and where it came from, for the report to say: one
    bundle's own, else (an ensemble, or another operating point) the one reaching
    ``target_sensitivity`` (else the run's) on the clean validation scores ``clean``."""
    if target_sensitivity is None and len(bundles) == 1:
        return bundles[0].threshold, "the bundle's own, from its manifest"
    sensitivity = target_sensitivity or run_target
    threshold = metrics.threshold_for_sensitivity(y, clean, sensitivity)
    return threshold, f"{ON_VALIDATION} for sensitivity >= {sensitivity:g}"


def measure_bundles(run_dir: Path, specs: Sequence[str], fullres_dir: Path | None = None, log=print,
                    target_sensitivity: float | None = None) -> dict:
    """TFLite bundles on a run's validation split, as devices run them; several are averaged.

    One bundle is read at its own threshold. Several (an ensemble) have no shipped
    threshold, so theirs is chosen on the clean validation split by the run's rule. With
    ``target_sensitivity`` the threshold is chosen that way for one bundle too, to see
    another operating point under the shifts before putting it in a manifest. Writes
    ``RUN/robustness-<name>-<sha12>[+...][-sens<S>].json/.md``, leaving the run's own results alone.
    """
    cfg, _record = load_run(run_dir)
    bundles = [load_bundle(spec) for spec in specs]
    if any(b.contract != bundles[0].contract for b in bundles):
        raise BundleError("the bundles read films through different preprocessing contracts; average only like with like")
    check_decoding(bundles[0], cfg.contract)  # all share its contract (checked above)
    patients = split_patients(run_dir, "val")
    unchecked = [b.short_id for b in bundles if not check_split(b, cfg, patients, require=False)]
    if unchecked:
        log(f"warning: {', '.join(unchecked)} record no training command; whether they saw these validation "
            "patients is unknown")
    scorers = [bundle_scorer(b) for b in bundles]
    contract = bundles[0].contract

    def score(pixels: np.ndarray) -> np.ndarray:
        return np.mean([s(pixels) for s in scorers], axis=0)

    raw, y = validation_images(run_dir)
    clean = score(clean_inputs(raw, contract))
    tag = "+".join(b.short_id.replace("@", "-") for b in bundles)
    threshold, source = bundle_threshold(bundles, y, clean, target_sensitivity, cfg.target_sensitivity)
    if target_sensitivity is not None:
        tag = f"{tag}-sens{target_sensitivity:g}"
    log(f"robustness of {tag} on {len(y)} validation images of {run_dir.name} at threshold {threshold:.4f} "
        f"({source})")
    scored = score_shifts(score, raw, y, threshold, contract, fullres_dir, Path(cfg.data), log, clean=clean,
                          threshold_source=source)
    result = {"bundles": [b.short_id for b in bundles], "split_unchecked": unchecked, **scored}
    (run_dir / f"robustness-{tag}.json").write_text(json.dumps(result, indent=1) + "\n")
    (run_dir / f"robustness-{tag}.md").write_text(markdown(result))
    log(markdown(result))
    return result


def markdown(result: dict) -> str:
    lines = [f"Validation split under acquisition shifts (threshold {result['threshold']:.4f}, "
             f"{result['threshold_source']}).",
             "", "| shift | AUC | sensitivity | specificity | mean abs change of p |", "| --- | --- | --- | --- | --- |"]
    for r in result["shifts"]:
        lines.append(f"| {r['shift']} | {r['auc']:.4f} | {r['sensitivity']:.3f} | {r['specificity']:.3f} | {r['mean_abs_dp']:.3f} |")
    s, c = result["summary"], result["calibration"]
    lines += ["", f"Worst AUC {s['min_auc']:.4f}, mean AUC {s['mean_auc']:.4f}; worst specificity {s['min_specificity']:.3f}, "
              f"mean {s['mean_specificity']:.3f}; worst sensitivity {s['min_sensitivity']:.3f}.",
              f"Calibration on clean validation: Brier {c['brier']:.4f}, ECE {c['ece']:.4f}."]
    p = result.get("fullres_parity")
    if p:
        lines.append(f"Full-resolution originals vs 224-px copies ({p['pairs']} pairs, probabilities only): "
                     f"mean |dp| {p['mean_abs_dp']:.4f}, max {p['max_abs_dp']:.4f}, same decision {p['decision_agreement']:.1%}"
                     f"; pneumonia films missed only at full resolution: {p.get('missed', '?')}, normal films flagged only "
                     f"at full resolution: {p.get('new_flags', '?')}.")
    return "\n".join(lines) + "\n"
