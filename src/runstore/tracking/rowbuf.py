"""One row buffer for all the sequences of a run that tracks many (issue 22, target 6).

``track()`` appends each point to its sequence's own ``array('d')``. With one or a
few names the buffers stay in cache; a loop over 10,000 names round-robin touches a
different buffer (and ``array`` object, and ``Sequence``) at every call, and the
same ``track()`` costs ~1.6-1.8x what it costs on one name (measured: 348 vs 191 ns
for the lookup and append alone, 0.60 vs 0.37 µs for ``track()``). Once a run has
``SHARED_AT`` sequences its points go instead to one run-wide buffer, as rows
``[value, step, epoch, time, slot]`` (``slot``: the sequence's index in the run,
a float): appends land next to each other whatever the name (204 ns for the same
loop; 211 on one name). The flush thread sorts the rows by slot (stable: each
sequence's points keep their order) and hands each sequence its rows, as its own
buffer would have.

``run.track`` becomes :func:`track` (an instance attribute shadowing the method:
the one-name path, below ``SHARED_AT``, is untouched). Every other writer of a
sequence's buffer (``Sequence.append``, a ``run.track`` bound before the switch)
finds a ``sequence.SharedRows`` there, which appends to the run's buffer with the slot:
one order for all of a sequence's points. The per-sequence buffers replaced at the
switch are kept and drained at each flush: a thread that fetched one just before
the switch still appends there (its rows go before the run's buffer's).
"""

from __future__ import annotations

from array import array
from time import time as _time
from types import MethodType
from typing import TYPE_CHECKING, Any

import numpy as np

from .objects import TrackedObject
from .sequence import Sequence, SharedRows

if TYPE_CHECKING:
    from .run import Run

# Sequences a run has before its points share one buffer. Below it the per-sequence
# buffers cost the same and a flush has nothing to sort.
SHARED_AT = 256
_NAN = float("nan")


def share(run: "Run") -> None:
    """Switch ``run`` to one row buffer (caller holds the run's lock)."""
    rows = array("d")
    for seq in run._slot_seqs:
        if type(seq) is Sequence and type(seq._buf) is array:
            old = seq._buf
            seq._buf = SharedRows(rows, seq._slot)
            run._retired.append((seq, old))
            _drain(seq, old)  # what it holds is older than anything the run's buffer will get
    run._rows = rows
    run.track = MethodType(track, run)


def adopt(run: "Run", seq: Sequence) -> None:
    """Give a new sequence of a shared run its slot's buffer (caller holds the lock)."""
    if type(seq) is Sequence:
        seq._buf = SharedRows(run._rows, seq._slot)


def _drain(seq: Sequence, old: array) -> None:
    n = len(old) // 4 * 4
    if n:
        part = old[:n]
        del old[:n]
        seq._pending.append(np.frombuffer(part, np.float64).reshape(-1, 4))


def queue(run: "Run", seq: Sequence, item: Any) -> None:
    """Queue ``track_many``'s ``item`` for ``seq`` after the rows the run's buffer holds
    now (caller holds the run's ``_buf_lock``): :func:`take` puts it in ``seq``'s pending
    list between that sequence's rows from before and after. Taking the rows here
    instead sorted the whole buffer at every call and gave every sequence a pending
    part per call: a loop of 1,000 names with one ``track_many`` per step ran 3.5x
    slower (1.6-1.8 µs a point instead of 0.45-0.49)."""
    run._row_items.append((len(run._rows) // 5, seq, item))


def take(run: "Run") -> None:
    """Move the rows of the run's buffer to their sequences' pending lists, in order
    (caller holds the run's lock), with the items :func:`queue` placed among them. The
    buffers replaced at the switch (a few hundred) first: a point a thread appended
    there (having fetched the buffer just before the switch) is older than the run's
    buffer's."""
    for seq, old in run._retired:
        if len(old):
            _drain(seq, old)
    buf = run._rows
    n = len(buf) // 5 * 5
    items = run._row_items
    if items:
        run._row_items = []
    if not n:
        for _, seq, item in items:
            seq._pending.append(item)
        return
    part = buf[:n]  # both slicing and deleting are single C calls: atomic under the GIL
    del buf[:n]
    a = np.frombuffer(part, np.float64).reshape(-1, 5)
    slots = a[:, 4].astype(np.uint16 if len(run._slot_seqs) <= 1 << 16 else np.int64)
    order = np.argsort(slots, kind="stable")  # a radix sort for 16-bit keys
    rows = a[order, :4]
    slots = slots[order]
    cuts = np.flatnonzero(slots[1:] != slots[:-1]) + 1
    bounds = [0, *cuts.tolist(), len(slots)]
    seqs = run._slot_seqs
    if not items:
        for i, s in enumerate(slots[bounds[:-1]].tolist()):
            seqs[s]._pending.append(rows[bounds[i]:bounds[i + 1]])
        return
    placed: dict[int, list] = {}  # id(seq) -> [(rows before it, item)], in call order
    for at, seq, item in items:
        placed.setdefault(id(seq), []).append((at, item))
    for i, s in enumerate(slots[bounds[:-1]].tolist()):
        seq, lo, hi = seqs[s], bounds[i], bounds[i + 1]
        mine = placed.pop(id(seq), None)
        if mine is None:
            seq._pending.append(rows[lo:hi])
            continue
        where = order[lo:hi]  # the rows' places in the buffer, ascending (a stable sort)
        start = lo
        for at, item in mine:
            cut = lo + int(np.searchsorted(where, at))  # its rows appended before the call
            if cut > start:
                seq._pending.append(rows[start:cut])
                start = cut
            seq._pending.append(item)
        if start < hi:
            seq._pending.append(rows[start:hi])
    for at, seq, item in items:  # sequences with no rows in this take
        if id(seq) in placed:
            seq._pending.append(item)


def track(self: "Run", value: Any, name: str | None = None, step: int | None = None,
          epoch: int | float | None = None, context: dict | None = None) -> None:
    """``Run.track`` of a run whose points share one buffer (same arguments, checks
    and errors; the row carries the sequence's slot). A copy of ``Run.track``'s body on
    purpose: a shared helper would be one more call per value on the hot path; a change
    to one is made to both."""
    try:
        seq = self._seqs[name, frozenset(context.items()) if context else None]
    except (KeyError, TypeError, AttributeError):
        if isinstance(value, dict):
            return self._track_dict(value, name, step, epoch, context)
        seq = self._sequence(name, context)
    if type(value) is not float and type(value) is not int:
        if isinstance(value, dict):
            return self._track_dict(value, name, step, epoch, context)
        if isinstance(value, TrackedObject):
            from .object_sequence import track_object

            return track_object(seq, value, step, epoch)
        from .values import coerce_value

        value = coerce_value(value, seq.name, seq.context)
    if step is None:
        step = _NAN
    elif type(step) is not int or not -9007199254740992 <= step <= 9007199254740992:  # 2**53
        from .values import coerce_step

        step = coerce_step(step, name, seq.context)
        if not -9007199254740992 <= step <= 9007199254740992:
            return seq._append_exact(value, step, epoch)
    now = _time()
    try:
        self._rows.fromlist([value, step, _NAN if epoch is None else epoch, now, seq._slot])
    except (TypeError, OverflowError):
        buf = seq._buf
        if type(buf) is not SharedRows:  # an object sequence's buffer, a closed one: their own error
            buf.fromlist([value, step, _NAN if epoch is None else epoch, now])
        seq._reject(value, step, epoch)
    if now > self._due:
        self._flush_overdue()
