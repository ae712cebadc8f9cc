"""Give a bundle its out-of-distribution gate (:mod:`cxr_edge.gate`), and measure it.

1. The ``.tflite`` gains a second output, the pooled features that feed the classifier's
   last dense layer: a flatbuffer edit that leaves every operation and weight as it was,
   so the screening outputs stay bit-identical (checked here on every film).
2. The distance statistics are fitted on the training side's films; the orientation probe
   on the same films upright against their turned, inverted and cropped copies and the
   drawn or package-shipped foreign pictures of :mod:`convert.ood_set` (the ``fit`` half).
3. Both cut-offs are chosen on validation films alone: the distance that
   ``DISTANCE_QUANTILE`` of them stay under, the upright score ``UPRIGHT_QUANTILE`` of
   them fall below.
4. Rejection rates are measured on the validation films and on the ``check`` half of the
   generated set (never used to fit), and on any further folders given (for example
   real images that are not frontal chest films), each category apart.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from convert import ood_set
from convert.errors import ConvertError
from cxr_edge import runtime
from cxr_edge.bundle import FEATURES_OUTPUT, Bundle, load_bundle, write_bundle
from cxr_edge.engine import Classifier
from cxr_edge.gate import GATE_SUFFIX, UPRIGHT, Gate
from cxr_edge.preprocess import Contract, ImageReadError, load_image

DISTANCE_QUANTILE = 0.995  # validation films farther than this share's distance are rejected (0.5%)
UPRIGHT_QUANTILE = 0.0025  # ... and those whose upright score is lower than this share's (0.25%)
FOREIGN = "foreign"
PROBE_CLASSES = (UPRIGHT, *ood_set.MADE_WRONG, FOREIGN)
MADE_WRONG_FILMS = 600  # training films turned, inverted and cropped to teach the probe
CHECK_FILMS = 300  # validation films turned, inverted and cropped to measure it
OUTPUTS = ["probabilities", FEATURES_OUTPUT]
RULE = (f"reject when the squared Mahalanobis distance of the model's pooled features from the training "
        f"films' exceeds the {DISTANCE_QUANTILE:.1%} quantile of the validation films' distances, or when "
        f"the orientation probe's upright score is below the {UPRIGHT_QUANTILE:.2%} quantile of theirs")


def expose_features(tflite: bytes) -> bytes:
    """The model with the input of its last FULLY_CONNECTED op added as a second output."""
    from tensorflow.lite.tools import flatbuffer_utils as fb  # local: TensorFlow loads only here

    model = fb.convert_bytearray_to_object(bytearray(tflite))
    graph = model.subgraphs[0]
    dense = [op for op in graph.operators if _builtin(model, op) == fb.schema_fb.BuiltinOperator.FULLY_CONNECTED]
    if not dense:
        raise ConvertError("the model has no FULLY_CONNECTED layer whose input could serve as its features")
    features = int(dense[-1].inputs[0])
    if len(graph.outputs) != 1:
        raise ConvertError(f"the model has {len(graph.outputs)} outputs; a gate is added to a one-output model")
    graph.outputs = np.array([*graph.outputs, features], dtype=np.int32)
    return bytes(fb.convert_object_to_bytearray(model))


def head_arrays(tflite: bytes) -> dict[str, np.ndarray]:
    """The last FULLY_CONNECTED op's weights and bias in float (:mod:`cxr_edge.head`), dequantized
    with their own scales and zero points (per output channel where the file has several)."""
    from tensorflow.lite.tools import flatbuffer_utils as fb

    model = fb.convert_bytearray_to_object(bytearray(tflite))
    graph = model.subgraphs[0]
    dense = [op for op in graph.operators if _builtin(model, op) == fb.schema_fb.BuiltinOperator.FULLY_CONNECTED][-1]
    weights = _constant(model, graph, int(dense.inputs[1]))
    bias = _constant(model, graph, int(dense.inputs[2])) if len(dense.inputs) > 2 and dense.inputs[2] >= 0 \
        else np.zeros(weights.shape[0])
    return {"head_weights": weights.reshape(weights.shape[0], -1), "head_bias": bias.reshape(-1)}


TENSOR_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 9: np.int8}  # TFLite TensorType codes


def _constant(model: Any, graph: Any, index: int) -> np.ndarray:
    tensor = graph.tensors[index]
    data = model.buffers[tensor.buffer].data
    if data is None or len(data) == 0:  # float16 files compute the float weights with a DEQUANTIZE op
        producer = next(op for op in graph.operators if index in op.outputs)
        return _constant(model, graph, int(producer.inputs[0]))
    raw = np.frombuffer(bytes(data), dtype=TENSOR_DTYPES[tensor.type])
    values = raw.reshape(tensor.shape).astype(np.float64)
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return values
    scale = np.asarray(q.scale, np.float64)
    zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else np.zeros_like(scale), np.float64)
    if len(scale) > 1:  # per output channel: the first axis of a FULLY_CONNECTED weight
        shape = (-1,) + (1,) * (values.ndim - 1)
        return (values - zero.reshape(shape)) * scale.reshape(shape)
    return (values - zero[0]) * scale[0]


def _builtin(model: Any, op: Any) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)  # old files keep small codes in the second


def read_pixels(files: Sequence[str], contract: Contract, progress: Callable = iter) -> tuple[np.ndarray, list[int]]:
    """Model-ready pixels (N, H, W) of the readable ``files``, as the edge reads them, and which
    of ``files`` they are (unreadable ones are skipped)."""
    pixels, kept = [], []
    for i, path in enumerate(progress(list(files))):
        try:
            pixels.append(load_image(path, contract).pixels)
        except ImageReadError:
            continue
        kept.append(i)
    if not pixels:
        raise ConvertError(f"none of the {len(files)} gate images could be read")
    return np.stack(pixels), kept


def model_outputs(model_path: Path, pixels: np.ndarray, threads: int | None = None) -> list[np.ndarray]:
    """Every output of the model at ``model_path`` for ``pixels`` (N, H, W)."""
    interpreter = runtime.make_interpreter(model_path, threads=threads)
    return runtime.run_outputs(interpreter, pixels)


def fit(train: np.ndarray, val: np.ndarray, negatives: dict[str, np.ndarray]) -> Gate:
    """A gate from features (N, D) of training films, validation films, and the probe's negatives by class."""
    from sklearn.covariance import LedoitWolf  # local: the edge never fits
    from sklearn.linear_model import LogisticRegression

    covariance = LedoitWolf().fit(train)
    whitening = np.linalg.cholesky(covariance.precision_).T  # |W (f - mean)|^2 = (f - mean)' P (f - mean)
    x = np.concatenate([train, *negatives.values()])
    y = np.concatenate([np.full(len(train), 0), *[np.full(len(f), PROBE_CLASSES.index(c))
                                                   for c, f in negatives.items()]])
    scale = train.std(axis=0) + 1e-6
    probe = LogisticRegression(max_iter=5000, class_weight="balanced").fit((x - train.mean(axis=0)) / scale, y)
    weights, bias = _all_classes(probe)
    gate = Gate(mean=covariance.location_, whitening=whitening, probe_mean=train.mean(axis=0), probe_scale=scale,
                probe_weights=weights, probe_bias=bias, probe_classes=PROBE_CLASSES, max_distance=np.inf,
                min_upright=0.0)
    upright = gate.probe(val)[:, 0]
    return dataclasses.replace(gate, max_distance=float(np.quantile(gate.distance(val), DISTANCE_QUANTILE)),
                               min_upright=float(np.quantile(upright, UPRIGHT_QUANTILE)))


def _all_classes(probe: Any) -> tuple[np.ndarray, np.ndarray]:
    """The probe's weights and biases in PROBE_CLASSES order (a class without examples never wins)."""
    weights = np.zeros((len(PROBE_CLASSES), probe.coef_.shape[1]))
    bias = np.full(len(PROBE_CLASSES), -1e3)
    for row, cls in enumerate(probe.classes_):
        weights[int(cls)], bias[int(cls)] = probe.coef_[row], probe.intercept_[row]
    return weights, bias


def rejection_rates(gate: Gate, features: np.ndarray, categories: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per category: images, rejected, and the share rejected."""
    rejected = np.array([not v.passed for v in gate.check(features)])
    categories = np.asarray(categories)
    return {c: {"images": int((categories == c).sum()), "rejected": int(rejected[categories == c].sum()),
                "rate": round(float(rejected[categories == c].mean()), 4)} for c in sorted(set(categories))}


@dataclasses.dataclass
class GateData:
    """The films and pictures a gate is fitted and measured on (paths, read through the bundle's contract)."""

    train_files: Sequence[str]
    val_files: Sequence[str]
    source: str  # where the split comes from, for the manifest
    extra: dict[str, dict[str, Sequence[str]]] = dataclasses.field(default_factory=dict)  # set -> category -> files
    seed: int = 0


def add_gate(bundle: Bundle, data: GateData, out: Path, log: Callable[[str], None] = print,
             progress: Callable = iter, version: str | None = None) -> Bundle:
    """Write ``bundle`` with a features output and a fitted gate into folder ``out``; return it loaded."""
    contract = bundle.contract
    log(f"gate: reading {len(data.train_files)} training and {len(data.val_files)} validation films")
    train_px, _ = read_pixels(data.train_files, contract, progress)
    val_px, _ = read_pixels(data.val_files, contract, progress)
    screening = [model_outputs(bundle.model_path, px)[0] for px in (train_px, val_px)]
    model_path = _write_model(bundle, out)  # may replace bundle.model_path: its outputs are taken above
    train, val = (_checked_features(model_path, px, before) for px, before in zip((train_px, val_px), screening))
    reader = _feature_reader(bundle, model_path)
    rng = np.random.default_rng(data.seed)
    fit_wrong = ood_set.made_wrong(_sample(train_px, MADE_WRONG_FILMS, rng), contract)
    check_wrong = ood_set.made_wrong(_sample(val_px, CHECK_FILMS, rng), contract)
    negatives = _by_class(reader, fit_wrong + ood_set.foreign(contract, "fit"))
    log(f"gate: fitting on {len(train)} films and {sum(map(len, negatives.values()))} made-wrong or foreign images")
    gate = fit(train, val, negatives)
    check = check_wrong + ood_set.foreign(contract, "check")
    figures = {"validation": rejection_rates(gate, val, ["validation films"] * len(val)),
               "generated_check": rejection_rates(gate, _features(reader, _stack(check)),
                                                  [image.category for image in check])}
    for name, folders in data.extra.items():
        categories = [c for c, fs in folders.items() for _ in fs]
        px, kept = read_pixels([f for fs in folders.values() for f in fs], contract)
        figures[name] = rejection_rates(gate, _features(reader, px), [categories[i] for i in kept])
    return _write_bundle(bundle, model_path, gate, data, figures, version)


def _write_model(bundle: Bundle, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / bundle.model_path.name
    tflite = bundle.model_path.read_bytes()
    model_path.write_bytes(tflite if bundle.features_output is not None else expose_features(tflite))
    return model_path


def _feature_reader(bundle: Bundle, model_path: Path) -> Classifier:
    """The edge's own reader of the features output (:meth:`Classifier.features`) on the written model,
    for the film alone: the gate reads the film, not its test-time views."""
    written = dataclasses.replace(bundle, model_path=model_path, manifest={**bundle.manifest, "outputs": OUTPUTS},
                                  views=bundle.views[:1], gate=None, head=None)
    return Classifier(written)


def _checked_features(model_path: Path, pixels: np.ndarray, before: np.ndarray) -> np.ndarray:
    """The features of ``pixels``, after checking the screening output is bit-identical to ``before``
    (both outputs of one invoke, so read here rather than through :func:`_feature_reader`)."""
    after = model_outputs(model_path, pixels)
    if not np.array_equal(before, after[0]):
        raise ConvertError(f"{model_path}: adding the features output changed the screening output")
    return after[OUTPUTS.index(FEATURES_OUTPUT)]


def _features(reader: Classifier, pixels: np.ndarray) -> np.ndarray:
    return reader.features(pixels)[0]


def _sample(films: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return films[rng.choice(len(films), min(n, len(films)), replace=False)]


def _stack(images: Sequence[ood_set.OodImage]) -> np.ndarray:
    return np.stack([image.pixels for image in images])


def _by_class(reader: Classifier, images: Sequence[ood_set.OodImage]) -> dict[str, np.ndarray]:
    """Features of the probe's negatives, by probe class (every foreign category is one class)."""
    features = _features(reader, _stack(images))
    classes = np.array([i.category if i.category in PROBE_CLASSES else FOREIGN for i in images])
    return {c: features[classes == c] for c in PROBE_CLASSES[1:] if (classes == c).any()}


def _write_bundle(bundle: Bundle, model_path: Path, gate: Gate, data: GateData,
                  figures: dict[str, Any], version: str | None) -> Bundle:
    gate_path = model_path.with_name(model_path.stem + GATE_SUFFIX)
    gate.save(gate_path, head_arrays(model_path.read_bytes()))
    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("model_file", "sha256", "schema_version")}
    manifest["outputs"] = OUTPUTS
    manifest["version"] = version or manifest.get("version")
    manifest["gate"] = {
        "file": gate_path.name, "rule": RULE, "probe_classes": list(gate.probe_classes),
        "max_distance": gate.max_distance, "min_upright": gate.min_upright,
        "fitted_on": {"split": data.source, "train_films": len(data.train_files), "validation_films":
                      len(data.val_files), "probe_negatives": "convert.ood_set, 'fit' half"},
        "rejection": figures,
    }
    write_bundle(model_path, manifest)
    return load_bundle(model_path.with_suffix(".json"))


def figures_markdown(bundle: Bundle) -> str:
    """The gate's rejection figures as a markdown table, for the model card."""
    lines = ["| set | category | images | rejected | rate |", "|---|---|---|---|---|"]
    for name, rows in bundle.manifest["gate"]["rejection"].items():
        for category, row in rows.items():
            lines.append(f"| {name} | {category} | {row['images']} | {row['rejected']} | {row['rate']:.1%} |")
    return "\n".join(lines)

