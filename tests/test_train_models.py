"""train.models: every architecture takes raw grey levels; mobile stays small and Edge-TPU-friendly."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

keras = pytest.importorskip("keras")

from train import models  # noqa: E402
from train.cli import main  # noqa: E402

# Layer types whose TFLite ops the Edge TPU compiler maps (Conv2D, DepthwiseConv2D, ReLU6,
# Mean, FullyConnected, Logistic/Softmax; batch norm folds, dropout vanishes).
EDGE_TPU_LAYERS = {"InputLayer", "Rescaling", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU",
                   "GlobalAveragePooling2D", "Dropout", "Dense"}


def test_mobile_is_small_and_uses_only_edge_tpu_friendly_layers():
    model = models.build("mobile", (224, 224), 1, [0.0])
    assert model.count_params() < 1_000_000  # < ~1 MB once int8
    assert {layer.__class__.__name__ for layer in model.layers} <= EDGE_TPU_LAYERS
    relus = [layer for layer in model.layers if layer.__class__.__name__ == "ReLU"]
    assert relus and all(float(layer.max_value) == 6.0 for layer in relus)


@pytest.mark.parametrize("arch", ["baseline", "tuned", "mobile", "transfer:MobileNetV2", "transfer:EfficientNetLite0",
                                  "transfer:EfficientNetLite0:11", "transfer:EfficientNetLite2:15"])
def test_every_architecture_takes_raw_grey_levels_and_rescales_inside(arch):
    model = models.build(arch, (64, 64), 1, [0.0])
    assert model.input_shape == (None, 64, 64, 1)
    assert any(layer.__class__.__name__ in ("Rescaling", "Functional") for layer in model.layers)
    out = model.predict(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 1)).astype("float32"), verbose=0)
    assert out.shape == (2, 1) and np.all((out >= 0) & (out <= 1))


@pytest.mark.parametrize("name, kind", [
    ("MobileNetV3Small", "Identity"), ("ResNetRS50", "Identity"), ("EfficientNetB0", "Identity"),  # scale inside
    ("MobileNetV2", "Rescaling"), ("ResNet50", "Normalization"), ("DenseNet121", "Normalization"),
])
def test_each_backbone_family_gets_its_imagenet_scaling_exactly_once(name, kind):
    assert models._family_preprocessing(name).__class__.__name__ == kind


def test_three_classes_get_a_softmax_with_the_prior_as_bias():
    bias = list(np.log([0.2, 0.5, 0.3]))
    model = models.build("mobile", (64, 64), 3, bias)
    out = model.predict(np.zeros((1, 64, 64, 1), "float32"), verbose=0)
    assert out.shape == (1, 3) and out.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(model.get_layer("prediction").bias.numpy(), bias, rtol=1e-6)


def test_a_lite_block_count_beyond_the_variants_is_refused():
    with pytest.raises(models.ModelError, match="its 16 blocks"):
        models.build("transfer:EfficientNetLite0:17", (64, 64), 1, [0.0])
    with pytest.raises(models.ModelError, match="its 21 blocks"):
        models.build("transfer:EfficientNetLite1:22", (64, 64), 1, [0.0])


def test_a_frozen_backbone_leaves_only_the_head_trainable():
    model = models.build("transfer:EfficientNetLite0", (64, 64), 1, [0.0], freeze=True)
    assert sum(w.shape.num_elements() for w in model.trainable_weights) == 1281  # 1280 features + bias


def test_lite_imagenet_weights_point_to_the_port():
    with pytest.raises(models.ModelError, match="port_lite --variant lite2"):
        models.build("transfer:EfficientNetLite2", (64, 64), 1, [0.0], weights="imagenet")


def test_compiled_accuracy_and_auc_are_the_plain_ones():
    from train.fit import compile_model

    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Activation("linear")(inputs))  # outputs its input
    compile_model(model, 1e-3, 1)
    score = np.array([[0.9], [0.2], [0.6], [0.4]], "float32")
    truth = np.array([[1.0], [0.0], [0.0], [1.0]], "float32")
    result = model.evaluate(score, truth, batch_size=1, verbose=0, return_dict=True)
    assert result["accuracy"] == pytest.approx(0.5) and result["auc"] == pytest.approx(0.75, abs=0.01)


@pytest.mark.parametrize("args, message", [
    (["--arch", "transfer:NoSuchNet"], "unknown keras.applications model"),
    (["--arch", "transfer:MobileNetV2", "--weights", "/nonexistent.weights.h5"], "not found"),
    (["--arch", "resnet"], "unknown architecture"),
])
def test_bad_architecture_requests_fail_with_a_message(kermany, tmp_path, args, message):
    result = CliRunner().invoke(main, ["fit", "--data", str(kermany), "--out", str(tmp_path / "r"), "--smoke", *args])
    assert result.exit_code == 3 and message in result.output
