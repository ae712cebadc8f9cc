"""Write each TFLite variant as a model bundle (``.tflite`` + manifest) the edge tool loads.

What a model *means* (labels, task, threshold, contract, provenance) comes from the
training run as a :class:`ModelSpec`; this module adds what each variant *is* (file,
input/output dtypes, quantization, op analysis) and lets :func:`cxr_edge.bundle.write_bundle`
fill in the sha256 and refuse anything the loader could not read back.
"""

from __future__ import annotations

import dataclasses
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cxr_edge
from convert import ops
from cxr_edge.bundle import Bundle, load_bundle, write_bundle
from cxr_edge.gate import GATE_SUFFIX
from cxr_edge.preprocess import Contract

DEFAULT_VERSION = "1.0.0"


@dataclasses.dataclass
class ModelSpec:
    """What the model means, carried unchanged into every variant's manifest."""

    name: str
    task: str
    labels: tuple[str, ...]
    threshold: float
    contract: Contract
    threshold_rule: str = "given on the command line"
    negative_label: str | None = None
    version: str = DEFAULT_VERSION
    dataset: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    training_run: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        self.negative_label = self.negative_label or self.labels[0]

    def base_manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "labels": list(self.labels),
            "negative_label": self.negative_label,
            "threshold": float(self.threshold),
            "threshold_rule": self.threshold_rule,
            "input": {"shape": [1, self.contract.height, self.contract.width, 1]},
            "output": {"activation": "sigmoid" if self.task == "binary" else "softmax"},
            "preprocessing": self.contract.to_manifest(),
            "dataset": self.dataset,
            "metrics": self.metrics,
            "training_run": self.training_run,
        }


def stem(name: str, variant: str) -> str:
    """File stem of a variant in the conversion folder: ``pneumonia_int8``."""
    return f"{name}_{variant}"


def write_variant(folder: Path, spec: ModelSpec, variant: str, tflite: bytes,
                  extra: dict[str, Any] | None = None) -> Bundle:
    """Write ``<name>_<variant>.tflite`` and its manifest (with the op analysis); return the
    loaded, verified bundle."""
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / f"{stem(spec.name, variant)}.tflite"
    model_path.write_bytes(tflite)
    analysis = ops.analyse(model_path)
    manifest = spec.base_manifest()
    manifest["name"] = model_path.stem
    manifest["input"]["dtype"] = analysis["input_dtype"]
    manifest["output"]["dtype"] = analysis["output_dtype"]
    manifest.update({
        "quantization": variant,
        "edgetpu_model_file": None,
        "ops": analysis,
        **(extra or {}),
        "created_by": f"cxr-edge {cxr_edge.__version__} convert",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    return load_bundle(write_bundle(model_path, manifest))


def install(bundle: Bundle, folder: Path, name: str) -> Bundle:
    """Copy a bundle (and its Edge TPU model) into ``folder`` as ``<name>.tflite``: the name
    ``--model NAME`` finds, e.g. the package's ``cxr_edge/models/pneumonia``."""
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / f"{name}.tflite"
    shutil.copyfile(bundle.model_path, model_path)
    manifest = _editable(bundle)
    manifest["name"] = name
    if bundle.edgetpu_model_path is not None:
        edgetpu = folder / f"{name}_edgetpu.tflite"
        shutil.copyfile(bundle.edgetpu_model_path, edgetpu)
        manifest["edgetpu_model_file"] = edgetpu.name
    if bundle.gate_path is not None:
        gate = folder / f"{name}{GATE_SUFFIX}"
        shutil.copyfile(bundle.gate_path, gate)
        manifest["gate"] = {**manifest["gate"], "file": gate.name}
    return load_bundle(write_bundle(model_path, manifest))


def amend(bundle: Bundle, **fields: Any) -> Bundle:
    """Rewrite a bundle's manifest with ``fields`` changed (e.g. after Edge TPU compilation)."""
    manifest = _editable(bundle)
    manifest.update(fields)
    return load_bundle(write_bundle(bundle.model_path, manifest))


def _editable(bundle: Bundle) -> dict[str, Any]:
    """The manifest without the fields :func:`write_bundle` computes."""
    return {k: v for k, v in bundle.manifest.items() if k not in ("model_file", "sha256", "schema_version")}
