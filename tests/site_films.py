"""Gated tiny bundles and generated clinic folders for the adaptation tests (``tests/test_adapt.py``).

The committed tiny bundles (``tests/assets``) have no features output, so none can be adapted. Here
one gains it as ``convert`` gives it (:func:`convert.gate.expose_features`, the head dequantized by
:func:`convert.gate.head_arrays`), and a gate in numpy fitted on generated films: the distance from
their features, and a probe that calls everything upright (the generated films are all upright). A
generated site is the tiny model's own kind of picture, shifted: another contrast curve, and a cue
that goes with the label: half of the NORMAL films carry a bright marker square, which the shipped
head takes for a lesion and a refitted one learns to tell apart.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_edge.bundle import FEATURES_OUTPUT, load_bundle, write_bundle
from cxr_edge.engine import Classifier
from cxr_edge.gate import GATE_SUFFIX, Gate
from cxr_edge.testing.synthetic import synthetic_xray

PROBE_CLASSES = ("upright", "rotated_90", "rotated_180", "rotated_270", "inverted", "corner_crop", "foreign")
GATE_FILMS = 60
BLOBS = {"NORMAL": 0, "PNEUMONIA": 1, "BACTERIAL": 1, "VIRAL": 3}


def gated_bundle(manifest: Path, out: Path) -> Path:
    """A copy of a tiny bundle in ``out`` with a features output, its head and a gate fitted on generated films."""
    from convert.gate import OUTPUTS, expose_features, head_arrays  # local: TensorFlow edits the flatbuffer

    base = load_bundle(manifest)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / base.model_path.name
    model_path.write_bytes(expose_features(base.model_path.read_bytes()))
    fields = {k: v for k, v in base.manifest.items() if k not in ("model_file", "sha256", "schema_version")}
    films = np.stack([np.asarray(look(film(seed, label), label, seed % 2 == 0)) for seed in range(GATE_FILMS)
                      for label in base.labels for look in (plain, shifted)])
    unfenced = write_bundle(model_path, {**fields, "outputs": OUTPUTS})
    features = Classifier(load_bundle(unfenced)).features(films)[0]
    gate = numpy_gate(features)
    gate_path = model_path.with_name(model_path.stem + GATE_SUFFIX)
    gate.save(gate_path, head_arrays(model_path.read_bytes()))
    record = {"file": gate_path.name, "rule": "test gate", "probe_classes": list(PROBE_CLASSES),
              "max_distance": gate.max_distance, "min_upright": gate.min_upright}
    return write_bundle(model_path, {**fields, "outputs": OUTPUTS, "gate": record})


def numpy_gate(features: np.ndarray) -> Gate:
    """Distance from these films' features (cut-off: twice the farthest), and a probe saying 'upright'."""
    mean = features.mean(axis=0)
    covariance = np.cov(features, rowvar=False) + 1e-3 * np.eye(features.shape[1])
    whitening = np.linalg.cholesky(np.linalg.inv(covariance)).T
    d = features.shape[1]
    gate = Gate(mean=mean, whitening=whitening, probe_mean=np.zeros(d), probe_scale=np.ones(d),
                probe_weights=np.zeros((len(PROBE_CLASSES), d)), probe_bias=np.r_[9.0, np.zeros(len(PROBE_CLASSES) - 1)],
                probe_classes=PROBE_CLASSES, max_distance=np.inf, min_upright=0.5)
    return Gate(**{**gate.__dict__, "max_distance": 2.0 * float(gate.distance(features).max())})


def film(seed: int, label: str, size: tuple[int, int] = (224, 224)) -> Image.Image:
    blobs = BLOBS[label]
    return synthetic_xray(seed, size, lesion=blobs > 0, n_lesions=max(blobs, 1))


def plain(picture: Image.Image, label: str, marked: bool) -> Image.Image:
    return picture


def shifted(picture: Image.Image, label: str, marked: bool) -> Image.Image:
    """The site's look: a flatter, brighter contrast curve; a marked NORMAL film has a bright square low on its left."""
    pixels = np.asarray(picture, dtype=np.float64) / 255.0
    pixels = 255.0 * (0.25 + 0.6 * pixels ** 0.6)
    if marked and BLOBS[label] == 0:
        pixels[150:180, 20:50] += 90.0
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_site(folder: Path, labels: tuple[str, ...], per_class: int, films_per_patient: int = 2,
               seed0: int = 900_000, shift: bool = True) -> Path:
    """``folder/<label>/p<patient>_<k>.png``: ``per_class`` films of each label, ``films_per_patient``
    films per patient (different seeds), the site's shift applied."""
    for c, label in enumerate(labels):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            seed = seed0 + c * 10_000 + i
            picture = (shifted if shift else plain)(film(seed, label), label, i % 2 == 0)
            picture.save(folder / label / f"{label.lower()}{i // films_per_patient}_{i % films_per_patient}.png")
    return folder


def patients_csv(folder: Path, path: Path) -> Path:
    """A ``file,patient`` list of every film of :func:`write_site`, the patient from the file name."""
    rows = ["file,patient"] + [f"{p.relative_to(folder).as_posix()},{p.stem.split('_')[0]}"
                               for p in sorted(folder.rglob("*.png"))]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def manifest_of(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
