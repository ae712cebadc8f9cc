"""Both explanation methods point at the lesion a model was trained to detect.

A tiny CNN learns to flag synthetic radiographs that carry a bright "lesion" blob
(:mod:`cxr_edge.testing.synthetic` knows where it put it). Occlusion, through the TFLite
interpreter, and Grad-CAM, through Keras, must both put their hot spot on the blob.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from conftest import hotspot  # noqa: E402
from cxr_edge import explain  # noqa: E402
from cxr_edge.bundle import load_bundle, write_bundle  # noqa: E402
from cxr_edge.engine import Classifier  # noqa: E402
from cxr_edge.preprocess import Contract  # noqa: E402
from cxr_edge.testing.synthetic import lesion_locations, synthetic_xray  # noqa: E402
from experiments.gradcam import gradcam, save_overlays  # noqa: E402

SIZE = 96
TEST_SEEDS = range(1001, 1013, 2)  # held out: training uses seeds 0..119


def pixels(seed: int, lesion: bool) -> np.ndarray:
    return np.asarray(synthetic_xray(seed, (SIZE, SIZE), lesion=lesion))


def train_lesion_detector() -> keras.Model:
    """A small CNN that flags images with a lesion, trained on pairs of the same anatomy with
    and without the blob (so the blob is the only difference to learn).

    Averaging 2x2 first smooths the film noise; max pooling answers "is there a blob
    anywhere" and average pooling keeps gradients flowing from every position, which makes
    training reliable from any seed (a max-pool-only net sometimes stayed at 0.5).
    """
    x = np.stack([pixels(i // 2, lesion=i % 2 == 1) for i in range(240)])[..., None].astype("float32")
    y = np.arange(240) % 2
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((SIZE, SIZE, 1))
    h = layers.AveragePooling2D(2)(layers.Rescaling(1 / 255)(inputs))
    h = layers.Conv2D(8, 3, activation="relu")(h)
    h = layers.MaxPooling2D()(layers.Conv2D(12, 3, activation="relu")(h))
    h = layers.Conv2D(12, 3, activation="relu", name="features")(h)
    h = layers.Concatenate()([layers.GlobalMaxPooling2D()(h), layers.GlobalAveragePooling2D()(h)])
    model = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(h), name="lesion")
    model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
    model.fit(x, y, epochs=30, batch_size=32, verbose=0, shuffle=True)
    return model


@pytest.fixture(scope="module")
def lesion_model(tmp_path_factory) -> tuple[keras.Model, Path]:
    """(Keras model, float32 bundle manifest) of the lesion detector (~15 s to train)."""
    model = train_lesion_detector()
    folder = tmp_path_factory.mktemp("lesion_bundle")
    tflite = folder / "lesion.tflite"
    tflite.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    manifest = write_bundle(tflite, {
        "name": "lesion", "version": "0", "task": "binary", "labels": ["NORMAL", "PNEUMONIA"],
        "negative_label": "NORMAL", "threshold": 0.5, "quantization": "float32",
        "input": {"shape": [1, SIZE, SIZE, 1], "dtype": "float32"},
        "output": {"dtype": "float32", "activation": "sigmoid"},
        "preprocessing": Contract(SIZE, SIZE).to_manifest(),
    })
    return model, manifest


def test_the_model_learned_the_lesion(lesion_model):
    classifier = Classifier(load_bundle(lesion_model[1]))
    with_lesion = classifier.positive_scores(np.stack([pixels(s, True) for s in TEST_SEEDS]))
    without = classifier.positive_scores(np.stack([pixels(s, False) for s in TEST_SEEDS]))
    assert with_lesion.min() > 0.5 > without.max()


@pytest.mark.parametrize("seed", TEST_SEEDS)
def test_occlusion_hot_spot_is_on_the_lesion(lesion_model, seed):
    classifier = Classifier(load_bundle(lesion_model[1]))
    heat = explain.occlusion_map(classifier, pixels(seed, True), window=16, stride=8)
    lesion = lesion_locations(seed, (SIZE, SIZE))[0]
    x, y = hotspot(heat)
    assert np.hypot(x - lesion.x, y - lesion.y) < lesion.radius + 8
    assert heat.drop.max() > 0.3  # hiding the blob removes most of the evidence


def test_occlusion_of_a_clear_image_is_cold(lesion_model):
    classifier = Classifier(load_bundle(lesion_model[1]))
    heat = explain.occlusion_map(classifier, pixels(TEST_SEEDS[0], False), window=16, stride=8)
    assert heat.drop.max() < 0.2


@pytest.mark.parametrize("seed", TEST_SEEDS)
def test_gradcam_peak_is_on_the_lesion(lesion_model, seed):
    cam = gradcam(lesion_model[0], pixels(seed, True))
    lesion = lesion_locations(seed, (SIZE, SIZE))[0]
    y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    assert cam.shape == (SIZE, SIZE) and cam.max() == pytest.approx(1.0)
    # within the blob, give or take one cell of the 20x20 feature map (4.8 px), which 'valid'
    # convolutions also shift a little against the image
    assert np.hypot(x - lesion.x, y - lesion.y) < lesion.radius + 6


def test_gradcam_overlays_are_written(lesion_model, tmp_path):
    items = [("PNEUMONIA/a.png", pixels(1001, True)), ("NORMAL/b.png", pixels(1003, False))]
    written = save_overlays(lesion_model[0], items, tmp_path)
    assert [p.name for p in written] == ["a.gradcam.png", "b.gradcam.png"]
    from PIL import Image

    assert Image.open(written[0]).size[0] == 2 * 2 * SIZE + 8


def test_explain_command_runs_without_tensorflow(lesion_model, tmp_path):
    """The edge command in a fresh interpreter where importing TensorFlow or Keras fails."""
    image = tmp_path / "in" / "flagged.png"
    image.parent.mkdir()
    synthetic_xray(1001, (SIZE, SIZE), lesion=True).save(image)
    out = tmp_path / "heat"
    script = (
        "import sys\n"
        "for name in ('tensorflow', 'keras', 'sklearn', 'pandas', 'matplotlib'): sys.modules[name] = None\n"
        "from cxr_edge.cli import main\n"
        f"main(['explain', {str(image)!r}, '--out-dir', {str(out)!r}, '--model', {str(lesion_model[1])!r},"
        " '--window', '16', '--stride', '8'])\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "flagged.png: probability" in done.stdout
    assert (out / "flagged.occlusion.png").is_file()
