"""The numeric block: a fixed-capacity columnar chunk of one sequence.

Layout (little-endian)::

    u8  format (1)        u8  flags        u16 reserved (0)       u32 count
    steps       int64[count]    or int64 start          if flags & STEPS_RANGE
    values      float64[count]
    epochs      float64[count]  or nothing              if flags & NO_EPOCHS
    timestamps  float64[count]  or float64 one value    if flags & CONST_TIME

A sequence is split into blocks of ``CAPACITY`` points; block numbers start at
0. Only the last block (the tail) is ever rewritten: the writer keeps it in
memory and puts it again at each flush until it is full, then starts the next.
That keeps every write transaction proportional to what was tracked since the
last flush, while reads stay large sequential copies.

The three flags cost one vectorised comparison each when a block is encoded and
remove most of the bytes of the common cases: steps 0, 1, 2, ... (most training
loops), no epochs, and a bulk ``track_many`` whose points share one timestamp.
"""

from __future__ import annotations

import struct

import numpy as np

CAPACITY = 4096
FORMAT = 1

STEPS_RANGE = 1
NO_EPOCHS = 2
CONST_TIME = 4

_HEADER = struct.Struct("<BBHI")
HEADER_SIZE = _HEADER.size

Columns = tuple  # (steps int64, values float64, epochs float64, timestamps float64)


def empty() -> Columns:
    return (
        np.empty(0, np.int64),
        np.empty(0, np.float64),
        np.empty(0, np.float64),
        np.empty(0, np.float64),
    )


def encode(steps: np.ndarray, values: np.ndarray, epochs: np.ndarray, times: np.ndarray) -> bytes:
    n = len(values)
    flags = 0
    parts = []
    if n and steps[-1] - steps[0] == n - 1 and (n == 1 or bool(np.all(np.diff(steps) == 1))):
        flags |= STEPS_RANGE
        parts.append(np.int64(steps[0]).tobytes())
    else:
        parts.append(np.ascontiguousarray(steps, "<i8").tobytes())
    parts.append(np.ascontiguousarray(values, "<f8").tobytes())
    if bool(np.all(np.isnan(epochs))):
        flags |= NO_EPOCHS
    else:
        parts.append(np.ascontiguousarray(epochs, "<f8").tobytes())
    if n and bool(np.all(times == times[0])):
        flags |= CONST_TIME
        parts.append(np.float64(times[0]).tobytes())
    else:
        parts.append(np.ascontiguousarray(times, "<f8").tobytes())
    return _HEADER.pack(FORMAT, flags, 0, n) + b"".join(parts)


def decode(buf) -> Columns:
    """Decode one block. The arrays may be views into ``buf``: copy them before
    the transaction that produced ``buf`` ends."""
    fmt, flags, _, n = _HEADER.unpack_from(buf, 0)
    if fmt != FORMAT:
        raise ValueError(f"unknown block format {fmt}")
    pos = HEADER_SIZE
    if flags & STEPS_RANGE:
        start = np.frombuffer(buf, "<i8", 1, pos)[0]
        steps = np.arange(start, start + n, dtype=np.int64)
        pos += 8
    else:
        steps = np.frombuffer(buf, "<i8", n, pos)
        pos += 8 * n
    values = np.frombuffer(buf, "<f8", n, pos)
    pos += 8 * n
    if flags & NO_EPOCHS:
        epochs = np.full(n, np.nan)
    else:
        epochs = np.frombuffer(buf, "<f8", n, pos)
        pos += 8 * n
    if flags & CONST_TIME:
        times = np.full(n, np.frombuffer(buf, "<f8", 1, pos)[0])
        pos += 8
    else:
        times = np.frombuffer(buf, "<f8", n, pos)
        pos += 8 * n
    if pos != len(buf):
        raise ValueError(f"block is {len(buf)} bytes, expected {pos} for {n} points")
    return steps, values, epochs, times


_ARANGE = np.arange(CAPACITY, dtype=np.int64)


def decode_many(raws: list) -> Columns:
    """Decode consecutive blocks of one sequence straight into four preallocated
    columns: one copy per point (decode + concatenate would make two)."""
    headers = [_HEADER.unpack_from(raw, 0) for raw in raws]
    total = sum(h[3] for h in headers)
    steps = np.empty(total, np.int64)
    values = np.empty(total, np.float64)
    epochs = np.empty(total, np.float64)
    times = np.empty(total, np.float64)
    at = 0
    for raw, (fmt, flags, _, n) in zip(raws, headers):
        if fmt != FORMAT:
            raise ValueError(f"unknown block format {fmt}")
        end = at + n
        pos = HEADER_SIZE
        if flags & STEPS_RANGE:
            start = int(np.frombuffer(raw, "<i8", 1, pos)[0])
            ar = _ARANGE if n <= len(_ARANGE) else np.arange(n, dtype=np.int64)
            np.add(ar[:n], start, out=steps[at:end])
            pos += 8
        else:
            steps[at:end] = np.frombuffer(raw, "<i8", n, pos)
            pos += 8 * n
        values[at:end] = np.frombuffer(raw, "<f8", n, pos)
        pos += 8 * n
        if flags & NO_EPOCHS:
            epochs[at:end] = np.nan
        else:
            epochs[at:end] = np.frombuffer(raw, "<f8", n, pos)
            pos += 8 * n
        if flags & CONST_TIME:
            times[at:end] = np.frombuffer(raw, "<f8", 1, pos)[0]
            pos += 8
        else:
            times[at:end] = np.frombuffer(raw, "<f8", n, pos)
            pos += 8 * n
        if pos != len(raw):
            raise ValueError(f"block is {len(raw)} bytes, expected {pos} for {n} points")
        at = end
    return steps, values, epochs, times


def concat(parts: list) -> Columns:
    if not parts:
        return empty()
    if len(parts) == 1:
        return tuple(np.array(c) for c in parts[0])  # copy out of the transaction's buffer
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))
