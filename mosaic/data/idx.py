"""A small reader for the IDX format of (Fashion-)MNIST, plain or gzipped.

Layout (big-endian): two zero bytes, a type byte (0x08 = unsigned byte), a byte with the number of
dimensions d, then d int32 sizes, then the values in C order.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or not) into a numpy array of its stored shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    count = int(np.prod(shape)) if shape else 0
    if len(raw) - offset != count * dtype.itemsize:
        raise ValueError(f"{path}: header says {shape} but the file holds {len(raw) - offset} data bytes")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape)
