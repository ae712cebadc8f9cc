"""train.quant_aware: fine-tuning sees the weights and activations the int8 file will compute with."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import train_cli  # noqa: E402
from train import models, quant_aware  # noqa: E402


def on_grid(weights: np.ndarray, axis: int) -> bool:
    return np.array_equal(quant_aware.snap(weights, axis), weights)


def test_snapped_weights_take_at_most_255_levels_per_channel_and_keep_each_channel_maximum():
    weights = np.random.default_rng(0).normal(size=(3, 3, 8, 4)).astype("float32")
    snapped = quant_aware.snap(weights, axis=3)
    for channel in range(4):
        levels = np.unique(snapped[..., channel])
        assert len(levels) <= 255
        assert np.abs(snapped[..., channel]).max() == pytest.approx(np.abs(weights[..., channel]).max())
    step = np.abs(weights).max(axis=(0, 1, 2)) / 127
    assert np.all(np.abs(snapped - weights) <= step / 2 + 1e-7)
    assert on_grid(snapped, 3)


def test_a_channel_of_zeros_stays_zero():
    weights = np.zeros((4, 2), dtype="float32")
    assert np.array_equal(quant_aware.snap(weights, axis=1), weights)


def lite0(blocks: int = 3) -> keras.Model:
    return models.build(f"transfer:EfficientNetLite0:{blocks}", (32, 32), 3, [0.0, 0.0, 0.0])


def images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 1)).astype("float32")


def test_the_twin_rounds_every_tensor_the_int8_file_stores_and_shares_the_float_layers():
    model = lite0()
    twin, fakes = quant_aware.twin(model, images(4))
    layers = quant_aware.flat_layers(model)
    relus = [layer for layer in layers if isinstance(layer, keras.layers.ReLU)]
    projections = [layer for layer in layers if layer.name.endswith("bn2")]
    adds = [layer for layer in layers if isinstance(layer, keras.layers.Add)]
    # + the input scaling and the pooled features; a batch norm before a ReLU6 fuses away
    assert len(fakes) == len(relus) + len(projections) + len(adds) + 2
    assert sum(f.fixed == (0.0, 6.0) for f in fakes) == len(relus)
    shared = {id(w) for w in model.weights}
    assert shared <= {id(w) for w in twin.weights}
    assert all(not layer.trainable for layer in layers if isinstance(layer, keras.layers.BatchNormalization))


def test_the_twin_computes_what_the_float_model_does_up_to_rounding():
    model = lite0()
    films = images(6)
    twin, fakes = quant_aware.twin(model, films)
    moving = [f for f in fakes if f.fixed is None]
    assert all(float(f.low.numpy()) <= 0.0 <= float(f.high.numpy()) for f in moving)
    assert any(float(f.high.numpy()) > 0.0 for f in moving)
    float_p, twin_p = model.predict(films, verbose=0), twin.predict(films, verbose=0)
    assert np.allclose(twin_p.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(float_p - twin_p).max() < 0.1


def test_training_keeps_every_kernel_on_its_grid_and_the_steps_in_float_shadows():
    model = lite0(2)
    snapper = quant_aware.SnapWeights(model)
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    assert len(snapper.kernels) == sum(isinstance(layer, kinds)
                                       for layer in quant_aware.flat_layers(model))
    assert all(on_grid(v.numpy(), axis) for v, axis in snapper.kernels)
    before = [shadow.copy() for shadow in snapper.shadows]
    films = images(16, seed=2)
    twin, _ = quant_aware.twin(model, films)
    twin.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy")
    labels = np.eye(3)[np.random.default_rng(2).integers(0, 3, size=16)]
    twin.fit(films, labels, batch_size=8, epochs=1, verbose=0, callbacks=[snapper])
    assert all(on_grid(v.numpy(), axis) for v, axis in snapper.kernels)
    # steps far smaller than a grid step still accumulate, instead of rounding away
    assert any(not np.array_equal(a, b) for a, b in zip(before, snapper.shadows))


def test_rounding_effects_say_how_often_each_rounding_changes_a_label_and_leave_the_model_as_it_was():
    model = lite0()
    films = images(8, seed=3)
    before = [w.numpy().copy() for w in model.weights]
    effects = quant_aware.rounding_effects(model, films, films)
    assert set(effects) == {"weights", "activations", "both"}
    assert all(0.0 <= e["label_agreement"] <= 1.0 and e["mean_abs_dp"] >= 0.0 for e in effects.values())
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))


def test_a_model_already_on_its_int8_grid_loses_nothing_to_weight_rounding():
    model = lite0()
    quant_aware.SnapWeights(model)
    effects = quant_aware.rounding_effects(model, images(8, seed=4), images(8, seed=5))
    assert effects["weights"] == {"label_agreement": 1.0, "mean_abs_dp": 0.0}


def test_rounding_reports_where_int8_would_change_a_runs_labels(binary_run):
    result = train_cli("rounding", str(binary_run))
    assert result.exit_code == 0, result.output
    saved = json.loads((binary_run / "rounding.json").read_text())
    assert set(saved["effects"]) == {"weights", "activations", "both"}
    assert saved["images"] == len([row for row in csv.DictReader((binary_run / "split.csv").open()) if row["side"] == "val"])
