"""The numeric block: a fixed-capacity columnar chunk of one sequence.

Layout (little-endian)::

    u8  format (1 or 2)   u8  flags        u16 reserved (0)       u32 count
    steps       int64[count]    or int64 start                  if flags & STEPS_RANGE
                                or int64 start, int64 stride    if flags & STEPS_STRIDE
    values      float64[count]
    epochs      float64[count]  or nothing                      if flags & NO_EPOCHS
    timestamps  float64[count]  or float64 one value            if flags & CONST_TIME
                                or the delta section below      if flags & TIME_DELTA

    delta section: f64 first timestamp, i16 exponent e, u8 width w (1, 2 or 4),
                   u8 reserved, u32 k, then int{8w}[count - 1]: the differences
                   between consecutive timestamps in units of 2**e seconds (0 at the
                   k exceptions), u32[k] positions of the exceptions among them and
                   int32[k] their differences

A block is format 2 when it uses STEPS_STRIDE or TIME_DELTA, format 1 otherwise
(so ``track_many`` bulk blocks, one timestamp and steps 0, 1, 2..., are the same
bytes as before). Decoders read both.

A sequence is split into blocks of ``CAPACITY`` points; block numbers start at
0. Only the last block (the tail) is ever rewritten: the writer keeps it in
memory and puts it again at each flush until it is full, then starts the next.
That keeps every write transaction proportional to what was tracked since the
last flush, while reads stay large sequential copies.

The flags cost a few vectorised passes each when a block is encoded and remove
most of the bytes of the common cases: steps 0, 1, 2, ... or every N steps, no
epochs, a bulk ``track_many`` whose points share one timestamp, and ``track()``
timestamps (one ``time.time()`` per point, microseconds apart).

Why timestamp deltas are *exact*: every float64 of magnitude >= m is an integer
multiple of ulp(m), the spacing of floats at m (a power of two). With u = ulp of
the smallest |timestamp| of the block, every difference between two timestamps
of the block is an integer multiple of u; when it fits int32 units it is
computed exactly (it has < 53 significant bits), and the decoder's cumulative
sums (integers < 2**53), scaling by u (a power of two) and adding the first
timestamp (the true result is a float64) are exact too. So a timestamp reads
back bit for bit what was stored, no rounding to microseconds or milliseconds.
Near 1.7e9 s (today) u = 2**-22 s, about 0.24 µs: int8 covers steps up to 30 µs,
int16 up to 7.8 ms, int32 up to 8.5 minutes; the width that makes the block
smallest is chosen, the few larger gaps stored apart as exceptions. A block with
a gap beyond int32 (or a zero, NaN or infinite timestamp) keeps float64 timestamps.
"""

from __future__ import annotations

import math
import struct

import numpy as np

CAPACITY = 4096
FORMAT = 1  # blocks using only the format-1 flags
FORMAT_2 = 2  # blocks using STEPS_STRIDE or TIME_DELTA
FORMATS = (FORMAT, FORMAT_2)
# The repository format (storage/env.py) that marks a repository holding format-2
# blocks: an older runstore refuses it instead of failing on its first block.
REPOSITORY_FORMAT_2 = 3

STEPS_RANGE = 1
NO_EPOCHS = 2
CONST_TIME = 4
TIME_DELTA = 8
STEPS_STRIDE = 16
_NAN_BITS = np.float64(np.nan).view(np.int64)
_KNOWN = STEPS_RANGE | NO_EPOCHS | CONST_TIME | TIME_DELTA | STEPS_STRIDE
_NEW = TIME_DELTA | STEPS_STRIDE

_HEADER = struct.Struct("<BBHI")
HEADER_SIZE = _HEADER.size
_DELTA = struct.Struct("<dhBxI")  # first timestamp, exponent, width, exceptions
_WIDTH = {1: "<i1", 2: "<i2", 4: "<i4"}
_LIMITS = ((1, -(1 << 7), (1 << 7) - 1), (2, -(1 << 15), (1 << 15) - 1), (4, -(1 << 31), (1 << 31) - 1))

Columns = tuple  # (steps int64, values float64, epochs float64, timestamps float64)


def empty() -> Columns:
    return (
        np.empty(0, np.int64),
        np.empty(0, np.float64),
        np.empty(0, np.float64),
        np.empty(0, np.float64),
    )


def time_deltas(times: np.ndarray) -> bytes | None:
    """The TIME_DELTA section of ``times`` (at least two points), or None when the
    timestamps do not fit (a gap beyond int32 units, a zero, NaN or inf): exact.

    The width is the one that makes the section smallest, counting the gaps that
    do not fit it as exceptions (8 bytes each): a ``track()`` loop's points are a
    few µs apart (int8) but a flush, a GC pause or a descheduled process now and
    then leaves a gap of milliseconds, which would otherwise widen the whole block."""
    # (methods and slices, not np.min/np.diff/np.frexp: a block is encoded at every
    # flush of every sequence with new points, and for the few points a flush of a
    # short run or of 10,000 round-robin metrics holds, numpy's Python-level
    # wrappers cost more than the work)
    m = float(np.abs(times).min())
    if not (m > 0.0 and m < math.inf):  # also False for NaN
        return None
    e = math.frexp(m)[1] - 53  # m in [2**(E-1), 2**E): its ulp is 2**(E-53)
    if e < -1074:  # below the subnormal spacing 2**e would read back as 0
        return None
    with np.errstate(all="ignore"):  # inf - inf, overflow: rejected below, not warned about
        q = np.ldexp(times[1:] - times[:-1], -e)  # exact: a power-of-two scaling of exact differences
        lo, hi = float(q.min()), float(q.max())
    if not (-(1 << 31) <= lo and hi < (1 << 31)):  # False for NaN (inf - inf)
        return None
    best, outside = None, None
    for width, wlo, whi in _LIMITS:
        if wlo <= lo and hi <= whi:
            out = None
        else:
            out = np.flatnonzero((q < wlo) | (q > whi))
            if 8 * len(out) > len(q):  # no smaller than the next width: skip the rest
                continue
        size = width * len(q) + (0 if out is None else 8 * len(out))
        if best is None or size < best[1]:
            best, outside = (width, size), out
        if out is None:
            break
    width = best[0]
    if outside is None:
        return _DELTA.pack(float(times[0]), e, width, 0) + q.astype(_WIDTH[width]).tobytes()
    exc = q[outside]
    q[outside] = 0
    return (_DELTA.pack(float(times[0]), e, width, len(outside)) + q.astype(_WIDTH[width]).tobytes()
            + outside.astype("<u4").tobytes() + exc.astype("<i4").tobytes())


def encode(steps: np.ndarray, values: np.ndarray, epochs: np.ndarray, times: np.ndarray) -> bytes:
    n = len(values)
    flags = 0
    parts = []
    steps = np.asarray(steps, np.int64)
    times = np.asarray(times, np.float64)
    d = steps[1:] - steps[:-1]  # int64, wrapping: decode wraps the same way
    stride = int(d[0]) if n > 1 else 1
    uniform = n < 2 or bool((d == stride).all())
    if n and uniform and stride == 1 and int(steps[-1]) - int(steps[0]) == n - 1:
        flags |= STEPS_RANGE
        parts.append(np.int64(steps[0]).tobytes())
    elif n > 2 and uniform:
        flags |= STEPS_STRIDE
        parts.append(struct.pack("<qq", int(steps[0]), stride))
    else:
        parts.append(np.ascontiguousarray(steps, "<i8").tobytes())
    parts.append(np.ascontiguousarray(values, "<f8").tobytes())
    epochs = np.ascontiguousarray(epochs, np.float64)
    # "no epochs" reads back as np.nan: only a column of exactly that NaN may drop
    # out (a NaN with another sign or payload, e.g. x86's inf - inf, is kept as is)
    if bool((epochs.view(np.int64) == _NAN_BITS).all()):
        flags |= NO_EPOCHS
    else:
        parts.append(np.ascontiguousarray(epochs, "<f8").tobytes())
    if n and bool((times == times[0]).all()):
        flags |= CONST_TIME
        parts.append(np.float64(times[0]).tobytes())
    elif n > 1 and (section := time_deltas(times)) is not None:
        flags |= TIME_DELTA
        parts.append(section)
    else:
        parts.append(np.ascontiguousarray(times, "<f8").tobytes())
    fmt = FORMAT_2 if flags & _NEW else FORMAT
    return _HEADER.pack(fmt, flags, 0, n) + b"".join(parts)


_F64 = struct.Struct("<d")
_I64 = struct.Struct("<q")


def encode_range(start: int, values: np.ndarray, epoch: float, time: float) -> bytes | None:
    """``encode``'s bytes for steps ``start, start + 1, ...``, ``values`` and one epoch
    and one timestamp for every point (a ``track_many`` without steps), without
    building those columns or testing them (issue 22, target 3: ``encode`` of a short
    run's 10 points cost ~6 µs, mostly NumPy calls proving what is known here).
    None when ``encode`` would decide otherwise (a NaN timestamp, steps that wrap)."""
    n = len(values)
    if not n or time != time or not -(1 << 63) <= start <= (1 << 63) - n:
        return None
    flags = STEPS_RANGE | CONST_TIME
    if _F64.pack(epoch) == _NAN_BYTES:  # exactly the NaN that reads back: dropped, as encode does
        flags |= NO_EPOCHS
        epochs = b""
    else:
        epochs = _F64.pack(epoch) * n
    return b"".join((_HEADER.pack(FORMAT, flags, 0, n), _I64.pack(start),
                     np.ascontiguousarray(values, "<f8").tobytes(), epochs, _F64.pack(time)))


_NAN_BYTES = np.float64(np.nan).tobytes()


def _header(buf) -> tuple:
    fmt, flags, _, n = _HEADER.unpack_from(buf, 0)
    if fmt not in FORMATS:
        raise ValueError(f"unknown block format {fmt}")
    if flags & ~_KNOWN or (fmt == FORMAT and flags & _NEW):
        raise ValueError(f"block format {fmt} with unknown flags {flags:#x}")
    return flags, n


def _read_deltas(buf, pos: int, n: int, out: np.ndarray) -> int:
    """Timestamps of a TIME_DELTA section at ``pos`` into ``out`` (n points); returns
    the position after it.

    The cumulative sum runs on integers (a float64 cumulative sum is latency-bound,
    several times slower), int32 whenever the sums cannot overflow it (int32 also
    converts to float64 faster than int64), into a block-sized array that stays in
    cache; one vectorised pass then scales it into ``out``, another adds the first
    time. Exact: integers below 2**53 times a power of two, plus a float64."""
    first, e, width, k = _DELTA.unpack_from(buf, pos)
    if width not in _WIDTH or n < 2 or k > n - 1:
        raise ValueError(f"timestamp deltas of width {width} with {k} exceptions for {n} points")
    pos += _DELTA.size
    deltas = np.frombuffer(buf, _WIDTH[width], n - 1, pos)
    pos += width * (n - 1)
    if k:
        where = np.frombuffer(buf, "<u4", k, pos)
        exc = np.frombuffer(buf, "<i4", k, pos + 4 * k)
        pos += 8 * k
        small = width < 4 and sum(map(abs, exc.tolist())) + (n - 1) * (1 << (8 * width - 1)) < 1 << 31
        acc = deltas.astype(np.int32 if small else np.int64)
        acc[where] = exc
        np.cumsum(acc, out=acc)
    else:
        acc = np.cumsum(deltas, dtype=np.int32 if width < 4 and n <= 1 << 16 else np.int64)
    out[0] = 0.0
    np.multiply(acc, math.ldexp(1.0, e), out=out[1:])
    out += first
    return pos


def decode(buf) -> Columns:
    """Decode one block. The arrays may be views into ``buf``: copy them before
    the transaction that produced ``buf`` ends."""
    flags, n = _header(buf)
    pos = HEADER_SIZE
    if flags & STEPS_RANGE:
        start = np.frombuffer(buf, "<i8", 1, pos)[0]
        steps = np.arange(start, start + n, dtype=np.int64)
        pos += 8
    elif flags & STEPS_STRIDE:
        start, stride = np.frombuffer(buf, "<i8", 2, pos)
        steps = np.arange(n, dtype=np.int64) * stride + start
        pos += 16
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
    elif flags & TIME_DELTA:
        times = np.empty(n)
        pos = _read_deltas(buf, pos, n, times)
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
    headers = [_header(raw) for raw in raws]
    total = sum(h[1] for h in headers)
    cols = (np.empty(total, np.int64), np.empty(total, np.float64), np.empty(total, np.float64),
            np.empty(total, np.float64))
    at = 0
    for raw, (flags, n) in zip(raws, headers):
        _decode_into(raw, flags, n, cols, at)
        at += n
    return cols


def _decode_into(raw, flags: int, n: int, cols: Columns, at: int) -> None:
    """One block's ``n`` points into ``cols[:][at:at + n]``."""
    steps, values, epochs, times = cols
    end = at + n
    pos = HEADER_SIZE
    if flags & (STEPS_RANGE | STEPS_STRIDE):
        ar = _ARANGE if n <= len(_ARANGE) else np.arange(n, dtype=np.int64)
        if flags & STEPS_RANGE:
            start = int(np.frombuffer(raw, "<i8", 1, pos)[0])
            np.add(ar[:n], start, out=steps[at:end])
            pos += 8
        else:
            start, stride = np.frombuffer(raw, "<i8", 2, pos)
            np.multiply(ar[:n], stride, out=steps[at:end])
            steps[at:end] += start
            pos += 16
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
    elif flags & TIME_DELTA:
        pos = _read_deltas(raw, pos, n, times[at:end])
    else:
        times[at:end] = np.frombuffer(raw, "<f8", n, pos)
        pos += 8 * n
    if pos != len(raw):
        raise ValueError(f"block is {len(raw)} bytes, expected {pos} for {n} points")


def concat(parts: list) -> Columns:
    if not parts:
        return empty()
    if len(parts) == 1:
        return tuple(np.array(c) for c in parts[0])  # copy out of the transaction's buffer
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))
