"""Curve downsampling for the explorer, vectorised over many sequences at once.

Why buckets in *step* space with power-of-two widths: a live curve grows at its
end.  If bucket edges depended on the number of points (``linspace`` over the
current length, as ``SequenceCollection.downsample`` does), every new point
would move every edge and the whole curve would jitter on each refresh.  With
edges at multiples of ``w = 2**k`` steps, a bucket that is complete never
changes, so a live client keeps everything before the last bucket and asks only
for points ``since`` that bucket's start (its *cursor*).  ``w`` only changes
when the curve doubles in length; then the client gets a full reply.

Each bucket keeps its first, last, minimum and maximum point (M4-style), so no
spike is lost, and at most ``4 * buckets`` points leave the server.

Smoothing (debiased EMA, TensorBoard's formula) runs on the full-resolution
values before downsampling, so smoothed curves do not depend on zoom.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

X_MODES = ("step", "epoch", "relative", "wall")


def bucket_width(span: float, points: int) -> int:
    """The smallest power of two ``w`` such that ``span`` steps make at most
    ``points / 4`` buckets of width ``w`` (1 when every point fits)."""
    buckets = max(1, points // 4)
    if span <= points:
        return 1
    return 1 << max(0, math.ceil(math.log2(span / buckets)))


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average of the finite values (non-finite ones are
    kept as they are and skipped): ``s_t = w*s_{t-1} + (1-w)*y_t``, divided by
    ``1 - w**(t+1)`` so the start is not pulled towards zero."""
    if not 0 < weight < 1 or len(values) == 0:
        return values
    from scipy.signal import lfilter  # a C loop: ~20 ns a point

    y = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(y)
    out = y.copy()
    yf = y[finite] if not finite.all() else y
    if len(yf) == 0:
        return out
    s = lfilter([1.0 - weight], [1.0, -weight], yf)
    # the same filter over ones gives the debiasing denominator 1 - w**(t+1), five times
    # cheaper than the power itself
    s /= lfilter([1.0 - weight], [1.0, -weight], np.ones(len(yf)))
    if finite.all():
        return s
    out[finite] = s
    return out


def concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)


def pick_indices(seq_of_point: np.ndarray, steps: np.ndarray, y: np.ndarray, w: int) -> np.ndarray:
    """Indices (into the concatenated points, sorted) of the first, last, min and max
    point of every (sequence, bucket) pair.  Points must be grouped by sequence and
    sorted by step inside each sequence."""
    n = len(steps)
    if n == 0 or w <= 1:
        return np.arange(n)
    bucket = np.floor_divide(steps, w)
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(bucket[1:], bucket[:-1], out=change[1:])
    change[1:] |= seq_of_point[1:] != seq_of_point[:-1]
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], n) - 1
    counts = ends - starts + 1
    index = np.arange(n)
    big = np.iinfo(np.int64).max
    picks = [starts, ends]
    for reduce in (np.fmin, np.fmax):
        # the index of the first point equal to the bucket's min (max): fmin/fmax skip NaN,
        # and a bucket of NaN only keeps its first and last point
        extreme = reduce.reduceat(y, starts)
        hit = np.where(y == np.repeat(extreme, counts), index, big)
        where = np.minimum.reduceat(hit, starts)
        picks.append(where[where != big])
    # a mask instead of np.unique: linear, not a hash or sort of a million picks
    keep = np.zeros(n, dtype=bool)
    for part in picks:
        keep[part] = True
    return np.flatnonzero(keep)


def bucket_means(seq_of_point: np.ndarray, steps: np.ndarray, x: np.ndarray, y: np.ndarray, w: int):
    """Per (sequence, bucket): (sequence, bucket number, mean x, mean y), NaN-aware."""
    n = len(steps)
    if n == 0:
        e = np.empty(0)
        return e.astype(np.int64), e.astype(np.int64), e, e
    bucket = np.floor_divide(steps, max(w, 1))
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(bucket[1:], bucket[:-1], out=change[1:])
    change[1:] |= seq_of_point[1:] != seq_of_point[:-1]
    starts = np.flatnonzero(change)
    ok = np.isfinite(y)
    cnt = np.add.reduceat(ok.astype(np.float64), starts)
    total = np.add.reduceat(np.where(ok, y, 0.0), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_y = total / cnt
    mean_x = np.add.reduceat(x, starts) / np.diff(np.append(starts, n))
    return seq_of_point[starts], bucket[starts], mean_x, mean_y


def group_curves(seq_group: np.ndarray, seq_ids: np.ndarray, buckets: np.ndarray, mx: np.ndarray,
                 my: np.ndarray, band: str = "minmax"):
    """Aggregate bucket means of member sequences per (group, bucket): mean curve and a
    band (min/max across members, or mean +- one standard deviation).

    Returns (group, x, y, lo, hi, members) arrays sorted by group then bucket."""
    g = seq_group[seq_ids]
    order = np.lexsort((buckets, g))
    g, b, mx, my = g[order], buckets[order], mx[order], my[order]
    n = len(g)
    if n == 0:
        e = np.empty(0)
        return g, e, e, e, e, e
    change = np.empty(n, dtype=bool)
    change[0] = True
    change[1:] = (g[1:] != g[:-1]) | (b[1:] != b[:-1])
    starts = np.flatnonzero(change)
    ok = np.isfinite(my)
    cnt = np.add.reduceat(ok.astype(np.float64), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.add.reduceat(np.where(ok, my, 0.0), starts) / cnt
        x = np.add.reduceat(mx, starts) / np.diff(np.append(starts, n))
        if band == "std":
            sq = np.add.reduceat(np.where(ok, my * my, 0.0), starts) / cnt
            std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
            lo, hi = mean - std, mean + std
        else:
            lo = np.fmin.reduceat(np.where(ok, my, np.nan), starts)
            hi = np.fmax.reduceat(np.where(ok, my, np.nan), starts)
    return g[starts], x, mean, lo, hi, cnt


def x_values(mode: str, steps: np.ndarray, epochs: np.ndarray, times: np.ndarray, t0: float) -> np.ndarray:
    """The x coordinate of each point for an x mode (float64: JS does arithmetic on it)."""
    if mode == "step":
        return steps.astype(np.float64)
    if mode == "epoch":
        return epochs.astype(np.float64, copy=False)
    if mode == "relative":
        return times - t0
    return times.astype(np.float64, copy=False)


def sorted_by_step(steps: np.ndarray, *others: np.ndarray) -> Iterable[np.ndarray]:
    """Arrays reordered by step when a sequence was tracked out of order (rare)."""
    if len(steps) < 2 or bool(np.all(steps[1:] >= steps[:-1])):
        return (steps, *others)
    order = np.argsort(steps, kind="stable")
    return (steps[order], *(o[order] for o in others))
