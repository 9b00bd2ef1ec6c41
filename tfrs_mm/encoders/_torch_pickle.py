"""Reads legacy (pre-1.6, non-zip) `torch.save` state dicts without torch.

EfficientNet-Lite0's weights ship in that format. Only plain tensors inside an
`OrderedDict` are accepted: the unpickler resolves a short whitelist of names
and refuses everything else, so no code stored in the file can run. The arrays
are bit-identical to what `torch.load` returns.
"""

from __future__ import annotations

import collections
import pickle
import struct
from typing import Any, BinaryIO

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage: str, offset: int, size: tuple, stride: tuple, *unused: Any) -> tuple:
    # Tensors are materialised after the storages, which follow the pickle in the file.
    return (storage, offset, tuple(size), tuple(stride))


class _WhitelistUnpickler(pickle.Unpickler):
    def __init__(self, f: BinaryIO):
        super().__init__(f)
        self.storage_dtypes: dict[str, np.dtype] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid: tuple) -> str:
        # pid = ('storage', storage_type, key, location, numel[, view])
        self.storage_dtypes[pid[2]] = pid[1].dtype
        return pid[2]


def load_legacy_state_dict(path: str) -> collections.OrderedDict[str, np.ndarray]:
    """Loads a legacy `torch.save` file holding a state dict of tensors.

    Args:
        path: Local path of the `.pth` file.

    Returns:
        Parameter name → numpy array, in file order, with torch's dtypes and shapes.

    Raises:
        ValueError: if the file is not a legacy torch.save file.
        pickle.UnpicklingError: if it holds anything but plain tensors.
    """
    with open(path, "rb") as f:
        if pickle.load(f) != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a legacy (non-zip) torch.save file")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info
        unpickler = _WhitelistUnpickler(f)
        tensors = unpickler.load()
        storages = {}
        for key in pickle.load(f):
            (numel,) = struct.unpack("<q", f.read(8))
            dtype = unpickler.storage_dtypes[key]
            storages[key] = np.frombuffer(f.read(numel * dtype.itemsize), dtype=dtype)
    return collections.OrderedDict((k, _materialise(v, storages)) for k, v in tensors.items())


def _materialise(tensor: tuple, storages: dict[str, np.ndarray]) -> np.ndarray:
    key, offset, size, stride = tensor
    flat = storages[key]
    strides = [s * flat.itemsize for s in stride]
    return np.lib.stride_tricks.as_strided(flat[offset:], shape=size, strides=strides).copy()
