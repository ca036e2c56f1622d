"""``Sequence``: the points tracked under one (run, name, context).

The same class serves as the writer's handle (``run.sequence(...)`` on a live
run: ``append`` skips the lookup ``track`` does) and as a read view (from a
query or ``repo.get_run``).

Write path. ``append``/``track`` put each point as four float64s
``[value, step, epoch, time]`` into an ``array('d')`` with one
``fromlist`` call. We measured the alternatives on this project's machine:
``fromlist`` costs ~80 ns and validates and rolls back atomically, a list of
tuples costs ~35 ns to append but ~140 ns a point to turn into columns at flush,
and ``array.extend`` of a tuple ~165 ns. A missing step or epoch is stored as
NaN; default steps ("last step + 1") are resolved vectorised at flush time, so
the hot path keeps no per-sequence counter.

Only the hot path appends to ``_buf``; taking rows out of it (flush,
``track_many``) happens under the run's ``_buf_lock``, and only whole 4-float rows
are taken, so a flush running in the background thread never sees half a point.
A flush writes the pending items it took (``_taken``), at most ``TXN_BYTES``
blocks per transaction (issue 22, target 8).
"""

from __future__ import annotations

from array import array
from time import time as _time
from typing import TYPE_CHECKING, Any, NamedTuple, overload

import numpy as np

from . import values as _values
from ..storage import blocks as _blocks
from ..storage import locate as _locate
from ..storage.openblock import OpenBlock
from ..storage import records as _rec
from ..storage.keys import run_key
from ..errors import InvalidValueError, RunClosedError, SequenceNotFoundError
from .objects import TrackedObject
from .pending import Columns, _Const, _Parts, _consumed, _drop, _gather_columns, _gather_rows, _row_columns, _whole

if TYPE_CHECKING:
    from .run import Run

_NAN = float("nan")
# Steps within +-2**53 are exact in the float64 hot buffer; others take a slow path.
_EXACT = 1 << 53


class _ClosedBuffer:
    """Stands in for the point buffer of a closed run: appending raises."""

    __slots__ = ("run_id",)

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def fromlist(self, _row) -> None:
        raise RunClosedError(
            f"run {self.run_id} is closed; resume it with Run(repo=..., run_id={self.run_id!r}) to track more"
        )

    def __len__(self) -> int:
        return 0


class SharedRows:
    """A sequence's point buffer once its run keeps one buffer for all its sequences
    (``tracking/rowbuf.py``): appends the row with the sequence's slot to the run's
    buffer (``Sequence.append``, a ``track`` bound before the switch)."""

    __slots__ = ("rows", "slot")

    def __init__(self, rows: array, slot: float) -> None:
        self.rows, self.slot = rows, slot

    def fromlist(self, row: list) -> None:
        row.append(self.slot)
        self.rows.fromlist(row)

    def __len__(self) -> int:
        return 0  # the rows are in the run's buffer


class Points(NamedTuple):
    """Part of a sequence (``seq[10:20]``, ``seq.range(100, 200)``): four aligned columns."""

    steps: np.ndarray
    values: np.ndarray
    epochs: np.ndarray
    timestamps: np.ndarray


class Point(NamedTuple):
    """One point of a sequence (``seq[5]``, ``seq[-1]``)."""

    step: int
    value: float
    epoch: float
    timestamp: float


# Summary keys kept for storage, not shown to users.
_INTERNAL = ("blocks", "sorted_steps")


def _empty_summary() -> dict:
    return {"count": 0, "first_step": None, "last_step": None, "last": None, "min": None,
            "max": None, "first_ts": None, "last_ts": None, "blocks": 0}


class Sequence:
    """The points of one (run, name, context): steps, values, epochs, timestamps."""

    __slots__ = ("_buf", "run", "name", "context", "_id", "_summary", "_pending", "_tail", "_new", "_slot",
                 "_taken")

    def __init__(self, run: "Run", name: str, context: dict, seq_id: int, summary: dict | None,
                 writable: bool) -> None:
        self.run = run
        self.name = name
        self.context = context
        self._id = seq_id
        self._summary = summary if summary is not None else _empty_summary()
        self._buf = array("d") if writable else _ClosedBuffer(run.id)
        self._pending: list[np.ndarray] = []  # (n, 4) row blocks taken from _buf, not yet committed
        self._tail = None  # columns of the last, not yet full block (None: not loaded)
        self._new = summary is None
        self._slot = None  # the index of a live run's float sequence in its run (Run._add)
        self._taken = 0  # pending items the flush in progress writes (Run._take_dirty)
        if summary is not None and summary.get("type", "float") != "float":
            from .object_sequence import become  # images, text, ... (issue 13)

            become(self, writable)

    @classmethod
    def _from_summary(cls, repo, run_id: str, seq_id: int, summary: dict) -> "Sequence":
        """A read view built from a scanned summary, without touching storage."""
        from .run import Run

        summary = dict(summary)
        name, context = summary.pop("name"), summary.pop("context")
        summary.setdefault("blocks", 0)
        # a view whose record loads on first use
        return cls(Run._view(repo, run_id), name, context, seq_id, summary, False)

    # -- writing --------------------------------------------------------------------
    def append(self, value: Any, step: int | None = None, epoch: int | float | None = None) -> None:
        """Append one point; ``step`` defaults to the last step + 1 (0 first)."""
        if type(value) is not float and type(value) is not int:
            if isinstance(value, TrackedObject):
                from .object_sequence import track_object

                return track_object(self, value, step, epoch)
            value = _values.coerce_value(value, self.name, self.context)
        if step is None:
            step = _NAN
        elif type(step) is not int or not -_EXACT <= step <= _EXACT:
            step = _values.coerce_step(step, self.name, self.context)
            if not -_EXACT <= step <= _EXACT:
                return self._append_exact(value, step, epoch)
        now = _time()
        try:
            self._buf.fromlist([value, step, _NAN if epoch is None else epoch, now])
        except (TypeError, OverflowError):
            self._reject(value, step, epoch)
        if now > self.run._due:
            self.run._flush_overdue()  # the flush thread is starved of the GIL (Run._flush_overdue)

    def _reject(self, value, step, epoch) -> None:
        if epoch is not None and not isinstance(epoch, (int, float)):
            raise InvalidValueError(
                f"epoch must be a number, got {type(epoch).__name__} for {_values.describe(self.name, self.context)}"
            ) from None
        _values.coerce_value(value, self.name, self.context)  # raises for a bad value
        raise InvalidValueError(
            f"cannot store step={step!r}, epoch={epoch!r} in {_values.describe(self.name, self.context)}"
        ) from None

    def _append_exact(self, value: float, step: int, epoch: Any) -> None:
        """A step beyond 2**53, which the float64 hot buffer cannot hold exactly:
        kept beside its row as an int64 (the slow path; such steps are rare)."""
        if epoch is not None and not isinstance(epoch, (int, float)):
            self._reject(value, step, epoch)
        with self.run._buf_lock:
            self._take_buffer()  # keep arrival order
            row = np.array([[value, 0.0, _NAN if epoch is None else epoch, _time()]])
            self._pending.append((row, np.array([step], dtype=np.int64)))

    def _take_buffer(self) -> None:
        """Move whole rows from the hot buffer to ``_pending`` (caller holds the run's ``_buf_lock``)."""
        buf = self._buf
        if type(buf) is SharedRows:  # the run's one buffer: every sequence's rows move
            self.run._take_rows()
            return
        n = len(buf) // 4 * 4
        if n:
            rows = buf[:n]  # both slicing and deleting are single C calls: atomic under the GIL
            del buf[:n]
            self._pending.append(np.frombuffer(rows, np.float64).reshape(-1, 4))

    def _queue(self, item: "Columns") -> None:
        """Queue ``track_many``'s columns (caller holds the run's ``_buf_lock``) after
        the points track() put in the hot buffer so far: arrival order."""
        if type(self._buf) is SharedRows:
            # The run's one buffer: the item waits there, at its place among the rows
            # (rowbuf.queue), instead of every sequence's rows moving now.
            self.run._queue_after_rows(self, item)
            return
        self._take_buffer()
        self._pending.append(item)

    def _prepare(self, env, txn, budget: "Budget | None" = None, taken: int | None = None) -> tuple | None:
        """Write this sequence's pending points into ``txn``; return the state to
        adopt once the transaction commits (nothing in memory changes here).

        ``taken``: how many pending items this flush writes (default: all). ``budget``:
        the bytes of blocks this transaction may still put (issue 22, target 8: a flush
        of 100 M points was one transaction holding 900 MB of dirty pages); when it runs
        out the state says how far this transaction got (:class:`Written`), and the
        flush writes the rest in its next transaction."""
        summary = self._summary
        if taken is None:
            taken = len(self._pending)
        if not taken:
            return None
        if budget is not None and budget.left <= 0:
            return LATER
        pending = self._pending[:taken]
        if taken == 1 and self._tail is None and not summary["blocks"] and ONE_BLOCK:
            state = self._prepare_fresh(env, txn, budget, pending[0])
            if state is not None:
                return state
        if any(type(p) is Columns for p in pending):
            # track_many's (or the server's) columns, with any track() rows among them
            # made columns too (those are small: what the hot buffer held).
            new_cols = _gather_columns([p if type(p) is Columns else _row_columns(p) for p in pending],
                                       summary["last_step"])
        else:
            new_cols = _gather_rows(pending, summary["last_step"])
        if new_cols is None:
            # A sequence is stored with its first point: a rejected track() or a handle
            # asked for and never written leaves nothing behind.
            return (summary, self._tail, taken)

        tail = self._tail
        nblocks = summary["blocks"]
        if type(tail) is OpenBlock:  # left by the vectorised flush of many sequences
            tail = tail.columns()
        elif tail is None:
            tail = _blocks.empty()
            if nblocks:  # resumed run: load the last block once
                tail = _rec.get_block(env, txn, self.run.id, self._id, nblocks - 1)
                tail = tuple(np.array(c) for c in tail)
                if len(tail[1]) >= _blocks.CAPACITY:
                    tail = _blocks.empty()
        first_block = nblocks - 1 if len(tail[1]) else nblocks
        # Block by block straight from the pending parts (row views or column arrays):
        # one copy of each point, into a block-sized array at most, and no array the
        # size of the whole flush (a million-point flush would pay a page fault per
        # 4 KiB of such an array before copying a byte).
        old = len(tail[1])
        cap = _blocks.CAPACITY
        run_k = run_key(self.run.id)
        sorted_steps = summary["count"] == 0 or bool(summary.get("sorted_steps", False))
        last_step = summary["last_step"]
        count = sum(map(len, new_cols[1]))
        if old + count <= cap and ONE_BLOCK:
            # One block (a short run's flush, a few sequences' new points): the columns
            # whole and one encode, without the block-by-block readers below (~15 µs
            # of Python for 10 points, a third of a short run's CPU).
            new = [_whole(parts) for parts in new_cols]
            steps = new[0]
            if sorted_steps:
                sorted_steps = (last_step is None or int(steps[0]) >= last_step) and (
                    count < 2 or bool((steps[1:] >= steps[:-1]).all()))
            block = [np.concatenate((tail[i], c)) for i, c in enumerate(new)] if old else new
            data = _blocks.encode(*block)
            if budget is not None:
                budget.left -= len(data)
            _rec.put_blocks(env, txn, [(run_k, self._id, first_block, data)])
            m = float(np.fmin.reduce(new[1]))  # NaN only when every value is NaN
            lo, hi = (m, float(np.fmax.reduce(new[1]))) if m == m else (None, None)
            new_tail = tuple(np.array(c) for c in block) if len(block[1]) < cap else _blocks.empty()
            return self._written(env, txn, summary, new_tail, taken, first_block + 1, int(steps[0]),
                                 float(new[3][0]), count, sorted_steps, int(steps[-1]), float(block[1][-1]),
                                 float(block[3][-1]), lo, hi)
        readers = [_Parts(parts) for parts in new_cols]
        lo = hi = None
        block_no = first_block
        block = tail
        done = 0
        out: list = []  # blocks to put, in one putmulti (storage.records.put_blocks)
        held = 0
        while done < count:
            if budget is not None and budget.left <= 0:
                break  # every block put so far is whole: the tail is empty
            k = min(cap - old if block_no == first_block else cap, count - done)
            new = [r.take(k) for r in readers]
            if done == 0:
                first_step, first_ts = int(new[0][0]), float(new[3][0])
            done += k
            steps = new[0]
            if sorted_steps:
                sorted_steps = (last_step is None or int(steps[0]) >= last_step) and (
                    k < 2 or bool(np.all(steps[1:] >= steps[:-1])))
            last_step = int(steps[-1])
            m = float(np.fmin.reduce(new[1]))  # NaN only when every value is NaN
            if m == m:
                big = float(np.fmax.reduce(new[1]))
                lo, hi = (m, big) if lo is None else (min(lo, m), max(hi, big))
            block = [np.concatenate((tail[i], c)) for i, c in enumerate(new)] if block_no == first_block and old \
                else new
            data = _blocks.encode(*block)
            out.append((run_k, self._id, block_no, data))
            held += len(data)
            if budget is not None:
                budget.left -= len(data)
            elif held >= TXN_BYTES:  # no budget (a replica's write): never hold a whole flush's blocks
                _rec.put_blocks(env, txn, out)
                out, held = [], 0
            block_no += 1
        _rec.put_blocks(env, txn, out)
        # The tail is copied: a view would keep the whole pending part (a client's
        # Arrow batch on a server) alive for a few points.
        new_tail = tuple(np.array(c) for c in block) if len(block[1]) < cap else _blocks.empty()
        written = self._written(env, txn, summary, new_tail, taken, block_no, first_step, first_ts, done,
                                sorted_steps, last_step, float(block[1][-1]), float(block[3][-1]), lo, hi)
        if done == count:
            return written
        items, cut = _consumed(pending, done)
        return Written(written.summary, new_tail, items, cut, False)

    def _prepare_fresh(self, env, txn, budget: "Budget | None", item: Any) -> "Written | None":
        """The first flush of a new sequence whose points are one ``track_many`` call
        without steps, epochs or timestamps (a short run's only flush): its one block
        encoded straight from the values (``blocks.encode_range``, the same bytes as
        ``encode``), no columns built. None: not that case, or more than one block."""
        if type(item) is not Columns or item.missing is not True or type(item.times) is not _Const \
                or type(item.epochs) is not _Const:
            return None
        values = item.values
        n = len(values)
        if n > _blocks.CAPACITY:
            return None
        t, epoch = item.times.value, item.epochs.value
        data = _blocks.encode_range(0, values, epoch, t)
        if data is None:
            return None
        if budget is not None:
            budget.left -= len(data)
        _rec.put_blocks(env, txn, [(run_key(self.run.id), self._id, 0, data)])
        m = float(np.fmin.reduce(values))  # NaN only when every value is NaN
        lo, hi = (m, float(np.fmax.reduce(values))) if m == m else (None, None)
        # (a copy: the values may be a view of a bigger array, a server client's batch)
        tail = (np.arange(n, dtype=np.int64), np.array(values, np.float64), np.full(n, epoch), np.full(n, t)) \
            if n < _blocks.CAPACITY else _blocks.empty()
        return self._written(env, txn, self._summary, tail, 1, 1, 0, t, n, True, n - 1, float(values[-1]), t, lo, hi)

    def _written(self, env, txn, summary: dict, tail: Any, taken: int, blocks: int, first_step: int,
                 first_ts: float, done: int, sorted_steps: bool, last_step: int, last: float, last_ts: float,
                 lo: float | None, hi: float | None) -> "Written":
        """Put the sequence record after ``done`` new points; the state to adopt."""
        new = dict(summary)
        new["sorted_steps"] = sorted_steps
        new["blocks"] = blocks
        if summary["count"] == 0:
            new["first_step"] = first_step
            new["first_ts"] = first_ts
        new["count"] = summary["count"] + done
        new["last_step"] = last_step
        new["last"] = last
        new["last_ts"] = last_ts
        if lo is not None:
            new["min"] = lo if summary["min"] is None else min(summary["min"], lo)
            new["max"] = hi if summary["max"] is None else max(summary["max"], hi)
        _rec.put_sequence(env, txn, self.run.id, self._id, {"name": self.name, "context": self.context, **new})
        return Written(new, tail, taken, 0, True)

    def _adopt(self, state: tuple) -> None:
        """After the commit: the new summary and tail; the items written leave the
        pending list (the first of the rest loses its ``cut`` written points)."""
        self._summary, self._tail, taken = state[:3]
        del self._pending[:taken]
        self._taken = max(0, self._taken - taken)
        if len(state) > 3 and state[3]:
            self._pending[0] = _drop(self._pending[0], state[3])
        self._new = self._summary["count"] == 0

    # -- reading --------------------------------------------------------------------
    @property
    def type(self) -> str:
        """"float" for numbers; object sequences say "image", "text", ... (issue 13)."""
        return "float"

    def _columns(self) -> tuple:
        return self.run._points_of(self)

    def _require_points(self) -> None:
        if self.run._writable:
            self.run.flush()
        if self._summary["count"] == 0:
            raise SequenceNotFoundError(
                f"run {self.run.id} has no {_values.describe(self.name, self.context)}: nothing was "
                "tracked in it yet (the handle can still append)"
            )

    # -- parts of a sequence, reading only the blocks that hold them ---------------------
    @overload
    def __getitem__(self, index: int) -> Point: ...

    @overload
    def __getitem__(self, index: slice) -> Points: ...

    def __getitem__(self, index: int | slice) -> Point | Points:
        """Points by position: ``seq[10:20]`` (a :class:`Points` of arrays), ``seq[-1]``
        (a :class:`Point`). Only the blocks holding them are read."""
        if isinstance(index, slice):
            start, stop, stride = index.indices(self.count)
            if stride == 1:
                return Points(*self._read(lambda r, rec: _locate.read_positions(r, rec["count"], start, max(stop, start))))
            picked = np.arange(start, stop, stride)
            if not len(picked):
                return Points(*_blocks.empty())
            lo, hi = int(picked.min()), int(picked.max()) + 1
            part = self._read(lambda r, rec: _locate.read_positions(r, rec["count"], lo, hi))
            return Points(*(c[picked - lo] for c in part))
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            n = self.count
            i = int(index) + n if index < 0 else int(index)
            if not 0 <= i < n:
                raise IndexError(f"point {index} is out of range: {_values.describe(self.name, self.context)} has {n}")
            cols = self._read(lambda r, rec: _locate.read_positions(r, rec["count"], i, i + 1))
            return Point(int(cols[0][0]), float(cols[1][0]), float(cols[2][0]), float(cols[3][0]))
        raise TypeError(f"sequence indices are integers or slices, not {type(index).__name__}")

    def range(self, start_step: int | None = None, stop_step: int | None = None) -> Points:
        """Points with ``start_step <= step < stop_step`` (None: unbounded), as Aim's
        ``range``; a binary search over blocks finds them when steps never decrease."""
        lo = None if start_step is None else _values.coerce_step(start_step, self.name, self.context, "start_step")
        hi = None if stop_step is None else _values.coerce_step(stop_step, self.name, self.context, "stop_step")
        return Points(*self._read(lambda r, rec: _locate.read_steps(r, bool(rec.get("sorted_steps")), lo, hi)))

    def _read(self, work: Any) -> tuple:
        cols = self.run._part_of(self, work)
        if cols is None:
            raise SequenceNotFoundError(
                f"run {self.run.id} has no {_values.describe(self.name, self.context)} any more (deleted?)"
            )
        return cols

    @property
    def steps(self) -> np.ndarray:
        return self._columns()[0]

    @property
    def values(self) -> np.ndarray:
        return self._columns()[1]

    @property
    def epochs(self) -> np.ndarray:
        """Epochs as float64; NaN where a point was tracked without an epoch."""
        return self._columns()[2]

    @property
    def timestamps(self) -> np.ndarray:
        return self._columns()[3]

    def numpy(self) -> dict[str, np.ndarray]:
        steps, values, epochs, times = self._columns()
        return {"steps": steps, "values": values, "epochs": epochs, "timestamps": times}

    def _stat(self, key: str):
        return self.run._summary_of(self)[key]

    @property
    def count(self) -> int:
        return self._stat("count")

    def __len__(self) -> int:
        return self.count

    @property
    def first_step(self) -> int | None:
        return self._stat("first_step")

    @property
    def last_step(self) -> int | None:
        return self._stat("last_step")

    @property
    def last(self) -> float | None:
        return self._stat("last")

    @property
    def min(self) -> float | None:
        return self._stat("min")

    @property
    def max(self) -> float | None:
        return self._stat("max")

    @property
    def summary(self) -> dict:
        """count, first_step, last_step, last, min, max, first_ts, last_ts."""
        return {k: v for k, v in self.run._summary_of(self).items() if k not in _INTERNAL}

    def __repr__(self) -> str:
        ctx = f", context={self.context}" if self.context else ""
        return f"<Sequence {self.name!r}{ctx} run={self.run.id} count={self._summary['count']}>"


# Whether a flush whose points fit the sequence's current block takes the one-block
# paths of ``_prepare`` (tests turn them off to compare with the block-by-block loop).
ONE_BLOCK = True

# Bytes of numeric blocks one write transaction puts, at most (plus one block): 16 MiB
# is ~1.8 M points of a long sequence at 9 B/point, or 512 full blocks of float64
# timestamps. A flush of more is a series of commits, each a consistent prefix of the
# points (a reader or a crash sees whole blocks and the summary that counts them).
# Bytes, not blocks: a flush of 10,000 metrics rewrites 10,000 small tail blocks, and
# one commit of those is what the group flush promises (a block count split it in 20).
TXN_BYTES = 16 << 20


class Budget:
    """The bytes of blocks a write transaction may still put, shared by the sequences
    (and runs) it writes."""

    __slots__ = ("left",)

    def __init__(self, left: int | None = None) -> None:
        self.left = TXN_BYTES if left is None else left


class Written(NamedTuple):
    """What a ``_prepare`` wrote: the summary and tail to adopt, the pending items
    written whole, the points written of the next one, and whether that was all."""

    summary: dict
    tail: Any
    items: int
    cut: int
    done: bool


# The state of a sequence a transaction's budget did not reach: nothing to adopt.
LATER = Written({}, None, 0, 0, False)
