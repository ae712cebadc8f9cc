"""Model bundles: a ``.tflite`` file plus a JSON manifest that says what it means.

The manifest is how a device knows a model's labels, input, preprocessing contract and
decision threshold; nothing of that is hard-coded in the CLI. Loading verifies the
sha256 so a damaged or swapped file is refused with a message that names it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from cxr_edge.decision import DECIDERS, HEAD, MULTICLASS, OUTPUT, TASKS, VIEW_AVERAGES, Cascade, Rule
from cxr_edge.gate import Gate
from cxr_edge.head import Head
from cxr_edge.preprocess import Contract, checked_views

SCHEMA_VERSION = 4  # what a plain bundle is written with (HEAD_SCHEMA_VERSION with a head record or a deciding head)
# 5: the head's own record and file (head), and what decides (decided_by): a reader that predates them would decide
# by the wrong output; 4: the manifest may say which probabilities the views average (test_time_average), which
# changes the positive labels' split; 3: the manifest may name test-time views, which change what the threshold
# applies to, so a reader that predates them must refuse the bundle; 2: a features output and a gate
# (cxr_edge.gate); 1 still loads
HEAD_SCHEMA_VERSION = 5
SCHEMA_VERSIONS = (1, 2, 3, 4, 5)
FEATURES_OUTPUT = "features"
MANIFEST_SUFFIX = ".json"
DEFAULT_MODEL = "pneumonia"
class BundleError(Exception):
    """A model bundle is missing, damaged or inconsistent; the message names the file."""


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A verified model bundle (the manifest's meaning plus where the files are)."""

    name: str
    task: str
    labels: tuple[str, ...]
    negative_label: str
    threshold: float
    contract: Contract
    input_shape: tuple[int, ...]
    input_dtype: str
    quantization: str
    model_path: Path
    sha256: str
    manifest_path: Path
    manifest: dict[str, Any]
    gate: Gate | None = None  # None: a bundle made before gates (schema 1), or converted without one
    head: Head | None = None  # the last layer in float, for a score that ranks (its own file, or the gate's)
    views: tuple[str, ...] = ("film",)  # test-time views whose probabilities are averaged (manifest test_time_views)
    view_average: str = "all"  # which probabilities the views average (manifest test_time_average, VIEW_AVERAGES)
    decided_by: str = OUTPUT  # what decides a film (manifest decided_by): the model's output or the head
    cascade: Cascade | None = None  # the other views only near the threshold (manifest test_time_cascade)

    @property
    def rule(self) -> Rule:
        """How this bundle's outputs become a film's probabilities, score and label (:mod:`cxr_edge.decision`)."""
        return Rule(labels=self.labels, negative_label=self.negative_label, threshold=self.threshold, task=self.task,
                    views=self.views, view_average=self.view_average, decided_by=self.decided_by,
                    cascade=self.cascade)

    @property
    def features_output(self) -> int | None:
        """Which of the model's outputs holds the pooled features the gate reads (None: it has none)."""
        outputs = self.manifest.get("outputs") or []
        return outputs.index(FEATURES_OUTPUT) if FEATURES_OUTPUT in outputs else None

    @property
    def gate_path(self) -> Path | None:
        record = self.manifest.get("gate")
        return self.manifest_path.with_name(record["file"]) if record else None

    @property
    def head_path(self) -> Path | None:
        """The head's own file (schema 5), or None when the head, if any, travels in the gate's file."""
        record = self.manifest.get("head")
        return self.manifest_path.with_name(record["file"]) if record else None

    @property
    def short_id(self) -> str:
        """``name@sha256-prefix``: what the report's ``model`` column records."""
        return f"{self.name}@{self.sha256[:12]}"

    @property
    def edgetpu_model_path(self) -> Path | None:
        """The Edge-TPU-compiled sibling, if the bundle names one."""
        name = self.manifest.get("edgetpu_model_file")
        return self.model_path.with_name(name) if name else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_models_dir() -> Path:
    """The folder of models installed with the package."""
    return Path(str(resources.files("cxr_edge") / "models"))


def list_bundled() -> list[str]:
    return sorted(p.stem for p in bundled_models_dir().glob(f"*{MANIFEST_SUFFIX}"))


def resolve_manifest(spec: str | Path | None) -> Path:
    """Turn ``--model`` (None, a bundled name, a .json or a .tflite path) into a manifest path."""
    if spec is None:
        spec = DEFAULT_MODEL
    path = Path(spec)
    if path.suffix == ".tflite":
        return path.with_suffix(MANIFEST_SUFFIX)
    bundled = bundled_models_dir() / f"{spec}{MANIFEST_SUFFIX}"
    if str(spec) == path.name and bundled.is_file():
        return bundled  # a bare name is the bundled model, even beside a folder called `pneumonia`
    if path.suffix == MANIFEST_SUFFIX or path.is_file():
        return path
    known = ", ".join(list_bundled()) or "none installed"
    raise BundleError(f"model {str(spec)!r} not found: give a path to a .json/.tflite bundle or one of: {known}")


def load_bundle(spec: str | Path | None = None) -> Bundle:
    """Load and verify a bundle; raise :class:`BundleError` naming the bad file."""
    manifest_path = resolve_manifest(spec)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BundleError(f"{manifest_path}: model manifest not found") from exc
    except (OSError, ValueError) as exc:
        raise BundleError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    try:
        bundle = _from_manifest(manifest, manifest_path)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{manifest_path}: invalid manifest ({exc!r})") from exc
    return _verify_file(bundle)


def _from_manifest(manifest: Any, manifest_path: Path) -> Bundle:
    if not isinstance(manifest, dict):
        raise ValueError(f"a JSON object expected, not {type(manifest).__name__}")
    if manifest.get("schema_version") not in SCHEMA_VERSIONS:
        raise ValueError(f"schema_version {manifest.get('schema_version')!r}, expected one of {SCHEMA_VERSIONS}")
    if manifest["task"] not in TASKS:
        raise ValueError(f"task must be one of {TASKS}")
    labels = tuple(manifest["labels"])
    if len(labels) < 2:
        raise ValueError(f"labels {list(labels)}: a model needs at least two")
    negative = manifest.get("negative_label", labels[0])
    if negative not in labels:
        raise ValueError(f"negative_label {negative!r} is not among labels {labels}")
    contract = Contract.from_manifest(manifest["preprocessing"])
    views = checked_views(manifest.get("test_time_views", ("film",)))
    view_average = manifest.get("test_time_average", "all")
    if view_average not in VIEW_AVERAGES:
        raise ValueError(f"test_time_average {view_average!r}: must be one of {', '.join(VIEW_AVERAGES)}")
    decided_by = manifest.get("decided_by", OUTPUT)
    if decided_by not in DECIDERS:
        raise ValueError(f"decided_by {decided_by!r}: must be one of {', '.join(DECIDERS)}")
    if _needs_head_schema(manifest) and manifest["schema_version"] < HEAD_SCHEMA_VERSION:
        raise ValueError(f"a head record or decided_by {HEAD!r} needs schema_version {HEAD_SCHEMA_VERSION}")
    shape = tuple(int(n) for n in manifest["input"]["shape"])
    if shape[1:3] != (contract.height, contract.width):
        raise ValueError(f"input shape {shape} does not match contract {contract.height}x{contract.width}")
    return Bundle(
        name=manifest["name"],
        task=manifest["task"],
        labels=labels,
        negative_label=negative,
        threshold=float(manifest["threshold"]),
        contract=contract,
        input_shape=shape,
        input_dtype=manifest["input"]["dtype"],
        quantization=manifest["quantization"],
        model_path=manifest_path.with_name(manifest["model_file"]),
        sha256=manifest["sha256"],
        manifest_path=manifest_path,
        manifest=manifest,
        views=views,
        view_average=view_average,
        decided_by=decided_by,
        cascade=_cascade(manifest.get("test_time_cascade"), views, manifest["task"], view_average),
    )


def _cascade(record: Any, views: tuple[str, ...], task: str, view_average: str) -> Cascade | None:
    """The manifest's ``test_time_cascade``, checked. No new schema: a reader that predates it runs every view
    on every film, which is what the band stands in for. Refused where the band cannot hold: without views
    beyond the film, or where the views also move a multiclass model's positive split (``test_time_average``
    ``all``): the band bounds only the probability compared with the threshold."""
    if record is None:
        return None
    if len(views) < 2:
        raise ValueError("test_time_cascade needs test_time_views beyond the film")
    if task == MULTICLASS and view_average == "all":
        raise ValueError("test_time_cascade needs test_time_average 'negative' on a multiclass model: "
                         "averaging every label also moves the positive labels' split")
    cascade = Cascade(below=float(record["below"]), above=float(record["above"]))
    if not (0.0 <= cascade.below <= 1.0 and 0.0 <= cascade.above <= 1.0):
        raise ValueError(f"test_time_cascade below {cascade.below} and above {cascade.above}: each must be in [0, 1]")
    return cascade


def _needs_head_schema(manifest: dict[str, Any]) -> bool:
    """A head record or a head that decides: what a cxr-edge older than schema 5 must refuse."""
    return bool(manifest.get("head")) or manifest.get("decided_by", OUTPUT) == HEAD


def _verify_file(bundle: Bundle) -> Bundle:
    """Check the model file (and the gate's and head's, which are then loaded) against the manifest's hashes."""
    if not bundle.model_path.is_file():
        raise BundleError(f"{bundle.model_path}: model file named by {bundle.manifest_path.name} is missing")
    _verify_sha256(bundle.model_path, bundle.sha256)
    gate, head = _load_gate(bundle) if bundle.gate_path is not None else (None, None)
    if bundle.head_path is not None:
        head = _load_head(bundle)
    if bundle.decided_by == HEAD and head is None:
        raise BundleError(f"{bundle.manifest_path}: decided_by {HEAD!r} but the bundle carries no head")
    return dataclasses.replace(bundle, gate=gate, head=head)


def _verified_part(bundle: Bundle, path: Path, record: dict[str, Any], part: str) -> None:
    """A file the manifest names beside the model (the gate's, the head's): present, read from the
    features output, and with the sha256 its record gives."""
    if bundle.features_output is None:
        raise BundleError(f"{bundle.manifest_path}: the manifest names a {part} but no {FEATURES_OUTPUT!r} output")
    if not path.is_file():
        raise BundleError(f"{path}: {part} file named by {bundle.manifest_path.name} is missing")
    _verify_sha256(path, record["sha256"])


def _load_gate(bundle: Bundle) -> tuple[Gate, Head | None]:
    _verified_part(bundle, bundle.gate_path, bundle.manifest["gate"], "gate")
    try:
        return Gate.load(bundle.gate_path, bundle.manifest["gate"])
    except (KeyError, OSError, ValueError) as exc:
        raise BundleError(f"{bundle.gate_path}: unreadable gate ({exc})") from exc


def _load_head(bundle: Bundle) -> Head:
    _verified_part(bundle, bundle.head_path, bundle.manifest["head"], "head")
    try:
        return Head.load(bundle.head_path)
    except (KeyError, OSError, ValueError) as exc:
        raise BundleError(f"{bundle.head_path}: unreadable head ({exc})") from exc


def _verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise BundleError(
            f"{path}: sha256 {actual[:12]}... does not match the manifest's "
            f"{expected[:12]}... (damaged or replaced file)"
        )


def verify_edgetpu_file(bundle: Bundle) -> None:
    """Check the Edge-TPU-compiled sibling against the sha256 its manifest records (loaded only with
    ``--device edgetpu``, so checked only then; manifests written before the hash was recorded pass)."""
    expected = bundle.manifest.get("edgetpu_sha256")
    if expected and bundle.edgetpu_model_path is not None:
        _verify_sha256(bundle.edgetpu_model_path, expected)


def write_bundle(model_path: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` beside ``model_path`` with the files' names and sha256 filled in (the
    model's, the gate's and the head's), with schema 5 only where a head record or decided_by needs it.

    Used by ``convert/``; the manifest must carry every other field :func:`load_bundle` reads.
    """
    edgetpu = manifest.get("edgetpu_model_file")
    manifest = {
        "schema_version": SCHEMA_VERSION,
        **manifest,
        "model_file": model_path.name,
        "sha256": sha256_file(model_path),
        "edgetpu_sha256": sha256_file(model_path.with_name(edgetpu)) if edgetpu else None,
    }
    for part in ("gate", "head"):
        if manifest.get(part):
            record = manifest[part]
            manifest[part] = {**record, "sha256": sha256_file(model_path.with_name(record["file"]))}
    if _needs_head_schema(manifest):
        manifest["schema_version"] = max(manifest["schema_version"], HEAD_SCHEMA_VERSION)
    out = model_path.with_suffix(MANIFEST_SUFFIX)
    _from_manifest(manifest, out)  # refuse to write what cannot be loaded
    out.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return out
