"""experiments/gradcam.py on the project's own architectures (untrained: shapes, layers, bookkeeping)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow

keras = pytest.importorskip("keras")

from train import models  # noqa: E402
from experiments.gradcam import gradcam, last_feature_layer, misclassified  # noqa: E402


@pytest.mark.parametrize("arch, n_outputs", [("baseline", 1), ("mobile", 1), ("mobile", 3)])
def test_gradcam_of_every_architecture_is_an_image_sized_map_in_0_1(arch, n_outputs):
    keras.utils.set_random_seed(0)
    model = models.build(arch, (64, 64), n_outputs, [0.0] * n_outputs)
    assert len(last_feature_layer(model).output.shape) == 4
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    cam = gradcam(model, pixels)
    assert cam.shape == (64, 64) and cam.dtype == np.float32
    assert 0.0 <= cam.min() and cam.max() <= 1.0


def test_a_named_layer_is_used_and_a_model_without_feature_maps_is_refused():
    inputs = keras.Input((8,))
    flat = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    with pytest.raises(ValueError, match="no layer with a spatial"):
        last_feature_layer(flat)
    model = models.build("baseline", (32, 32), 1, [0.0])
    first_conv = next(layer.name for layer in model.layers if "conv" in layer.name)
    assert gradcam(model, np.zeros((32, 32), np.uint8), layer_name=first_conv).shape == (32, 32)


def test_misclassified_lists_false_positives_and_negatives_at_the_threshold():
    names = ["a", "b", "c", "d", "e"]
    assert misclassified(names, [0, 0, 1, 1, 1], [0.6, 0.2, 0.4, 0.5, 0.9], threshold=0.5) == {
        "false_positives": ["a"],
        "false_negatives": ["c"],
    }
