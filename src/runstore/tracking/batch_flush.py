"""A flush of many small dirty sequences of one run in one vectorised pass
(issue 22, target 6).

A run that tracks 10,000 metrics round-robin has, at each flush, 10,000
sequences with a few dozen new points each, on top of a tail block of up to a
few hundred. ``Sequence._prepare`` costs ~60-100 µs of Python per sequence
(gathering the rows, resolving steps, re-encoding the whole tail with
``blocks.encode``, the summary): ~0.7-1 s per flush interval, growing with the
tails, all of it holding the GIL the training loop needs. Here the sequences
whose tail and new points fit in their current block (every one of them, in
that workload) are gathered into flat columns with boundaries, their steps
resolved and their summaries reduced segment by segment, and their tails kept as
``storage.openblock.OpenBlock``: grown by the new points only, in one vectorised
pass, and encoded to the bytes ``blocks.encode`` gives. What remains per sequence
is joining the block's byte sections, a dict and a msgpack record; the blocks
are put with one ``putmulti`` per chunk.

Everything else keeps the per-sequence path: object sequences, ``track_many``'s
columns, steps beyond 2**53, a resumed run's first flush (its tail is not loaded
yet) and sequences that fill a block. The transaction budget (``TXN_BYTES``) is
honoured as there: a block is put while the budget is not spent, the rest wait
for the next transaction (``LATER``), and nothing in memory changes before the
commit (a grown open block shares its parent's buffers past the parent's length
only; the writer adopts it after the commit).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..storage import blocks as _blocks
from ..storage import openblock as _openblock
from ..storage.openblock import OpenBlock
from ..storage import records as _rec
from ..storage.keys import run_key
from .pending import _given_steps
from .sequence import LATER, Budget, Sequence, Written

# Below this many eligible sequences the per-sequence path costs no more than the
# vectorised one (measured: equal at 4 sequences of 50 new points, 0.6x at 16), whose
# fixed cost is a few dozen NumPy calls.
MIN_BATCH = 6
# Points (tails and new) per vectorised pass, at most: a few MB of blocks, so a
# transaction whose budget runs out mid-flush has grown (and thrown away) at most one
# pass more than it wrote (growing every sequence in each of the 4-6 transactions of
# a 10,000-metric flush with 500-point tails cost 2.5x the growth). The flat columns
# of new points are a copy (32 bytes a point).
CHUNK_POINTS = 1 << 18


def _points(seq: Sequence) -> int:
    """The points of ``seq``'s block after this flush (tail and new) if it can go in
    the vectorised pass (a float sequence whose pending points are all ``track()``
    rows and, with its tail, fill at most one block), else -1."""
    if type(seq) is not Sequence:
        return -1
    tail = seq._tail
    if type(tail) is OpenBlock:
        old = tail.n
    elif tail is None:
        if seq._summary["blocks"]:
            return -1  # a resumed run's tail is read by _prepare
        old = 0
    else:
        old = len(tail[1])
    n = 0
    for p in seq._pending[:seq._taken]:  # what this flush took (track_many may queue more meanwhile)
        if type(p) is not np.ndarray:
            return -1
        n += len(p)
    return old + n if old + n <= _blocks.CAPACITY else -1


def prepare_all(env: Any, txn: Any, run_id: str, dirty: list, budget: Budget) -> list:
    """The states of ``dirty``'s sequences written into ``txn`` (``_prepare``'s,
    in the same order)."""
    sizes = [_points(seq) for seq in dirty]
    batch = [i for i, n in enumerate(sizes) if n >= 0]
    if len(batch) < MIN_BATCH:
        return [seq._prepare(env, txn, budget, seq._taken) if budget.left > 0 else LATER for seq in dirty]
    states: list = [None] * len(dirty)
    picked = set(batch)
    for i, seq in enumerate(dirty):
        if i not in picked:
            states[i] = seq._prepare(env, txn, budget, seq._taken) if budget.left > 0 else LATER
    # In chunks of at most CHUNK_POINTS points (one sequence at least).
    chunk: list = []
    points = 0
    for i in batch:
        if budget.left <= 0:
            states[i] = LATER
            continue
        n = sizes[i]
        if chunk and points + n > CHUNK_POINTS:
            _prepare_chunk(env, txn, run_id, dirty, chunk, budget, states)
            chunk, points = [], 0
        chunk.append(i)
        points += n
    if chunk:
        _prepare_chunk(env, txn, run_id, dirty, chunk, budget, states)
    return states


def _prepare_chunk(env: Any, txn: Any, run_id: str, dirty: list, chunk: list, budget: Budget,
                   states: list) -> None:
    if budget.left <= 0:
        for i in chunk:
            states[i] = LATER
        return
    seqs = [dirty[i] for i in chunk]
    rows = [p[0] if len(p) == 1 else np.concatenate(p) for p in (s._pending[:s._taken] for s in seqs)]
    nn = np.fromiter(map(len, rows), np.int64, len(rows))
    if not nn.all():
        # rows of no points (a rejected track()): nothing is stored, as _prepare does
        for j in np.flatnonzero(nn == 0).tolist():
            states[chunk[j]] = (seqs[j]._summary, seqs[j]._tail, seqs[j]._taken)
        kl = np.flatnonzero(nn).tolist()
        if not kl:
            return
        chunk, seqs, rows, nn = [chunk[j] for j in kl], [seqs[j] for j in kl], [rows[j] for j in kl], nn[kl]
    new = rows[0] if len(rows) == 1 else np.concatenate(rows)
    nb = np.zeros(len(seqs) + 1, np.int64)
    np.cumsum(nn, out=nb[1:])
    starts, ends = nb[:-1], nb[1:]
    summaries = [s._summary for s in seqs]
    last_steps = [s["last_step"] for s in summaries]
    steps = _steps(new[:, 1], starts, nn, last_steps)
    values, times = new[:, 0], new[:, 3]
    tails = [_open(s._tail) for s in seqs]
    grown = _openblock.grow(tails, steps, values, new[:, 2], times, nb)

    # Summaries of the new points, segment by segment.
    rising = np.ones(len(steps), bool)
    np.greater_equal(steps[1:], steps[:-1], out=rising[1:])
    rising[starts] = True
    rising_l = np.logical_and.reduceat(rising, starts).tolist()
    lo_l = np.fmin.reduceat(values, starts).tolist()
    hi_l = np.fmax.reduceat(values, starts).tolist()
    first_l, last_l = steps[starts].tolist(), steps[ends - 1].tolist()
    last_v, last_t, first_t = values[ends - 1].tolist(), times[ends - 1].tolist(), times[starts].tolist()
    nnl = nn.tolist()
    run_k = run_key(run_id)
    cap = _blocks.CAPACITY
    items = []  # one putmulti for the chunk (storage.records.put_blocks)
    for j, seq in enumerate(seqs):
        if budget.left <= 0:
            for i in chunk[j:]:
                states[i] = LATER
            break
        summary = summaries[j]
        count = summary["count"]
        blk = grown[j]
        block_no = summary["blocks"] - 1 if tails[j].n else summary["blocks"]
        data = blk.encode()
        items.append((run_k, seq._id, block_no, data))
        budget.left -= len(data)
        last_step = last_steps[j]
        s = dict(summary)
        s["sorted_steps"] = (count == 0 or bool(summary.get("sorted_steps", False))) and rising_l[j] and (
            last_step is None or first_l[j] >= last_step)
        s["blocks"] = block_no + 1
        if count == 0:
            s["first_step"] = first_l[j]
            s["first_ts"] = first_t[j]
        s["count"] = count + nnl[j]
        s["last_step"] = last_l[j]
        s["last"] = last_v[j]
        s["last_ts"] = last_t[j]
        m = lo_l[j]
        if m == m:  # NaN only when every new value is NaN
            s["min"] = m if summary["min"] is None else min(summary["min"], m)
            s["max"] = hi_l[j] if summary["max"] is None else max(summary["max"], hi_l[j])
        _rec.put_sequence(env, txn, run_id, seq._id, {"name": seq.name, "context": seq.context, **s})
        states[chunk[j]] = Written(s, blk if blk.n < cap else OpenBlock(), seq._taken, 0, True)
    _rec.put_blocks(env, txn, items)


def _open(tail: Any) -> OpenBlock:
    """A sequence's tail as an open block (a tail left by ``_prepare`` is columns)."""
    if type(tail) is OpenBlock:
        return tail
    return OpenBlock() if tail is None else OpenBlock.of(tail)


def _steps(raw: np.ndarray, starts: np.ndarray, lens: np.ndarray, last_steps: list) -> np.ndarray:
    """The steps of the new rows as int64: a step not given (NaN) is the previous
    step of its sequence + 1 (``Sequence._resolve_steps`` per segment)."""
    given, missing = _given_steps(raw)
    if not missing.any():
        return given
    idx = np.arange(len(given))
    anchor = np.where(missing, -1, idx)
    np.maximum.accumulate(anchor, out=anchor)
    seg_start = np.repeat(starts, lens)
    inside = anchor >= seg_start  # a given step earlier in the same sequence
    prev = np.array([-1 if s is None else s for s in last_steps], np.int64)
    base = np.where(inside, given[np.maximum(anchor, 0)], np.repeat(prev, lens))
    return base + np.where(inside, idx - anchor, idx - seg_start + 1)
