"""Make the tiny model bundles the tests use, so edge tests need no TensorFlow.

    TF_CPP_MIN_LOG_LEVEL=2 python tests/assets/make_assets.py

Each is a real (if tiny) classifier of a synthetic task, trained for a few seconds on
pictures from :mod:`cxr_edge.testing.synthetic` and converted by the project's own ``convert``
pipeline (calibration, variants, bundles, parity), never random weights:

* ``tiny_binary_{int8,float32}``: NORMAL (no blob) vs PNEUMONIA (a bright blob in a lung).
* ``tiny_subtype_int8``: NORMAL / BACTERIAL / VIRAL = no blob / one blob / three blobs.

Inputs are 224x224 like the real models (explanation tests slide 56-px windows), but
the first layer averages 4x4 blocks so training and inference stay cheap. The parity reports are kept beside them as
``<model>.parity.md``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from convert import bundles, pipeline  # noqa: E402
from convert.quiet import import_tensorflow  # noqa: E402
from cxr_edge.review import metrics  # noqa: E402
from cxr_edge.review.labelled import Truth  # noqa: E402
from cxr_edge.preprocess import Contract, load_image  # noqa: E402
from cxr_edge.testing.synthetic import synthetic_xray  # noqa: E402

ASSETS = Path(__file__).resolve().parent
SIZE = 224  # the real models' size: explanation tests slide 56-px windows over it
  # drawn larger than the model input, so the contract's resize is exercised
N_TRAIN, N_VAL = 240, 60  # per class
TASKS = {
    "tiny_binary": {"labels": ("NORMAL", "PNEUMONIA"), "blobs": (0, 1), "variants": ("float32", "int8"), "epochs": 30},
    "tiny_subtype": {"labels": ("NORMAL", "BACTERIAL", "VIRAL"), "blobs": (0, 1, 3), "variants": ("int8",), "epochs": 60},
}


def picture_size(seed: int) -> tuple[int, int]:
    """Sizes and aspect ratios vary, as films do, so the contract's squash-resize is exercised."""
    return 200 + seed * 37 % 160, 200 + seed * 53 % 120


def write_pictures(folder: Path, labels: tuple[str, ...], blobs: tuple[int, ...], n: int, seed0: int) -> None:
    """``folder/<label>/<label>_<seed>.png`` for n seeds per label."""
    for k, (label, count) in enumerate(zip(labels, blobs)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            seed = seed0 + k * 10_000 + i
            picture = synthetic_xray(seed, picture_size(seed), lesion=count > 0, n_lesions=max(count, 1))
            picture.save(folder / label / f"{label}_{seed}.png")


def labelled(folder: Path, labels: tuple[str, ...]) -> list[tuple[str, Truth]]:
    return [(str(p), Truth(positive=label != labels[0], label=label))
            for label in labels for p in sorted((folder / label).glob("*.png"))]


def read(samples: list[tuple[str, Truth]], labels: tuple[str, ...], contract: Contract) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([load_image(path, contract).pixels for path, _ in samples])[..., None].astype(np.float32)
    return x, np.array([labels.index(t.label) for _, t in samples])


def train(x_train: np.ndarray, y: np.ndarray, n_labels: int, epochs: int):
    """A ~2,300-parameter CNN: raw 0..255 in, rescaled inside (the contract's model convention).

    Max pooling answers "is there a blob anywhere" (enough for the binary task, and the
    most confident on films unlike the training pictures); adding average pooling ("how much
    blob") lets the subtype task tell one blob from three.
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    binary = n_labels == 2
    inputs = keras.Input((SIZE, SIZE, 1), dtype="float32", name="image")
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.AveragePooling2D(4)(x)  # 224 -> 56 at once: cheap to train and to run
    x = layers.Conv2D(8, 3, activation="relu")(x)
    x = layers.Conv2D(12, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(12, 3, activation="relu")(x)
    pooled = layers.GlobalMaxPooling2D()(x)
    x = pooled if binary else layers.Concatenate()([pooled, layers.GlobalAveragePooling2D()(x)])
    outputs = layers.Dense(1 if binary else n_labels, activation="sigmoid" if binary else "softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy" if binary else "sparse_categorical_crossentropy")
    model.fit(x_train, y, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    return model


def choose_threshold(positive: np.ndarray, score: np.ndarray) -> tuple[float, str]:
    """Mid-gap when validation separates the classes (no image sits on the threshold, so
    float rounding cannot flip a test's answer); else the project's sensitivity rule."""
    low, high = score[~positive].max(), score[positive].min()
    if low < high:
        return float((low + high) / 2), "midway between the classes on synthetic validation"
    return metrics.threshold_for_sensitivity(positive, score, 0.95), "sensitivity >= 0.95 on synthetic validation"


def make(name: str, labels: tuple[str, ...], blobs: tuple[int, ...], variants: tuple[str, ...], epochs: int,
         work: Path) -> None:
    contract = Contract(width=SIZE, height=SIZE)
    write_pictures(work / "train", labels, blobs, N_TRAIN, seed0=0)
    write_pictures(work / "val", labels, blobs, N_VAL, seed0=500_000)
    train_set, val_set = labelled(work / "train", labels), labelled(work / "val", labels)
    model = train(*read(train_set, labels, contract), len(labels), epochs)
    x_val, y_val = read(val_set, labels, contract)
    out = np.asarray(model.predict(x_val, verbose=0))
    score = out[:, 0] if len(labels) == 2 else 1.0 - out[:, 0]
    threshold, rule = choose_threshold(y_val > 0, score)
    keras_path = work / f"{name}.keras"
    model.save(keras_path)
    spec = bundles.ModelSpec(
        name=name, task="binary" if len(labels) == 2 else "multiclass", labels=labels, threshold=threshold,
        contract=contract, threshold_rule=rule,
        version="0.0.1",
        dataset={"name": "synthetic test pictures (cxr_edge.testing.synthetic), NOT chest X-rays", "blobs_per_label":
                 dict(zip(labels, blobs)), "train_per_class": N_TRAIN, "val_per_class": N_VAL},
        metrics=metrics.binary_metrics(y_val > 0, score, threshold),
        training_run={"script": "tests/assets/make_assets.py", "note": "test fixture, not a medical model"},
    )
    job = pipeline.Job(keras_path=keras_path, spec=spec, out=work / "bundles", variants=variants,
                       calib_samples=[(p, t.label) for p, t in train_set], calib_source="synthetic train pictures",
                       calib_size=120, parity_samples=val_set, parity_source="synthetic validation pictures")
    result = pipeline.run(job)
    if result.flags:
        raise SystemExit(f"{name}: parity flags {result.flags}")
    for variant, bundle in result.bundles.items():
        bundles.install(bundle, ASSETS, bundles.stem(name, variant))
    shutil.copyfile(work / "bundles" / "parity.md", ASSETS / f"{name}.parity.md")


def main() -> None:
    import_tensorflow()
    for name, task in TASKS.items():
        with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
            make(name, task["labels"], task["blobs"], task["variants"], task["epochs"], Path(tmp))


if __name__ == "__main__":
    main()
