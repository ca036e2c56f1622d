"""Arrow arrays built from NumPy buffers without ``pa.array``.

``pa.array`` (and ``DictionaryArray.from_arrays``, which calls it) asks pyarrow's
pandas shim whether its argument is a pandas object, and that question imports
pandas: ~270 ms on the first ``to_arrow()`` of a process that never uses pandas
(issue 22). ``Array.from_buffers`` takes the buffers as they are and asks nothing,
so the Arrow export paths build their arrays here.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _pa() -> Any:
    import pyarrow as pa

    return pa


def _validity(mask: np.ndarray | None) -> Any:
    """An Arrow validity bitmap (1 = present) from a boolean *null* mask, or None."""
    if mask is None or not mask.any():
        return None
    return _pa().py_buffer(np.packbits(~mask, bitorder="little"))


_NUMPY_OF = {"int32": np.int32, "int64": np.int64, "double": np.float64, "float": np.float32}


def numeric(data: np.ndarray, typ: Any, mask: np.ndarray | None = None) -> Any:
    """A primitive array (int32/int64/float64) over ``data``; ``mask`` marks nulls."""
    pa = _pa()
    if pa.types.is_boolean(typ):
        data = np.asarray(data, dtype=bool)
        bits = pa.py_buffer(np.packbits(data, bitorder="little"))
        return pa.Array.from_buffers(typ, len(data), [_validity(mask), bits])
    data = np.ascontiguousarray(data, dtype=_NUMPY_OF.get(str(typ), np.int64))  # timestamps: int64
    return pa.Array.from_buffers(typ, len(data), [_validity(mask), pa.py_buffer(data)])


def strings(values: list) -> Any:
    """A string array from a list of str or None."""
    pa = _pa()
    n = len(values)
    encoded = [b"" if v is None else v.encode("utf-8", "surrogatepass") for v in values]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    typ = pa.string() if offsets[-1] < 2**31 else pa.large_string()
    offsets = offsets.astype(np.int32) if typ == pa.string() else offsets
    mask = np.fromiter((v is None for v in values), dtype=bool, count=n)
    return pa.Array.from_buffers(typ, n, [_validity(mask), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def from_values(values: list, typ: Any) -> Any:
    """An array of ``typ`` (string, int64, float64 or bool) from Python values and Nones."""
    pa = _pa()
    if pa.types.is_string(typ):
        return strings(values)
    mask = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
    if pa.types.is_boolean(typ):
        return numeric(np.array([bool(v) for v in values], dtype=bool), typ, mask)
    dtype = np.int64 if pa.types.is_integer(typ) else np.float64
    data = np.array([0 if v is None else v for v in values], dtype=dtype)
    return numeric(data, typ, mask)


def dictionary(indices: np.ndarray, dictionary_values: Any, mask: np.ndarray | None = None) -> Any:
    """A dictionary array of int32 ``indices`` into an Arrow array; ``mask`` marks nulls."""
    pa = _pa()
    indices = np.ascontiguousarray(indices, dtype=np.int32)
    typ = pa.dictionary(pa.int32(), dictionary_values.type)
    return pa.DictionaryArray.from_buffers(typ, len(indices), [_validity(mask), pa.py_buffer(indices)],
                                           dictionary_values)


def string_lists(values: list) -> Any | None:
    """A list<string> array when every value is None or a list of str, else None."""
    pa = _pa()
    flat: list = []
    offsets = [0]
    for v in values:
        if v is not None:
            if type(v) is not list or any(type(x) is not str for x in v):
                return None
            flat.extend(v)
        offsets.append(len(flat))
    mask = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
    child = strings(flat)
    return pa.Array.from_buffers(pa.list_(child.type), len(values),
                                 [_validity(mask), pa.py_buffer(np.array(offsets, dtype=np.int32))],
                                 children=[child])


def binaries(values: list) -> Any:
    """A binary (or large_binary past 2 GiB) array from a list of bytes or None."""
    pa = _pa()
    n = len(values)
    lengths = np.fromiter((0 if v is None else len(v) for v in values), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    typ = pa.binary() if offsets[-1] < 2**31 else pa.large_binary()
    offsets = offsets.astype(np.int32) if typ == pa.binary() else offsets
    mask = np.fromiter((v is None for v in values), dtype=bool, count=n)
    data = b"".join(v for v in values if v is not None)
    return pa.Array.from_buffers(typ, n, [_validity(mask), pa.py_buffer(offsets), pa.py_buffer(data)])


def float_lists(values: list) -> Any:
    """A list<float64> array from a list of 1-D float64 arrays (or None)."""
    pa = _pa()
    n = len(values)
    lengths = np.fromiter((0 if v is None else len(v) for v in values), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [v for v in values if v is not None]
    flat = np.concatenate(present).astype(np.float64) if present else np.empty(0)
    mask = np.fromiter((v is None for v in values), dtype=bool, count=n)
    return pa.Array.from_buffers(pa.list_(pa.float64()), n, [_validity(mask), pa.py_buffer(offsets)],
                                 children=[numeric(flat, pa.float64())])
