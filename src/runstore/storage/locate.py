"""Find and read only the blocks that hold part of a sequence.

Two ways to ask for part of a sequence, both used by ``Sequence.__getitem__``
(positions) and ``Sequence.range`` (steps), and meant to be reused by other
sequence kinds (object sequences keep the same block numbering):

- by position: every block but the last holds exactly ``CAPACITY`` points (an
  invariant ``check()`` verifies), so points ``[a, b)`` live in blocks
  ``a // CAPACITY`` to ``(b - 1) // CAPACITY``: no search at all;
- by step: when the sequence record says its steps never decrease
  (``sorted_steps``, maintained by the writer), a binary search over the first
  step of each block finds the first and last block of ``[lo, hi)`` with
  O(log blocks) reads; otherwise (old data, steps tracked out of order) every
  block is read and masked, which is always correct.

Everything here reads with ``txn.get``: one call per block touched, which the
tests count.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

import numpy as np

from . import blocks as _blocks
from . import prefetch as _prefetch
from .keys import block_key, run_key, seq_key
from .records import unpack

_HEADER = struct.Struct("<BBHI")


def sequence_record(env: Any, txn: Any, run_id: str, seq_id: int) -> dict | None:
    """The stored record of one sequence (summary, ``blocks``, ``sorted_steps``), one get."""
    raw = txn.get(seq_key(run_key(run_id), seq_id), db=env.dbs["seqs"])
    return None if raw is None else unpack(raw)


class BlockReader:
    """Fetches raw blocks of one sequence by number (one ``txn.get`` each), caching
    them so a block looked at during a search is not read twice."""

    def __init__(self, env: Any, txn: Any, run_id: str, seq_id: int, nblocks: int) -> None:
        self._db = env.dbs["blocks"]
        self._txn = txn
        self._run = run_key(run_id)
        self._seq = seq_id
        self.nblocks = nblocks
        self._raw: dict[int, Any] = {}

    def raw(self, no: int) -> Any:
        raw = self._raw.get(no)
        if raw is None:
            raw = self._txn.get(block_key(self._run, self._seq, no), db=self._db)
            if raw is None:
                raise KeyError(f"block {no} of sequence {self._seq} is missing (run `runstore check`)")
            self._raw[no] = raw
        return raw

    def first_step(self, no: int) -> int:
        """The step of the first point of block ``no`` (decodes only the step column)."""
        # Steps come first after the header, as a range start or as the full column.
        return int(np.frombuffer(self.raw(no), "<i8", 1, _HEADER.size)[0])

    def columns(self, first: int, last: int) -> tuple:
        """Decoded columns of blocks ``first..last`` (inclusive), copied out of the map."""
        if last < first:
            return _blocks.empty()
        if last - first + 1 >= _prefetch.MIN_BLOCKS and _prefetch.enabled():
            # Read ahead before fetching the blocks in between (see ``prefetch``).
            _prefetch.hint_blocks(self.raw(first), self.raw(last), last - first + 1)
        return _blocks.decode_many([self.raw(no) for no in range(first, last + 1)])


class ColumnsReader:
    """The :class:`BlockReader` interface over a sequence already in memory (read
    whole from a server): the same position and step searches, no storage."""

    def __init__(self, cols: tuple) -> None:
        self._cols = cols
        self.nblocks = -(-len(cols[1]) // _blocks.CAPACITY)

    def first_step(self, no: int) -> int:
        return int(self._cols[0][no * _blocks.CAPACITY])

    def columns(self, first: int, last: int) -> tuple:
        if last < first:
            return _blocks.empty()
        cap = _blocks.CAPACITY
        return tuple(c[first * cap:(last + 1) * cap] for c in self._cols)


def _slice(cols: tuple, a: int, b: int) -> tuple:
    return tuple(np.array(c[a:b]) for c in cols)


def read_positions(reader: BlockReader, count: int, start: int, stop: int) -> tuple:
    """Points ``[start, stop)`` by position (0 <= start <= stop <= count)."""
    cap = _blocks.CAPACITY
    if stop <= start:
        return _blocks.empty()
    first, last = start // cap, (stop - 1) // cap
    cols = reader.columns(first, last)
    offset = first * cap
    return _slice(cols, start - offset, stop - offset)


def read_steps(reader: BlockReader, sorted_steps: bool, lo: int | None, hi: int | None) -> tuple:
    """Points with ``lo <= step < hi`` (None: unbounded), in stored order."""
    n = reader.nblocks
    if n == 0:
        return _blocks.empty()
    if not sorted_steps:  # nothing to search on: read everything, keep what matches
        cols = reader.columns(0, n - 1)
        return _mask(cols, lo, hi)
    first = 0 if lo is None else max(_last_block_starting_at_or_before(reader, lo), 0)
    last = n - 1 if hi is None else _last_block_starting_at_or_before(reader, hi - 1)
    if last < first:
        return _blocks.empty()
    cols = reader.columns(first, last)
    steps = cols[0]
    a = 0 if lo is None else int(np.searchsorted(steps, lo, side="left"))
    b = len(steps) if hi is None else int(np.searchsorted(steps, hi, side="left"))
    return _slice(cols, a, b)


def _last_block_starting_at_or_before(reader: BlockReader, step: int) -> int:
    """The last block whose first step is <= ``step`` (-1 if none): a binary search."""
    lo, hi = 0, reader.nblocks  # invariant: answer in [lo - 1, hi - 1]
    while lo < hi:
        mid = (lo + hi) // 2
        if reader.first_step(mid) <= step:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


def _mask(cols: tuple, lo: int | None, hi: int | None) -> tuple:
    steps = cols[0]
    keep = np.ones(len(steps), dtype=bool)
    if lo is not None:
        keep &= steps >= lo
    if hi is not None:
        keep &= steps < hi
    return tuple(np.array(c[keep]) for c in cols)


def steps_sorted_after(previous: dict, steps: np.ndarray) -> bool:
    """The ``sorted_steps`` flag of a sequence after appending ``steps`` to it.

    A sequence written before the flag existed is not known to be sorted (False)."""
    if previous.get("count", 0) == 0:
        known = True
    else:
        known = bool(previous.get("sorted_steps", False))
        if known and len(steps) and previous.get("last_step") is not None:
            known = int(steps[0]) >= int(previous["last_step"])
    return known and (len(steps) < 2 or bool(np.all(np.diff(steps) >= 0)))


def with_reader(env: Any, run_id: str, seq_id: int, work: Callable[[BlockReader, dict], Any]) -> Any:
    """Run ``work(reader, record)`` in one read transaction (buffers straight from the map);
    None when the sequence has no record."""
    with env.read(buffers=True) as txn:
        record = sequence_record(env, txn, run_id, seq_id)
        if record is None:
            return None
        return work(BlockReader(env, txn, run_id, seq_id, int(record.get("blocks", 0))), record)
