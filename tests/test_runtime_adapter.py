"""The runtime adapter turns pixels into tensors (and outputs into probabilities) by each
tensor's own quantization, and resizes the batch dimension on demand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxr_edge import runtime
from cxr_edge.bundle import load_bundle

ASSETS = Path(__file__).parent / "assets"
PIXELS = np.array([[[0, 1, 2], [127, 128, 255]]], dtype=np.uint8)  # (N=1, H=2, W=3)


def test_uint8_input_with_scale_one_takes_the_pixels_unchanged():
    tensor = runtime.to_input_tensor(PIXELS, {"dtype": np.uint8, "quantization": (1.0, 0)})
    assert tensor.dtype == np.uint8 and tensor.shape == (1, 2, 3, 1)
    assert np.array_equal(tensor[..., 0], PIXELS)


def test_other_quantizations_round_divide_and_clip():
    tensor = runtime.to_input_tensor(PIXELS, {"dtype": np.int8, "quantization": (2.0, -100)})
    expected = np.clip(np.rint(PIXELS / 2.0 - 100), -128, 127)
    assert tensor.dtype == np.int8 and np.array_equal(tensor[..., 0], expected)


def test_float_input_gets_raw_grey_levels_and_a_single_image_becomes_a_batch():
    tensor = runtime.to_input_tensor(PIXELS[0], {"dtype": np.float32, "quantization": (0.0, 0)})
    assert tensor.dtype == np.float32 and tensor.shape == (1, 2, 3, 1)
    assert tensor.max() == 255.0  # rescaling is the model's job, not the adapter's


def test_outputs_are_dequantized_to_probabilities():
    raw = np.array([[0], [128], [255]], dtype=np.uint8)
    probs = runtime.from_output_tensor(raw, {"quantization": (1 / 256, 0)})
    np.testing.assert_allclose(probs[:, 0], [0.0, 0.5, 255 / 256])
    floats = np.array([[0.25]], dtype=np.float32)
    np.testing.assert_allclose(runtime.from_output_tensor(floats, {"quantization": (0.0, 0)}), floats)


@pytest.mark.parametrize("name", ["tiny_binary_int8", "tiny_binary_float32"])
def test_the_batch_dimension_follows_the_input_and_answers_do_not_depend_on_it(name):
    bundle = load_bundle(ASSETS / f"{name}.json")
    interpreter = runtime.make_interpreter(bundle.model_path, threads=1)
    assert list(runtime.input_details(interpreter)["shape"][1:3]) == [224, 224]
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(5, 224, 224), dtype=np.uint8)
    together = runtime.run_batch(interpreter, batch)
    one_by_one = np.concatenate([runtime.run_batch(interpreter, image[None]) for image in batch])
    assert together.shape == (5, 1) and together.dtype == np.float32
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)
    assert tuple(runtime.input_details(interpreter)["shape"]) == (1, 224, 224, 1)  # resized back for batch 1


def test_a_file_that_is_no_model_is_refused_naming_it(tmp_path):
    bogus = tmp_path / "broken.tflite"
    bogus.write_bytes(b"certainly not a flatbuffer")
    with pytest.raises(runtime.RuntimeUnavailable, match="broken.tflite"):
        runtime.make_interpreter(bogus)


def test_a_batch_larger_than_max_batch_runs_in_chunks_with_the_same_answers():
    bundle = load_bundle(ASSETS / "tiny_binary_int8.json")
    interpreter = runtime.make_interpreter(bundle.model_path, threads=1)
    batch = np.random.default_rng(1).integers(0, 256, size=(runtime.MAX_BATCH + 3, 224, 224), dtype=np.uint8)
    together = runtime.run_batch(interpreter, batch)
    assert together.shape == (runtime.MAX_BATCH + 3, 1)
    assert runtime.input_details(interpreter)["shape"][0] == 3  # the last chunk, not the whole batch
    np.testing.assert_allclose(together[-3:], runtime.run_batch(interpreter, batch[-3:]), atol=1e-6)
    np.testing.assert_allclose(together[:2], runtime.run_batch(interpreter, batch[:2]), atol=1e-6)
