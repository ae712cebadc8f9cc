"""Parity report: does every TFLite variant still give the Keras model's answers?

Each variant is run through the edge tool's own code (shared preprocessing, runtime
adapter, the bundle's decision rule) on a labelled set, so what is measured here is what
a device will do. Per variant: file size, accuracy, sensitivity, specificity and AUC
against the labels, agreement of its labels with the Keras model's, mean and max absolute
probability difference, and latency per image on this machine. A variant below the
agreement bound, or one whose answers collapse to a single label, is flagged.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from convert.errors import ConvertError
from convert.quiet import captured_output
from cxr_edge import decision, runtime
from cxr_edge.review import metrics
from cxr_edge.bundle import Bundle
from cxr_edge.review.labelled import Truth
from cxr_edge.preprocess import Contract, ImageReadError, load_image

DEFAULT_MIN_AGREEMENT = 0.99
REPORT_MD = "parity.md"
REPORT_JSON = "parity.json"


@dataclasses.dataclass
class LabelledSet:
    """Preprocessed images (N, H, W) uint8 with their truths."""

    pixels: np.ndarray
    truths: list[Truth]
    source: str
    unreadable: int = 0

    @property
    def positive(self) -> np.ndarray:
        return np.array([t.positive for t in self.truths])


def read_labelled(samples: Sequence[tuple[str, Truth]], contract: Contract, source: str,
                  progress: Callable = iter) -> LabelledSet:
    """Read the labelled images through the contract, skipping (and counting) unreadable ones."""
    pixels, truths, unreadable = [], [], 0
    for path, truth in progress(samples):
        try:
            pixels.append(load_image(path, contract).pixels)
        except ImageReadError:
            unreadable += 1
            continue
        truths.append(truth)
    if not pixels:
        raise ConvertError(f"no readable labelled images in {source}")
    return LabelledSet(np.stack(pixels), truths, source, unreadable)


def tflite_outputs(bundle: Bundle, pixels: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, float]:
    """Raw model outputs one image at a time (as the edge runs), and the median ms per image."""
    with captured_output("loading the interpreter"):  # it announces its XNNPACK delegate on stderr
        interpreter = runtime.make_interpreter(bundle.model_path, threads=threads)
    outputs, times = [], []
    for image in pixels:
        start = time.perf_counter()
        outputs.append(runtime.run_batch(interpreter, image[None])[0])
        times.append(time.perf_counter() - start)
    return np.stack(outputs), 1000 * float(np.median(times))


def keras_outputs(model: Any, pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """The float Keras model's outputs on the same pixels, and its ms per image in batches."""
    start = time.perf_counter()
    out = model.predict(pixels[..., None].astype(np.float32), batch_size=32, verbose=0)
    return np.asarray(out, dtype=np.float32).reshape(len(pixels), -1), 1000 * (time.perf_counter() - start) / len(pixels)


def score(bundle: Bundle, data: LabelledSet, outputs: np.ndarray, reference: dict | None) -> dict[str, Any]:
    """Metrics of one model's outputs against the truths and against the reference (Keras) answers."""
    decided = decision.decide(bundle.rule, [outputs])
    probs, positive_p, labels = decided.label_probs, decided.probability, list(decided.labels)
    row = {k: v for k, v in metrics.binary_metrics(data.positive, positive_p, bundle.threshold).items()
           if k in ("accuracy", "sensitivity", "specificity", "auc")}
    known = [i for i, t in enumerate(data.truths) if t.label is not None]
    if bundle.task == "multiclass" and known:
        row["label_accuracy"] = float(np.mean([labels[i] == data.truths[i].label for i in known]))
    counts = {label: labels.count(label) for label in bundle.labels}
    row["predicted"] = counts
    row["collapsed"] = bool(sum(1 for n in counts.values() if n) <= 1 and len(set(data.positive)) > 1)
    if reference is not None:
        row["agreement"] = float(np.mean([a == b for a, b in zip(labels, reference["labels"])]))
        delta = np.abs(probs - reference["probs"])
        row["mean_abs_dprob"] = float(delta.mean())
        row["max_abs_dprob"] = float(delta.max())
    return {"row": row, "labels": labels, "probs": probs}


def build_report(model: Any, keras_path: Path, bundles: dict[str, Bundle], data: LabelledSet,
                 min_agreement: float = DEFAULT_MIN_AGREEMENT, threads: int | None = None,
                 progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run Keras and every variant on ``data``; return the report (rows, flags, set description)."""
    first = next(iter(bundles.values()))
    progress(f"parity: Keras on {len(data.pixels)} images")
    out, ms = keras_outputs(model, data.pixels)
    reference = score(first, data, out, None)
    rows = {"keras": {"file": keras_path.name, "bytes": keras_path.stat().st_size, **reference["row"],
                      "agreement": 1.0, "mean_abs_dprob": 0.0, "max_abs_dprob": 0.0, "ms_per_image": ms}}
    flags = []
    for variant, bundle in bundles.items():
        progress(f"parity: {variant} on {len(data.pixels)} images")
        out, ms = tflite_outputs(bundle, data.pixels, threads)
        row = score(bundle, data, out, reference)["row"]
        rows[variant] = {"file": bundle.model_path.name, "bytes": bundle.model_path.stat().st_size, **row,
                         "ms_per_image": ms}
        flags += _flags(variant, row, min_agreement)
    return {
        "set": {"source": data.source, "images": len(data.pixels), "unreadable": data.unreadable,
                "positives": int(data.positive.sum()), "threshold": first.threshold},
        "min_agreement": min_agreement,
        "latency": "median ms per image, batch 1, this machine (Keras: batched mean)",
        "rows": rows,
        "flags": flags,
    }


def _flags(variant: str, row: dict[str, Any], min_agreement: float) -> list[str]:
    flags = []
    if row["agreement"] < min_agreement:
        flags.append(f"{variant}: agreement with Keras {row['agreement']:.2%} is below the bound {min_agreement:.2%}")
    if row["collapsed"]:
        flags.append(f"{variant}: predictions collapsed to one label {row['predicted']}")
    return flags


COLUMNS = (("file", "file", "{}"), ("bytes", "size KB", "{:.0f}"), ("accuracy", "accuracy", "{:.4f}"),
           ("sensitivity", "sensitivity", "{:.4f}"), ("specificity", "specificity", "{:.4f}"), ("auc", "AUC", "{:.4f}"),
           ("label_accuracy", "label accuracy", "{:.4f}"),
           ("agreement", "agreement", "{:.2%}"), ("mean_abs_dprob", "mean |Δp|", "{:.4f}"),
           ("max_abs_dprob", "max |Δp|", "{:.4f}"), ("ms_per_image", "ms/image", "{:.2f}"))


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table plus its flags."""
    s = report["set"]
    lines = ["# Parity report\n",
             f"{s['images']} labelled images from {s['source']} ({s['positives']} positive, {s['unreadable']} unreadable); "
             f"threshold {s['threshold']:.4f}; agreement bound {report['min_agreement']:.2%}; latency: {report['latency']}.\n",
             "| model | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in report["rows"].items():
        cells = [_cell(row.get(key), fmt, key) for key, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"**FLAG** {flag}" for flag in report["flags"]] or ["All variants within the agreement bound; none collapsed."]
    return "\n".join(lines) + "\n"


def _cell(value: Any, fmt: str, key: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return fmt.format(value / 1024 if key == "bytes" else value)


def write(report: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write parity.md and parity.json into ``folder``."""
    md, js = folder / REPORT_MD, folder / REPORT_JSON
    md.write_text(markdown(report), encoding="utf-8")
    js.write_text(json.dumps(metrics.finite_or_none(report), indent=1) + "\n", encoding="utf-8")
    return md, js

