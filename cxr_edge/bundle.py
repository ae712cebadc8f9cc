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
from typing import Any, Sequence

import numpy as np

from cxr_edge.gate import Gate
from cxr_edge.head import Head
from cxr_edge.preprocess import Contract, checked_views

SCHEMA_VERSION = 4  # 4: the manifest may say which probabilities the views average (test_time_average), which
# changes the positive labels' split; 3: the manifest may name test-time views, which change what the threshold
# applies to, so a reader that predates them must refuse the bundle; 2: a features output and a gate
# (cxr_edge.gate); 1 still loads
SCHEMA_VERSIONS = (1, 2, 3, 4)
#: What a bundle's test-time views average (manifest ``test_time_average``): every label's probability, or only
#: the negative label's, the positive labels sharing the rest as the film itself splits it (:func:`average_views`).
VIEW_AVERAGES = ("all", "negative")
FEATURES_OUTPUT = "features"
MANIFEST_SUFFIX = ".json"
DEFAULT_MODEL = "pneumonia"
TASKS = ("binary", "multiclass")


def average_views(per_view: Sequence[np.ndarray], negative: int, how: str = "all") -> np.ndarray:
    """Probabilities (N, n_labels) of each test-time view, the film's first, averaged.

    ``how="negative"`` averages only the negative label's column (the screening question, where a
    softened view helps against the sharpness cue) and splits the rest among the positive labels
    in the film's own proportions: the soft views lack the detail that tells bacterial from viral
    (``docs/shift-validation.md``). With one positive label both ways are the same.
    """
    mean = np.mean(per_view, axis=0)
    if how == "all":
        return mean
    film = np.asarray(per_view[0], dtype=np.float64)
    positives = [i for i in range(film.shape[1]) if i != negative]
    split = film[:, positives]
    total = split.sum(axis=1, keepdims=True)
    split = np.divide(split, total, out=np.full_like(split, 1.0 / len(positives)), where=total > 0)
    out = np.empty_like(mean)
    out[:, negative] = mean[:, negative]
    out[:, positives] = (1.0 - mean[:, [negative]]) * split
    return out


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
    head: Head | None = None  # the last layer in float, for a score that ranks (comes with the gate)
    views: tuple[str, ...] = ("film",)  # test-time views whose probabilities are averaged (manifest test_time_views)
    view_average: str = "all"  # which probabilities the views average (manifest test_time_average, VIEW_AVERAGES)

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
    def positive_labels(self) -> tuple[str, ...]:
        return tuple(label for label in self.labels if label != self.negative_label)

    @property
    def positive_name(self) -> str:
        """What a positive is called: the one positive label, or ``not NORMAL`` when there are several."""
        positive = self.positive_labels
        return positive[0] if len(positive) == 1 else f"not {self.negative_label}"

    @property
    def score_name(self) -> str:
        """``P(PNEUMONIA)`` or ``P(not NORMAL)``: beside a subtype, a bare "probability" reads as that subtype's."""
        return f"P({self.positive_name})"

    @property
    def short_id(self) -> str:
        """``name@sha256-prefix``: what the report's ``model`` column records."""
        return f"{self.name}@{self.sha256[:12]}"

    def label_probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs (N, 1 or n_labels) -> per-label probabilities (N, n_labels)."""
        outputs = np.asarray(outputs, dtype=np.float32).reshape(len(outputs), -1)
        if self.task == "binary":
            p = np.clip(outputs[:, :1], 0.0, 1.0)
            return np.concatenate([1.0 - p, p], axis=1)
        return outputs

    def average_views(self, per_view: Sequence[np.ndarray]) -> np.ndarray:
        """Per-label probabilities (N, n_labels) of each view, the film's first, averaged by the bundle's rule."""
        return average_views(per_view, self.labels.index(self.negative_label), self.view_average)

    def positive_probability(self, label_probs: np.ndarray) -> np.ndarray:
        """P(not negative_label) for each row: the score compared with the threshold."""
        return 1.0 - label_probs[:, self.labels.index(self.negative_label)]

    def rank_scores(self, features: np.ndarray | None) -> np.ndarray | None:
        """The positive score recomputed in float from the features (None without a head): it orders
        films the 8-bit probability ties; the decision stays with the probability."""
        if self.head is None or features is None:
            return None
        return self.positive_probability(self.label_probabilities(self.head.outputs(features)))

    def decide(self, label_probs: np.ndarray) -> list[str]:
        """Labels by the manifest's rule: flagged (score >= threshold) -> most likely positive label.

        Compared in float64, like the report's written numbers and :mod:`cxr_edge.review.metrics`:
        a float32 comparison rounds the threshold, flagging a score just below it.
        """
        score = self.positive_probability(label_probs).astype(np.float64)
        positive_idx = [self.labels.index(label) for label in self.positive_labels]
        best = np.asarray(positive_idx)[np.argmax(label_probs[:, positive_idx], axis=1)]
        return [self.labels[b] if s >= self.threshold else self.negative_label for s, b in zip(score, best)]

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
    )


def _verify_file(bundle: Bundle) -> Bundle:
    """Check the model file (and the gate's, which is then loaded) against the manifest's hashes."""
    if not bundle.model_path.is_file():
        raise BundleError(f"{bundle.model_path}: model file named by {bundle.manifest_path.name} is missing")
    _verify_sha256(bundle.model_path, bundle.sha256)
    if bundle.gate_path is None:
        return bundle
    if bundle.features_output is None:
        raise BundleError(f"{bundle.manifest_path}: the manifest names a gate but no {FEATURES_OUTPUT!r} output")
    if not bundle.gate_path.is_file():
        raise BundleError(f"{bundle.gate_path}: gate file named by {bundle.manifest_path.name} is missing")
    _verify_sha256(bundle.gate_path, bundle.manifest["gate"]["sha256"])
    try:
        gate, head = Gate.load(bundle.gate_path, bundle.manifest["gate"])
    except (KeyError, OSError, ValueError) as exc:
        raise BundleError(f"{bundle.gate_path}: unreadable gate ({exc})") from exc
    return dataclasses.replace(bundle, gate=gate, head=head)


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
    """Write ``manifest`` beside ``model_path`` with the file's name and sha256 filled in.

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
    if manifest.get("gate"):
        manifest["gate"] = {**manifest["gate"], "sha256": sha256_file(model_path.with_name(manifest["gate"]["file"]))}
    out = model_path.with_suffix(MANIFEST_SUFFIX)
    _from_manifest(manifest, out)  # refuse to write what cannot be loaded
    out.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return out
