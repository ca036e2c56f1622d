"""The open block: a sequence's last, unfinished block as its writer keeps it
between flushes, grown by many sequences' new points in one vectorised pass
(issue 22, target 6).

A run tracking 10,000 metrics round-robin flushes, every interval, 10,000 tails
of up to a few hundred points plus a few dozen new points each. Re-encoding every
tail with ``blocks.encode`` costs ~100 µs of Python per sequence and a pass over
all its points (~1 s per flush, growing with the tails, all under the GIL the
training loop needs). An :class:`OpenBlock` keeps what ``encode`` decided about
its points so far (a step range or stride, no epochs, one timestamp, the
timestamp delta exponent and how many differences fall beyond int8 and int16)
and the byte sections that decision needs; :func:`grow` extends many blocks at
once: the new points' steps, epochs and timestamps are compared and reduced
segment by segment (``np.logical_and.reduceat``, ``np.minimum.reduceat``, ...)
and only their bytes are appended. ``encode`` then joins the sections.

The bytes are exactly those ``blocks.encode`` gives for the block's points (a
property test compares them after every growth): readers and ``check()`` do not
know which path wrote a block.

Growing never changes the block it starts from: the new block shares its byte
buffers, cut back to the old length and extended, so a flush whose transaction is
retried or fails starts again from the committed block (the writer adopts the new
one only after the commit).
"""

from __future__ import annotations

import math
import struct

import numpy as np

from . import blocks as _b

_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_I64X2 = struct.Struct("<qq")
_NAN8 = np.float64(np.nan).tobytes()
_INT8 = (-(1 << 7), (1 << 7) - 1)
_INT16 = (-(1 << 15), (1 << 15) - 1)


class OpenBlock:
    """The points of an unfinished block and what ``blocks.encode`` decides about them.

    Byte sections (bytearrays, exactly ``n`` points long): ``values`` and ``times``
    always; ``steps`` once they stop being a range or stride (None before);
    ``epochs`` once one is not the NaN that reads back (None before); ``q``, the
    timestamp differences in units of 2**``e`` as int32, while they fit int32."""

    __slots__ = ("n", "first_step", "last_step", "stride", "uniform", "no_epochs", "first_t", "last_t", "const",
                 "m", "e", "deltas", "lo", "hi", "k1", "k2", "steps", "values", "epochs", "times", "q")

    def __init__(self) -> None:
        self.n = 0
        self.first_step = self.last_step = 0
        self.stride = 1
        self.uniform = self.no_epochs = self.const = self.deltas = True
        self.first_t = self.last_t = 0.0
        self.m, self.e = math.inf, 0
        self.lo, self.hi, self.k1, self.k2 = math.inf, -math.inf, 0, 0
        self.steps = self.epochs = None
        self.values, self.times, self.q = bytearray(), bytearray(), bytearray()

    def __len__(self) -> int:
        return self.n

    @classmethod
    def of(cls, cols: tuple) -> "OpenBlock":
        """An open block holding ``cols`` (steps, values, epochs, timestamps)."""
        if not len(cols[1]):
            return cls()
        return grow([cls()], *cols, np.array([0, len(cols[1])]))[0]

    def columns(self) -> tuple:
        """The points as four new arrays (steps int64, values, epochs, timestamps)."""
        n = self.n
        if self.steps is not None:
            steps = np.frombuffer(self.steps, np.int64, n).copy()
        else:
            steps = np.arange(n, dtype=np.int64) * np.int64(self.stride) + np.int64(self.first_step)
        epochs = np.full(n, np.nan) if self.epochs is None else np.frombuffer(self.epochs, np.float64, n).copy()
        return (steps, np.frombuffer(self.values, np.float64, n).copy(), epochs,
                np.frombuffer(self.times, np.float64, n).copy())

    def encode(self) -> bytes:
        """The block's bytes: ``blocks.encode(*self.columns())``."""
        n = self.n
        flags = 0
        parts = [b""]
        if self.uniform and self.stride == 1 and self.last_step >= self.first_step:
            flags |= _b.STEPS_RANGE
            parts.append(_I64.pack(self.first_step))
        elif self.uniform and n > 2:
            flags |= _b.STEPS_STRIDE
            parts.append(_I64X2.pack(self.first_step, self.stride))
        else:
            parts.append(_head(self.steps, 8 * n) if self.steps is not None else _steps_bytes(self, n))
        parts.append(_head(self.values, 8 * n))
        if self.no_epochs:
            flags |= _b.NO_EPOCHS
        else:
            parts.append(_head(self.epochs, 8 * n))
        if self.const:
            flags |= _b.CONST_TIME
            parts.append(_F64.pack(self.first_t))
        elif n > 1 and self.deltas:
            flags |= _b.TIME_DELTA
            parts.extend(_delta_section(self))
        else:
            parts.append(_head(self.times, 8 * n))
        parts[0] = _b._HEADER.pack(_b.FORMAT_2 if flags & _b._NEW else _b.FORMAT, flags, 0, n)
        return b"".join(parts)


def _head(buf: bytearray, size: int) -> bytearray:
    """``buf``'s first ``size`` bytes (a block grown from this one but not adopted
    may have appended to the shared buffer)."""
    return buf if len(buf) == size else buf[:size]


def _steps_bytes(blk: OpenBlock, n: int) -> bytes:
    return (np.arange(n, dtype=np.int64) * np.int64(blk.stride) + np.int64(blk.first_step)).tobytes()


def _width(qn: int, k1: int, k2: int) -> tuple[int, int]:
    """(width, exceptions) that make the delta section smallest, as ``blocks.time_deltas``
    chooses: widths in order, one skipped when its exceptions outnumber an eighth of
    the differences, a later one taken only when strictly smaller."""
    best = None
    for width, k in ((1, k1), (2, k2), (4, 0)):
        if 8 * k > qn:
            continue
        size = width * qn + 8 * k
        if best is None or size < best[2]:
            best = (width, k, size)
        if not k:
            break
    return best[0], best[1]


def _delta_section(blk: OpenBlock) -> list:
    qn = blk.n - 1
    width, k = _width(qn, blk.k1, blk.k2)
    q = np.frombuffer(blk.q, np.int32, qn)
    head = _b._DELTA.pack(blk.first_t, blk.e, width, k)
    if not k:
        return [head, q.astype(_b._WIDTH[width]).tobytes()]
    lo, hi = _INT8 if width == 1 else _INT16
    out = np.flatnonzero((q < lo) | (q > hi))
    cut = q.copy()
    cut[out] = 0
    return [head, cut.astype(_b._WIDTH[width]).tobytes(), out.astype("<u4").tobytes(), q[out].astype("<i4").tobytes()]


def grow(blocks: list, steps: np.ndarray, values: np.ndarray, epochs: np.ndarray, times: np.ndarray,
         bounds: np.ndarray) -> list:
    """New open blocks: ``blocks[i]`` followed by the points ``[bounds[i], bounds[i + 1])``
    of the flat columns (int64 steps, float64 values, epochs, timestamps; at least
    one point each). The blocks given are left as they were."""
    steps = np.ascontiguousarray(steps, np.int64)
    values = np.ascontiguousarray(values, np.float64)
    epochs = np.ascontiguousarray(epochs, np.float64)
    times = np.ascontiguousarray(times, np.float64)
    bounds = np.asarray(bounds, np.int64)
    starts, ends = bounds[:-1], bounds[1:]
    nn = ends - starts
    nb, total = len(nn), int(bounds[-1])
    seg = np.repeat(np.arange(nb), nn)

    ints = np.array([(b.n, b.first_step, b.last_step, b.stride, b.e, b.k1, b.k2,
                      b.uniform | b.no_epochs << 1 | b.const << 2 | b.deltas << 3) for b in blocks], np.int64)
    nt, first_step_t, last_step_t, stride_t, e_t, k1_t, k2_t, bits = ints.T
    floats = np.array([(b.first_t, b.last_t, b.m, b.lo, b.hi) for b in blocks], np.float64)
    first_t_t, last_t_t, m_t, lo_t, hi_t = floats.T
    has_tail = nt > 0

    # Each new point's predecessor in its block (the tail's last point for the first).
    has_prev = np.ones(total, bool)
    has_prev[starts] = has_tail
    prev = np.empty(total, np.int64)
    prev[1:] = steps[:-1]
    prev[starts] = last_step_t
    d = steps - prev  # int64, wrapping as encode's differences do
    second = np.minimum(starts + 1, total - 1)
    stride = np.where(nt >= 2, stride_t, np.where(nt == 1, d[starts], np.where(nn > 1, d[second], 1)))
    uniform = (bits & 1).astype(bool) & np.logical_and.reduceat(~has_prev | (d == stride[seg]), starts)
    first_step = np.where(has_tail, first_step_t, steps[starts])
    last_step = steps[ends - 1]

    no_epochs = (bits & 2).astype(bool) & np.logical_and.reduceat(epochs.view(np.int64) == _b._NAN_BITS, starts)

    first_t = np.where(has_tail, first_t_t, times[starts])
    const = (bits & 4).astype(bool) & np.logical_and.reduceat(times == first_t[seg], starts)
    m = np.minimum(m_t, np.minimum.reduceat(np.abs(times), starts))  # NaN propagates: no deltas
    valid = (m > 0.0) & (m < np.inf) & (bits & 8).astype(bool)
    e = np.zeros(nb, np.int64)
    e[valid] = np.frexp(m[valid])[1].astype(np.int64) - 53
    valid &= e >= -1074  # below the subnormal spacing 2**e would read back as 0
    # A smaller timestamp moved the exponent: the tail's differences are rescaled below.
    rescale = valid & (nt >= 2) & (e != e_t)
    tprev = np.empty(total, np.float64)
    tprev[1:] = times[:-1]
    tprev[starts] = last_t_t
    with np.errstate(all="ignore"):  # inf - inf, overflow: rejected by the int32 bound
        q = np.ldexp(times - tprev, -e[seg])
    q = np.where(has_prev & valid[seg], q, 0.0)
    counted = has_prev & valid[seg]
    lo = np.minimum(np.where(rescale, np.inf, lo_t), np.minimum.reduceat(np.where(counted, q, np.inf), starts))
    hi = np.maximum(np.where(rescale, -np.inf, hi_t), np.maximum.reduceat(np.where(counted, q, -np.inf), starts))
    k1 = np.add.reduceat((q < _INT8[0]) | (q > _INT8[1]), starts, dtype=np.int64) + np.where(rescale, 0, k1_t)
    k2 = np.add.reduceat((q < _INT16[0]) | (q > _INT16[1]), starts, dtype=np.int64) + np.where(rescale, 0, k2_t)
    fits = (lo >= -(1 << 31)) & (hi < (1 << 31))  # False for NaN
    qi = np.where(np.abs(q) < (1 << 31), q, 0.0).astype(np.int32)

    mv = [memoryview(c).cast("B") for c in (steps, values, epochs, times, qi)]
    out = []
    cols = (nt.tolist(), nn.tolist(), bounds.tolist(), first_step.tolist(), last_step.tolist(), stride.tolist(),
            uniform.tolist(), no_epochs.tolist(), first_t.tolist(), times[ends - 1].tolist(), const.tolist(),
            m.tolist(), e.tolist(), (valid & fits).tolist(), rescale.tolist(), lo.tolist(), hi.tolist(),
            k1.tolist(), k2.tolist())
    for j, (old, t, k, a, fs, ls, st, un, ne, ft, lt, co, mm, ee, dv, rs, lo_j, hi_j, k1_j, k2_j) in enumerate(
            zip(blocks, *cols[:2], cols[2][:-1], *cols[3:])):
        z = a + k
        blk = OpenBlock.__new__(OpenBlock)
        blk.n = t + k
        blk.first_step, blk.last_step, blk.stride, blk.uniform = fs, ls, st, un
        blk.no_epochs, blk.first_t, blk.last_t, blk.const = ne, ft, lt, co
        blk.m, blk.e = mm, ee
        blk.values = _extend(old.values, 8 * t, mv[1][8 * a:8 * z])
        blk.times = _extend(old.times, 8 * t, mv[3][8 * a:8 * z])
        if un:
            blk.steps = None
        else:
            base = old.steps if old.steps is not None else bytearray(_steps_bytes(old, t))
            blk.steps = _extend(base, 8 * t, mv[0][8 * a:8 * z])
        if ne:
            blk.epochs = None
        else:
            base = old.epochs if old.epochs is not None else bytearray(_NAN8 * t)
            blk.epochs = _extend(base, 8 * t, mv[2][8 * a:8 * z])
        qa = a if t else a + 1  # the first point of a new block has no difference
        if rs:
            lo_j, hi_j, k1_j, k2_j, dv = _rescaled(blk, old, t, ee, q[qa:z], lo_j, hi_j, k1_j, k2_j)
        elif dv:
            blk.q = _extend(old.q, 4 * max(t - 1, 0), mv[4][4 * qa:4 * z])
        else:
            blk.q = None
        blk.deltas, blk.lo, blk.hi, blk.k1, blk.k2 = dv, lo_j, hi_j, k1_j, k2_j
        out.append(blk)
    return out


def _extend(buf: bytearray, keep: int, new) -> bytearray:
    """``buf`` cut back to ``keep`` bytes (what a grown-but-not-adopted block may
    have added past them) and extended by ``new``."""
    if len(buf) != keep:
        del buf[keep:]
    buf += new
    return buf


def _rescaled(blk: OpenBlock, old: OpenBlock, t: int, e: int, qnew: np.ndarray, lo: float, hi: float, k1: int,
              k2: int) -> tuple:
    """The tail's differences in the new, smaller unit 2**e (exact: a power-of-two
    scaling of integers), with the new ones: (lo, hi, k1, k2, deltas valid)."""
    with np.errstate(over="ignore"):  # beyond float64: rejected by the int32 bound below
        tail = np.ldexp(np.frombuffer(old.q, np.int32, t - 1).astype(np.float64), old.e - e)
    allq = np.concatenate((tail, qnew))
    lo, hi = min(lo, float(allq.min())), max(hi, float(allq.max()))
    if not (-(1 << 31) <= lo and hi < (1 << 31)):
        blk.q = None
        return lo, hi, k1, k2, False
    k1 = int(np.count_nonzero((tail < _INT8[0]) | (tail > _INT8[1]))) + k1
    k2 = int(np.count_nonzero((tail < _INT16[0]) | (tail > _INT16[1]))) + k2
    blk.q = bytearray(allq.astype(np.int32).tobytes())
    return lo, hi, k1, k2, True
