"""A sequence's pending points between ``track``/``track_many`` and a flush.

Pending items are ``track()`` rows (an ``(n, 4)`` float64 array, or rows with the
steps they could not carry exactly), or :class:`Columns` from ``track_many`` (whose
epochs and timestamps may be one repeated value, :class:`_Const`, and whose steps
may be left to number). A flush gathers them into columns (``_gather_rows``,
``_gather_columns``), numbers the steps not given from the last stored one
(``_resolve_steps``), and, when a transaction's budget stops it part-way, keeps the
rest (``_consumed``, ``_drop``). Split out of sequence.py, which writes the blocks.
"""

from __future__ import annotations

from time import time as _time
from typing import Any

import numpy as np

_NAN = float("nan")


def _resolve_steps(raw: np.ndarray, last_step: int | None, exact: tuple | None = None) -> np.ndarray:
    """Replace NaN (step not given) by the previous step + 1, vectorised, in int64.

    ``[nan, nan, 10, nan, 5, nan]`` after last step 3 gives ``[4, 5, 10, 11, 5, 6]``.
    ``exact`` is (int64 steps, mask): steps the float64 rows could not carry
    exactly, where the mask is set.
    """
    given, missing = _given_steps(raw)
    if exact is not None:
        steps, has = exact
        given[has] = steps[has]
        missing &= ~has
    return _resolve_given(given, missing, last_step)


def _given_steps(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A float64 step column (NaN: not given) as int64 steps (0 where not given) and
    the mask of the steps not given."""
    missing = np.isnan(raw)
    return np.where(missing, 0, raw).astype(np.int64), missing


def _item_len(item: Any) -> int:
    """Points of a pending item: Columns, (n, 4) rows, or (rows, exact int64 steps)."""
    return len(item[0]) if type(item) is tuple else len(item)


def _consumed(pending: list, points: int) -> tuple[int, int]:
    """(items written whole, points written of the next) for ``points`` written."""
    items = 0
    for item in pending:
        n = _item_len(item)
        if points < n:
            break
        points -= n
        items += 1
    return items, points


def _drop(item: Any, k: int) -> Any:
    """A pending item without its first ``k`` points (views: nothing is copied)."""
    if type(item) is tuple:
        return (item[0][k:], item[1][k:])
    if type(item) is not Columns:
        return item[k:]
    missing = item.missing if item.missing is None or item.missing is True else item.missing[k:]
    return Columns(None if item.steps is None else item.steps[k:], missing, item.values[k:],
                   _tail_of(item.epochs, k), _tail_of(item.times, k))


def _tail_of(col: Any, k: int) -> Any:
    return _Const(col.value, col.n - k) if type(col) is _Const else col[k:]


def columns_of(values: np.ndarray, steps: np.ndarray | None, epochs: np.ndarray | None,
               timestamps: np.ndarray | None = None) -> "Columns | None":
    """``track_many``'s validated arrays as :class:`Columns` to queue: one copy of the
    values (the caller may reuse its array), no (n, 4) rows to pack and unpack again
    at flush (issue 22, target 5: a million-point call spent 0.2 s packing rows, the
    flush as long gathering them again); default epochs and timestamps not made."""
    n = len(values)
    if not n:
        return None
    epochs = _Const(_NAN, n) if epochs is None else np.array(epochs, dtype=np.float64)
    times = _Const(_time(), n) if timestamps is None else np.array(timestamps, dtype=np.float64)
    if steps is None:
        return Columns(None, True, np.array(values, dtype=np.float64), epochs, times)
    # int64 exactly (validated integral and in range by track_many)
    return Columns(np.array(steps, dtype=np.int64), None, np.array(values, dtype=np.float64), epochs, times)


class Columns:
    """Points queued by a writer that has them as columns already (the server's
    replica writer, ``runstore.tracking.replica.append``): no row packing.

    ``missing`` marks steps not given (resolved to the previous step + 1 at
    flush): None when every step was given, True when none was."""

    __slots__ = ("steps", "missing", "values", "epochs", "times")

    def __init__(self, steps: np.ndarray, missing: Any, values: np.ndarray, epochs: np.ndarray,
                 times: np.ndarray) -> None:
        self.steps, self.missing, self.values, self.epochs, self.times = steps, missing, values, epochs, times

    def __len__(self) -> int:
        return len(self.values)


class _Const:
    """``n`` copies of one float (track_many's default epoch or timestamp), made a
    block at a time instead of an array the size of the call."""

    __slots__ = ("value", "n")

    def __init__(self, value: float, n: int) -> None:
        self.value, self.n = value, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, part: slice) -> np.ndarray:
        lo, hi, _ = part.indices(self.n)
        return np.full(hi - lo, self.value)


def _row_columns(item: Any) -> Columns:
    """A pending item of row form (track()'s (n, 4) rows, or (rows, exact int64 steps))
    as :class:`Columns`."""
    if type(item) is tuple:
        rows, exact = item
        return Columns(exact, None, rows[:, 0], rows[:, 2], rows[:, 3])
    steps, missing = _given_steps(item[:, 1])
    return Columns(steps, True if missing.all() else None if not missing.any() else missing,
                   item[:, 0], item[:, 2], item[:, 3])


def _gather_rows(pending: list, last_step: int | None) -> tuple | None:
    """(steps, values, epochs, times) part lists of row-block pending points."""
    exact = None
    if any(type(p) is tuple for p in pending):
        # Chunks with int64 steps (beyond 2**53, or track_many's integer steps).
        exact = (np.concatenate([p[1] if type(p) is tuple else np.zeros(len(p), np.int64) for p in pending]),
                 np.concatenate([np.full(len(p[0]) if type(p) is tuple else len(p), type(p) is tuple)
                                 for p in pending]))
        pending = [p[0] if type(p) is tuple else p for p in pending]
    rows = pending[0] if len(pending) == 1 else np.concatenate(pending)
    if not len(rows):
        return None
    steps = _resolve_steps(rows[:, 1], last_step, exact)
    return [steps], [rows[:, 0]], [rows[:, 2]], [rows[:, 3]]


def _gather_columns(pending: list, last_step: int | None) -> tuple | None:
    """The same from :class:`Columns` parts (track_many's, the server's replica
    writer's, or track() rows made columns)."""
    if not any(len(p) for p in pending):
        return None
    if all(p.missing is True for p in pending):  # no step given anywhere: last + 1, + 2, ...
        n = sum(len(p) for p in pending)
        steps = [_StepRange(0 if last_step is None else last_step + 1, n)]
    elif all(p.missing is None for p in pending):
        steps = [p.steps for p in pending]
    else:
        given = np.concatenate([np.zeros(len(p), np.int64) if p.steps is None else p.steps for p in pending])
        missing = np.concatenate([np.full(len(p), bool(p.missing)) if p.missing is None or p.missing is True
                                  else p.missing for p in pending])
        steps = [_resolve_given(given, missing, last_step)]
    return (steps, [p.values for p in pending], [p.epochs for p in pending], [p.times for p in pending])


def _resolve_given(given: np.ndarray, missing: np.ndarray, last_step: int | None) -> np.ndarray:
    """int64 ``given`` steps with the ``missing`` ones made the previous step + 1."""
    if not missing.any():
        return given
    idx = np.arange(len(given))
    anchor = np.where(missing, -1, idx)
    np.maximum.accumulate(anchor, out=anchor)
    prev = np.int64(-1 if last_step is None else last_step)
    base = np.where(anchor >= 0, given[np.maximum(anchor, 0)], prev)
    return base + (idx - anchor)


class _StepRange:
    """Steps start, start + 1, ... of ``n`` points, made a block at a time."""

    __slots__ = ("start", "n")

    def __init__(self, start: int, n: int) -> None:
        self.start, self.n = start, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, part: slice) -> np.ndarray:
        lo, hi, _ = part.indices(self.n)
        return np.arange(self.start + lo, self.start + hi, dtype=np.int64)


def _whole(parts: list) -> np.ndarray:
    """A column of several parts (arrays, row views, _StepRange, _Const) as one array."""
    if len(parts) == 1:
        part = parts[0]
        return part if type(part) is np.ndarray else part[0:len(part)]
    return np.concatenate([p if type(p) is np.ndarray else p[0:len(p)] for p in parts])


class _Parts:
    """Consecutive pieces of a column of several parts (views where a piece lies in one part)."""

    __slots__ = ("parts", "i", "at", "total")

    def __init__(self, parts: list) -> None:
        self.parts = [p for p in parts if len(p)]
        self.i = self.at = 0
        self.total = sum(len(p) for p in self.parts)

    def take(self, n: int) -> np.ndarray:
        pieces = []
        while n:
            part = self.parts[self.i]
            k = min(n, len(part) - self.at)
            pieces.append(part[self.at:self.at + k])
            self.at += k
            n -= k
            if self.at == len(part):
                self.i += 1
                self.at = 0
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
