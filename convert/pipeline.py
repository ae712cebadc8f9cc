"""One conversion, start to finish: Keras model -> variants -> bundles -> Edge TPU -> parity.

:class:`Job` holds every choice; :func:`run` carries it out and says whether the result
passed the parity bound. The CLI and ``tests/assets/make_test_models.py`` both call it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from convert import bundles, calibration, edgetpu, gate, keras_model, ops, parity, quantize
from convert.errors import ConvertError
from convert.quiet import captured_output
from cxr_edge import decision
from cxr_edge.bundle import Bundle
from cxr_edge.review import labelled
from cxr_edge.review.labelled import Truth

LOG_FILE = "convert.log"
SUMMARY_FILE = "conversion.json"


@dataclasses.dataclass
class Job:
    """A conversion: which model, what it means, where calibration and parity images come from."""

    keras_path: Path
    spec: bundles.ModelSpec
    out: Path
    variants: tuple[str, ...] = quantize.VARIANTS
    calib_samples: Sequence[tuple[str, str]] = ()
    calib_source: str = ""
    calib_dir: Path | None = None  # overrides calib_samples: every image under it, class = subfolder
    calib_size: int = calibration.DEFAULT_SIZE
    seed: int = calibration.DEFAULT_SEED
    parity_samples: Sequence[tuple[str, Truth]] = ()
    parity_source: str = ""
    parity_dir: Path | None = None  # overrides parity_samples: class folders as ``cxr-edge evaluate`` reads them
    min_agreement: float = parity.DEFAULT_MIN_AGREEMENT
    gate: bool = True  # fit an out-of-distribution gate per variant (needs training and validation films)
    threads: int | None = None
    model: Any = None  # the Keras model at keras_path when the caller has loaded it already


@dataclasses.dataclass
class Result:
    bundles: dict[str, Bundle]
    report: dict[str, Any] | None
    edgetpu: dict[str, Any] | None

    @property
    def flags(self) -> list[str]:
        return self.report["flags"] if self.report else []


def check_spec(model: Any, spec: bundles.ModelSpec, path: Path) -> None:
    """Refuse a model whose input size or output width disagrees with what it is said to be."""
    height, width = keras_model.input_hw(model)
    if (height, width) != (spec.contract.height, spec.contract.width):
        raise ConvertError(f"{path}: model input is {width}x{height} but the contract says "
                           f"{spec.contract.width}x{spec.contract.height}")
    expected = decision.output_width(spec.labels)
    if keras_model.output_width(model) != expected:
        raise ConvertError(f"{path}: a {spec.task} model with labels {list(spec.labels)} needs {expected} output(s), "
                           f"this one has {keras_model.output_width(model)}")


def run(job: Job, log: Callable[[str], None] = print, progress: Callable = iter) -> Result:
    """Convert, bundle, compile for the Edge TPU, and check parity; see :class:`Job`."""
    unknown = [v for v in job.variants if v not in quantize.VARIANTS]
    if unknown or not job.variants:
        raise ConvertError(f"unknown variant(s) {unknown or '(none given)'}: choose from {', '.join(quantize.VARIANTS)}")
    model = job.model
    if model is None:
        log(f"loading {job.keras_path}")
        model = keras_model.load_keras(job.keras_path)
    check_spec(model, job.spec, job.keras_path)
    job.out.mkdir(parents=True, exist_ok=True)
    _drop_stale_report(job.out, log)
    log_path = job.out / LOG_FILE
    calib = None
    if "int8" in job.variants:
        samples, source = job.calib_samples, job.calib_source
        if job.calib_dir is not None:
            samples, source = calibration.folder_samples(job.calib_dir), str(job.calib_dir)
        log(f"calibration: reading up to {job.calib_size} images from {source} (seed {job.seed})")
        calib = calibration.build(samples, job.spec.contract, job.calib_size, job.seed, source, progress)
        log(f"calibration: {calib.record['size']} images, per class {calib.record['per_class']}")
    tflites = quantize.convert_model(model, job.variants, calib.batches() if calib else None, log_path,
                                     progress=lambda step: log(f"{step} (TensorFlow messages go to {log_path})"))
    written = {}
    for variant, data in tflites.items():
        extra = {"calibration": calib.record} if variant == "int8" else {}
        with captured_output("analysing ops", log_path):  # the interpreter announces its delegate
            written[variant] = bundles.write_variant(job.out, job.spec, variant, data, extra)
        log(f"wrote {written[variant].manifest_path} ({len(data) / 1024:.0f} KB)")
    samples, source = job.parity_samples, job.parity_source
    if job.parity_dir is not None:
        samples, source = _labelled_folder(job.parity_dir, next(iter(written.values()))), str(job.parity_dir)
    if job.gate:
        written = _gates(job, written, [path for path, _ in samples], source, log, progress)
    tpu = None
    if "int8" in written:
        written["int8"], tpu = _edgetpu(written["int8"], log)
    report = None
    if samples:
        data = parity.read_labelled(samples, job.spec.contract, source, progress)
        report = parity.build_report(model, job.keras_path, written, data, job.min_agreement, job.threads, log)
        md, _ = parity.write(report, job.out)
        log(f"parity report: {md}")
        log(parity.markdown(report))
    summary = {"variants": {v: b.manifest_path.name for v, b in written.items()}, "edgetpu": tpu,
               "calibration": calib.record if calib else None, "parity_flags": report["flags"] if report else None}
    (job.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return Result(written, report, tpu)


def _gates(job: Job, written: dict[str, Bundle], val_files: Sequence[str], val_source: str,
           log: Callable[[str], None], progress: Callable) -> dict[str, Bundle]:
    """Each variant with its out-of-distribution gate, fitted on the training side (the calibration
    source) and cut on the validation films (the parity set); skipped, and said, without either."""
    train = [path for path, _ in (calibration.folder_samples(job.calib_dir) if job.calib_dir else job.calib_samples)]
    if not train or not val_files:
        log("gate: not built (it needs training films and validation films: give the run's split, or "
            "--calib-dir and --parity-dir); the bundles screen every readable image")
        return written
    data = gate.GateData(train, val_files, f"training side {job.calib_dir or job.calib_source}; validation "
                                           f"{val_source}", seed=job.seed)
    gated = {}
    for variant, bundle in written.items():
        log(f"gate ({variant}): fitting on {len(train)} training films, cut on {len(val_files)} validation films")
        with captured_output(f"gate for {variant}", job.out / LOG_FILE):  # the interpreter announces its delegate
            gated[variant] = gate.add_gate(bundle, data, job.out, log=lambda _: None, progress=progress)
        log(f"gate ({variant}): rejects {_rate(gated[variant])} of the validation films")
    return gated


def _rate(bundle: Bundle) -> str:
    row = bundle.manifest["gate"]["rejection"]["validation"]["validation films"]
    return f"{row['rejected']} of {row['images']}"


def _labelled_folder(folder: Path, bundle: Bundle) -> list[tuple[str, Truth]]:
    """A labelled folder read as ``cxr-edge evaluate`` reads it (class subfolders)."""
    try:
        return [(found.path, truth) for found, truth in labelled.labelled_inputs(folder, bundle)]
    except labelled.DataLayoutError as exc:
        raise ConvertError(f"parity folder: {exc}") from exc


def _edgetpu(bundle: Bundle, log: Callable[[str], None]) -> tuple[Bundle, dict[str, Any]]:
    """Check the int8 ops against the Edge TPU's list, compile if the compiler is here, record both."""
    analysis = bundle.manifest["ops"]
    if ops.edgetpu_ready(analysis):
        log(f"int8: all {analysis['n_ops']} ops are integer and on the Edge TPU's supported list")
    else:
        log(f"int8: WARNING ops that would run on the CPU, not the Edge TPU: "
            f"{analysis['edgetpu_unsupported_ops'] + analysis['non_integer_ops']}")
    result = edgetpu.compile_model(bundle.model_path)
    if result["compiled"]:
        log(f"Edge TPU: {result['ops_on_edgetpu']} ops on the TPU, {result['ops_on_cpu']} on the CPU -> {result['file']}")
        return bundles.amend(bundle, edgetpu_model_file=result["file"], edgetpu=result), result
    log(f"Edge TPU: not compiled ({result['reason']}); {bundle.model_path.name} is compiler-ready")
    return bundles.amend(bundle, edgetpu=result), result


def _drop_stale_report(out: Path, log: Callable[[str], None]) -> None:
    """Remove the parity report of an earlier conversion into ``out``: it describes other files."""
    for stale in (out / parity.REPORT_MD, out / parity.REPORT_JSON):
        if stale.exists():
            stale.unlink()
            log(f"removed {stale} (an earlier conversion's parity report)")
