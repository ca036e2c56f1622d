"""Sequences of objects (images, text, distributions, figures, audio, arrays).

A :class:`~runstore.sequence.Sequence` becomes an :class:`ObjectSequence` when
its first value is an object (``track(Image(...))``) or when its stored record
says so (``"type"``); the scalar hot path is not touched: a float tracked into
an object sequence lands in a buffer whose ``fromlist`` raises.

Writing. ``track`` appends (object, step, epoch, time) to a list and returns;
a tiny object (an input of at most ``ENCODE_AT_TRACK`` = 1 KiB: a 16x16 thumbnail,
a 28x28 grey digit, a short text, a small array) is encoded there and then,
anything bigger (and every figure and distribution) by the flush thread *before*
it takes the run's lock (``encode_ahead``) and before the write transaction; the
flush then writes the payloads and rewrites the tail object block.

Why tiny objects are encoded by ``track``: a PNG encode releases the GIL (Pillow
does, around zlib), and a flush thread that releases it while the training loop
runs gets it back only after the loop held it a whole switch interval (5 ms).
A flush of ~250 thumbnails beside a pure-Python loop paid enough such waits to
double its length and the time to durability once ``track_many`` stopped waiting
for flushes (issue 22, target 8: branch issue-22m-b). A tiny image's encode is all fixed
cost (~0.1 ms of Pillow and zlib set-up), paid once by ``track`` without a
handover; a bigger one's is mostly compression with the GIL released, which runs
beside the loop in the flush thread (and ``track(Image(64x64))`` stays ~5 us).

Reading goes block by block (see :mod:`runstore._storage.objblocks`): ``seq[-1]``
reads one block and the blobs of one point.
"""

from __future__ import annotations

import warnings
from time import time as _time
from typing import Any, Iterator

import numpy as np

from . import values as _values
from ..errors import InvalidValueError, SequenceNotFoundError
from ..storage import locate as _locate
from ..storage import objblocks as _ob
from ..storage import records as _rec
from ..storage.keys import block_key, run_key
from .objects import CLASSES, TrackedObject
from .pending import _resolve_steps
from .sequence import Sequence, _ClosedBuffer

_NAN = float("nan")
# Objects whose input is at most this many bytes are encoded by track() (module docstring).
ENCODE_AT_TRACK = 1 << 10


class _ObjectBuffer:
    """Where ``track`` puts objects; refuses numbers (the scalar path's ``fromlist``)."""

    __slots__ = ("seq", "items")

    def __init__(self, seq: "ObjectSequence") -> None:
        self.seq = seq
        self.items: list = []

    def fromlist(self, row: list) -> None:
        raise _mismatch(self.seq, "float")

    def __len__(self) -> int:
        return 0


def _mismatch(seq: Sequence, new_type: str) -> InvalidValueError:
    return InvalidValueError(
        f"{_values.describe(seq.name, seq.context)} holds {seq.type} values; cannot track a {new_type} "
        f"value in it (one name+context holds one type: use another name or context). "
        "Nothing tracked before was affected"
    )


def track_object(seq: Sequence, obj: TrackedObject, step: Any, epoch: Any, timestamp: float | None = None) -> None:
    """``run.track(obj)``/``seq.append(obj)``: type checks, then a list append
    (``timestamp``: when the object was recorded, for importers; default now)."""
    if step is None:
        step = _NAN
    elif type(step) is not int:
        step = _values.coerce_step(step, seq.name, seq.context)
    if epoch is None:
        epoch = _NAN
    elif isinstance(epoch, bool) or not isinstance(epoch, (int, float)):
        raise InvalidValueError(
            f"epoch must be a number, got {type(epoch).__name__} for {_values.describe(seq.name, seq.context)}"
        )
    if not getattr(seq.run, "_object_values", True):
        raise InvalidValueError(
            f"{_values.describe(seq.name, seq.context)}: {obj.type} values are not sent to a runstore "
            "server yet; track them into a local repository (Run(repo=path)). Nothing was tracked"
        )
    if not isinstance(seq, ObjectSequence):
        run = seq.run
        with run._lock, run._buf_lock:
            if not isinstance(seq, ObjectSequence):  # the flush thread may be looking at it
                if isinstance(seq._buf, _ClosedBuffer):
                    seq._buf.fromlist([])  # raises RunClosedError
                seq._take_buffer()  # (numbers tracked into it may be in its run's one row buffer)
                if seq._summary["count"] or seq._pending:
                    raise _mismatch(seq, obj.type)
                run.repo._env.ensure_blobs()  # format 1 -> 2, once
                seq.__class__ = ObjectSequence
                seq._summary = dict(seq._summary, type=obj.type)
                seq._buf = _ObjectBuffer(seq)
                seq._slot = None  # numbers into it fail at track(), not at the flush
                run._has_objects = True
    elif obj.type != seq._summary.get("type"):
        raise _mismatch(seq, obj.type)
    buf = seq._buf
    if type(buf) is not _ObjectBuffer:
        buf.fromlist([])  # a closed run: raises RunClosedError
    size = obj._input_bytes()
    if size is not None and size <= ENCODE_AT_TRACK and not _encode(seq, obj):
        return  # dropped, with a warning (as the flush would)
    now = _time()
    buf.items.append((obj, step, float(epoch), now if timestamp is None else timestamp))
    run = seq.run
    if now > run._due:  # the flush thread is a whole interval late (see Run._flush_overdue)
        run._flush_overdue()


def become(seq: Sequence, writable: bool) -> None:
    """Turn a sequence whose stored record has a type into an object sequence."""
    seq.__class__ = ObjectSequence
    if writable:
        seq._buf = _ObjectBuffer(seq)
        seq.run._has_objects = True


def _encode(seq: Sequence, obj: TrackedObject) -> bool:
    """Encode ``obj`` (once: it keeps its encoding) and drop its input's copy;
    False, with a warning, if it cannot be (the point is then dropped)."""
    try:
        obj._encoded()
    except Exception as exc:  # cannot happen for validated input; never lose the others
        warnings.warn(
            f"{_values.describe(seq.name, seq.context)}: could not encode a {obj.type} "
            f"({type(exc).__name__}: {exc}); that point was dropped", RuntimeWarning, stacklevel=3)
        return False
    obj._figure = obj._pixels = obj._values = obj._samples = None  # drop the inputs' copies
    return True


def encode_ahead(run: Any) -> None:
    """Encode the objects ``track`` left to the flush (big images, figures,
    distributions) before the flush takes the run's lock, so that neither
    ``track_many`` nor a new sequence waits for an encode. Runs without locks:
    the training thread only appends to the list (a snapshot is read) and an
    object's encoding is the same whoever makes it."""
    if not run._has_objects:
        return
    for seq in list(run._seq_list):
        buf = seq._buf
        if type(buf) is _ObjectBuffer and buf.items:
            for obj, *_ in list(buf.items):
                if getattr(obj, "_blobs", None) is None:
                    try:
                        obj._encoded()
                    except Exception:
                        pass  # reported (once) when the flush takes it: _take_buffer


class Objects:
    """Part of an object sequence (``seq[a:b]``, ``seq.range(...)``): aligned
    ``steps``, ``epochs``, ``timestamps`` (NumPy) and ``values`` (the objects)."""

    def __init__(self, type_: str, steps: np.ndarray, epochs: np.ndarray, timestamps: np.ndarray,
                 values: list) -> None:
        self.type = type_
        self.steps, self.epochs, self.timestamps, self.values = steps, epochs, timestamps, values

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values)

    def __getitem__(self, i: int) -> Any:
        return self.values[i]

    def to_numpy(self) -> np.ndarray:
        """Distributions: counts as an (n, bins) matrix (shared edges required);
        arrays: stacked when shapes agree; images: stacked pixels when sizes agree."""
        if not self.values:
            return np.empty((0, 0))
        if self.type == "distribution":
            return _counts_matrix([v._meta for v in self.values], "this part of the sequence")
        try:
            return np.stack([v.to_numpy() for v in self.values])
        except (AttributeError, ValueError) as exc:
            raise InvalidValueError(f"cannot stack these {self.type} values into one array: {exc}") from None

    def __repr__(self) -> str:
        return f"<Objects {self.type} x{len(self.values)}>"


def _counts_matrix(items: list, where: str) -> np.ndarray:
    edges = items[0]["edges"]
    if any(it["edges"] != edges for it in items):
        raise InvalidValueError(
            f"the distributions of {where} do not share their bin edges, so they do not form one "
            "matrix; read them one by one (seq[i].counts, seq[i].bin_edges)"
        )
    bins = len(items[0]["counts"]) // 8
    return np.frombuffer(b"".join(it["counts"] for it in items), "<f8").reshape(len(items), bins).copy()


class ObjectSequence(Sequence):
    """A sequence of objects; ``type`` names them ("image", "text", ...)."""

    __slots__ = ()

    @property
    def type(self) -> str:
        return self._summary.get("type", "float")

    def append(self, value: Any, step: int | None = None, epoch: int | float | None = None) -> None:
        if not isinstance(value, TrackedObject):
            raise _mismatch(self, type(value).__name__)
        track_object(self, value, step, epoch)

    def _reject(self, value, step, epoch) -> None:
        raise _mismatch(self, "float") from None

    def _queue(self, item) -> None:  # track_many (Run.track_many holds _buf_lock)
        raise _mismatch(self, "float (track_many)")

    # -- flush -------------------------------------------------------------------
    def _take_buffer(self) -> None:
        buf = self._buf
        if type(buf) is not _ObjectBuffer or not buf.items:
            return
        items = buf.items
        n = len(items)
        taken = items[:n]  # the training thread only appends: slicing then deleting is safe
        del items[:n]
        for obj, step, epoch, t in taken:
            if _encode(self, obj):  # by track() or encode_ahead() already, but for what came since
                self._pending.append((step, epoch, t, obj._meta, obj._blobs))

    def _prepare(self, env, txn, budget: Any = None, taken: int | None = None) -> tuple | None:
        # Written whole whatever the budget (issue 22's bound is for numeric blocks:
        # an object block holds 64 points' metadata, the payloads are blobs).
        summary = self._summary
        if taken is None:
            taken = len(self._pending)
        if not taken:
            return None
        rows = self._pending[:taken]
        steps = _resolve_steps(np.array([r[0] for r in rows], dtype=np.float64), summary["last_step"])
        epochs = np.array([r[1] for r in rows], dtype=np.float64)
        times = np.array([r[2] for r in rows], dtype=np.float64)
        # every payload of the flush in one putmulti (storage.objblocks.put_blobs_many)
        refs = iter(_ob.put_blobs_many(env, txn, [r[4] for r in rows if r[4]]))
        items = []
        for r in rows:
            item = dict(r[3])
            if r[4]:
                item["b"] = next(refs)
            items.append(item)
        run_k = run_key(self.run.id)
        tail = self._tail
        nblocks = summary["blocks"]
        if tail is None:
            tail = _ob.empty()
            if nblocks:  # resumed run: load the last block once
                raw = txn.get(block_key(run_k, self._id, nblocks - 1), db=env.dbs["blocks"])
                tail = _ob.decode(raw)
                if len(tail[0]) >= _ob.CAPACITY:
                    tail = _ob.empty()
        first_block = nblocks - 1 if len(tail[0]) else nblocks
        cols = _ob.concat([tail, (steps, epochs, times, items)])
        cap = _ob.CAPACITY
        total = len(cols[0])
        block_no = first_block
        out = []
        for start in range(0, total, cap):
            part = _ob.cut(cols, start, start + cap)
            out.append((run_k, self._id, block_no, _ob.encode(*part)))
            block_no += 1
        _rec.put_blocks(env, txn, out)
        last_len = total - (block_no - first_block - 1) * cap
        new_tail = _ob.cut(cols, total - last_len, total) if last_len < cap else _ob.empty()
        new = dict(summary)
        new["sorted_steps"] = _locate.steps_sorted_after(summary, steps)
        new["blocks"] = block_no
        if summary["count"] == 0:
            new["first_step"] = int(steps[0])
            new["first_ts"] = float(times[0])
        new["count"] = summary["count"] + len(steps)
        new["last_step"] = int(steps[-1])
        new["last_ts"] = float(times[-1])
        _rec.put_sequence(env, txn, self.run.id, self._id, {"name": self.name, "context": self.context, **new})
        return (new, new_tail, taken)

    # -- reading -----------------------------------------------------------------
    def _read_objects(self, pick: Any, with_blobs: bool = True) -> tuple:
        self._require_points()
        env = self.run.repo._env

        def work(reader, rec):
            cols = pick(reader, rec)
            blobs = [_ob.get_blobs(env, reader._txn, it.get("b") or {}) for it in cols[3]] if with_blobs else None
            return cols, blobs

        got = _locate.with_reader(env, self.run.id, self._id, work)
        if got is None:
            raise SequenceNotFoundError(
                f"run {self.run.id} has no {_values.describe(self.name, self.context)} any more (deleted?)"
            )
        return got

    def _objects(self, cols: tuple, blobs: list) -> list:
        cls = CLASSES[self.type]
        return [cls._stored(item, b) for item, b in zip(cols[3], blobs)]

    def _all(self, with_blobs: bool = False) -> tuple:
        return self._read_objects(lambda r, rec: _ob.read_positions(r, rec["count"], 0, rec["count"]), with_blobs)

    def _columns(self) -> tuple:
        cols, _ = self._all()
        return cols[0], None, cols[1], cols[2]

    def _part(self, pick: Any) -> Objects:
        cols, blobs = self._read_objects(pick)
        return Objects(self.type, cols[0], cols[1], cols[2], self._objects(cols, blobs))

    def __getitem__(self, index: Any) -> Any:
        """``seq[i]`` is the object at position i; ``seq[a:b]`` an :class:`Objects`.
        Only the blocks (and blobs) of those points are read."""
        if isinstance(index, slice):
            start, stop, stride = index.indices(self.count)
            picked = np.arange(start, stop, stride)
            if not len(picked):
                return Objects(self.type, *_ob.empty())
            lo, hi = int(picked.min()), int(picked.max()) + 1

            def pick(r, rec):
                return _ob.take(_ob.read_positions(r, rec["count"], lo, hi), picked - lo)

            return self._part(pick)
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            n = self.count
            i = int(index) + n if index < 0 else int(index)
            if not 0 <= i < n:
                raise IndexError(f"point {index} is out of range: {_values.describe(self.name, self.context)} has {n}")
            return self._part(lambda r, rec: _ob.read_positions(r, rec["count"], i, i + 1)).values[0]
        raise TypeError(f"sequence indices are integers or slices, not {type(index).__name__}")

    def range(self, start_step: int | None = None, stop_step: int | None = None) -> Objects:
        """Points with ``start_step <= step < stop_step``, reading only their blocks."""
        lo = None if start_step is None else _values.coerce_step(start_step, self.name, self.context, "start_step")
        hi = None if stop_step is None else _values.coerce_step(stop_step, self.name, self.context, "stop_step")
        return self._part(lambda r, rec: _ob.read_steps(r, bool(rec.get("sorted_steps")), lo, hi))

    @property
    def values(self) -> list:  # type: ignore[override]
        """Every object of the sequence (reads all blocks and blobs)."""
        cols, blobs = self._all(with_blobs=True)
        return self._objects(cols, blobs)

    def numpy(self) -> dict:
        steps, _, epochs, times = self._columns()
        return {"steps": steps, "epochs": epochs, "timestamps": times}

    def to_numpy(self) -> np.ndarray:
        """Distribution sequences: the counts as a 2-D array, one row per point
        (all points must share ``bin_edges``). Other types: stacked when shapes agree."""
        if self.type == "distribution":
            cols, _ = self._all()
            return _counts_matrix(cols[3], _values.describe(self.name, self.context))
        return self[:].to_numpy()

    @property
    def bin_edges(self) -> np.ndarray:
        """The bin edges shared by every distribution of the sequence."""
        if self.type != "distribution":
            raise InvalidValueError(f"{_values.describe(self.name, self.context)} holds {self.type} values, "
                                    "not distributions: it has no bin_edges")
        cols, _ = self._all()
        _counts_matrix(cols[3], _values.describe(self.name, self.context))
        return np.frombuffer(cols[3][0]["edges"], "<f8").copy()

    def __repr__(self) -> str:
        ctx = f", context={self.context}" if self.context else ""
        return f"<Sequence {self.name!r}{ctx} type={self.type} run={self.run.id} count={self._summary['count']}>"
