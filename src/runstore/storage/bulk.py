"""Reads of many sequences at once: one cursor, one set of columns.

``read_columns`` answers ``query_sequences(...).to_numpy()/to_arrow()`` and the
export. Read one sequence at a time (``records.read_sequence``), each sequence
costs a probe, a cursor, a generator and four small arrays: ~15 µs of Python
for a 10-point run, so 100,000 short runs took a second where copying their
points takes milliseconds. Here:

* the first block of every sequence is fetched by key (a view into the memory
  map, no copy); only a sequence whose first block is full (``CAPACITY``
  points: only a sequence's last block is ever partial) has more blocks, which
  the same cursor walks, after the read-ahead hint a long sequence gets
  (``prefetch``, as ``records.read_sequence`` gives it);
* the blocks are decoded into four columns allocated once for the whole
  selection; the sequences are slices of them (``offsets``). Small blocks (short
  runs) are decoded together in a few vectorised passes over their bytes joined
  into one buffer (``decode_blocks``); long ones are copied one by one straight
  out of the memory map, as ``blocks.decode_many`` does.

Both decoders give the same bits (tests/test_bulk_reads.py compares them).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import blocks as _b
from . import hugemem as _hugemem
from . import prefetch as _prefetch
from .keys import RUN_ID_BYTES, block_key, seq_key

# Blocks shorter than this decode together (vectorised); a full block of CAPACITY
# points is at least 8 * CAPACITY bytes and is copied on its own.
SMALL_BYTES = 8192
# Above this many points in long blocks the copies are split over threads
# (NumPy copies release the GIL; the buffers stay valid while the read
# transaction is open).
PARALLEL_POINTS = 2_000_000
THREADS = 4
_FULL_BYTES = _b.HEADER_SIZE + 8 * _b.CAPACITY  # no block of fewer bytes holds CAPACITY points
_PADS = [b"\0" * i for i in range(8)]
_BLOCK0 = (0).to_bytes(4, "big")


def read_columns(env: Any, txn: Any, keys: list[tuple[str, int]]) -> tuple[_b.Columns, np.ndarray]:
    """(steps, values, epochs, timestamps) of every (run id, seq id) in ``keys``, one
    sequence after another, and ``offsets`` (len(keys) + 1): sequence i is
    ``column[offsets[i]:offsets[i + 1]]``. A sequence without points is empty."""
    if not keys:
        return _b.empty(), np.zeros(1, np.int64)
    db = env.dbs["blocks"]
    cur = txn.cursor(db=db)
    # One get per block 0 (a view into the map in a buffers=True transaction, None for a
    # sequence without points): measured faster than Cursor.getmulti, cold (~110 vs
    # ~200 page faults: no key view and pair per block) and warm alike.
    get = txn.get
    firsts: list = [get(k, db=db) for k in _block0_keys(keys)]
    more: dict[int, list] = {}
    try:
        lens = np.fromiter(map(len, firsts), np.int64, len(firsts))
    except TypeError:  # a sequence without a block 0
        lens = np.fromiter((0 if r is None else len(r) for r in firsts), np.int64, len(firsts))
    for i in np.flatnonzero(lens >= _FULL_BYTES).tolist():
        if _b._header(firsts[i])[1] >= _b.CAPACITY:
            run, sid = bytes.fromhex(keys[i][0]), int(keys[i][1])
            more[i] = _followers(env, txn, cur, run, sid)
    for i in np.flatnonzero(lens == 0).tolist():  # no block 0: walk whatever the sequence holds
        run, sid = bytes.fromhex(keys[i][0]), int(keys[i][1])
        blocks = _walk(cur, seq_key(run, sid), seq_key(run, sid))
        if blocks:
            firsts[i], more[i] = blocks[0], blocks[1:]
    if more:
        raws, nblocks = [], np.zeros(len(keys), np.int64)
        for i, raw in enumerate(firsts):
            if raw is not None:
                raws.append(raw)
                rest = more.get(i, ())
                raws.extend(rest)
                nblocks[i] = 1 + len(rest)
    else:
        raws = [r for r in firsts if r is not None]
        nblocks = (lens > 0).astype(np.int64)
    # Threads for two sequences or more, as the per-sequence reads had them (one
    # transaction per thread): on this shared 2-core machine a single sequence read
    # over two threads measured slower than one (the other core was busy).
    cols, counts = decode_blocks(raws, parallel=len(keys) > 1)
    by_block = np.zeros(len(raws) + 1, np.int64)
    np.cumsum(counts, out=by_block[1:])
    seq_first = np.zeros(len(keys) + 1, np.int64)
    np.cumsum(nblocks, out=seq_first[1:])
    return cols, by_block[seq_first]


def _block0_keys(keys: list[tuple[str, int]]) -> list[bytes]:
    """The key of block 0 of every (run id, seq id), built in a few vectorised steps."""
    run_ids, seq_ids = zip(*keys)
    runs = bytes.fromhex("".join(run_ids))
    if len(runs) != RUN_ID_BYTES * len(keys):
        raise ValueError("read_columns takes 24-hex-digit run ids")
    table = np.empty(len(keys), dtype=[("run", f"V{RUN_ID_BYTES}"), ("seq", ">u4"), ("block", ">u4")])
    table["run"] = np.frombuffer(runs, f"V{RUN_ID_BYTES}")
    table["seq"] = np.array(seq_ids, np.int64)
    table["block"] = 0
    flat = table.tobytes()
    width = table.dtype.itemsize
    return [flat[i:i + width] for i in range(0, len(flat), width)]


def _followers(env: Any, txn: Any, cur: Any, run: bytes, sid: int) -> list:
    """Blocks 1, 2, ... of a sequence whose block 0 is full; a long one is read ahead first."""
    if txn.get(block_key(run, sid, _prefetch.MIN_BLOCKS - 1), db=env.dbs["blocks"]) is not None:
        from .records import _hint_sequence

        _hint_sequence(env, txn, run, sid)
    return _walk(cur, block_key(run, sid, 1), seq_key(run, sid))


def _walk(cur: Any, start: bytes, prefix: bytes) -> list:
    out: list = []
    if cur.set_range(start):
        n = len(prefix)
        for key, raw in cur:
            if key[:n] != prefix:
                break
            out.append(raw)
    return out


# -- decoding ------------------------------------------------------------------------
def decode_blocks(raws: list, parallel: bool = True) -> tuple[_b.Columns, np.ndarray]:
    """Decode consecutive blocks (of any sequences) into four columns allocated once,
    and the number of points of each block. ``parallel``: long blocks holding
    ``PARALLEL_POINTS`` or more may be copied over threads."""
    nb = len(raws)
    lens = np.fromiter(map(len, raws), np.int64, nb)
    small = np.flatnonzero(lens < SMALL_BYTES)
    big = np.flatnonzero(lens >= SMALL_BYTES).tolist()
    counts = np.empty(nb, np.int64)
    headers = {}
    for i in big:
        headers[i] = _b._header(raws[i])
        counts[i] = headers[i][1]
    if len(small):
        buf, starts = _join([raws[i] for i in small.tolist()] if big else raws, lens[small])
        flags, n = _headers(buf, starts, lens[small])
        counts[small] = n
    if not big:
        return (_decode_small(buf, starts, lens, flags, n) if nb else _b.empty()), counts
    at = np.zeros(nb, np.int64)
    np.cumsum(counts[:-1], out=at[1:])
    total = int(counts.sum())
    cols = _columns(total)
    if len(small):
        part = _decode_small(buf, starts, lens[small], flags, n)
        where = _ranges(at[small], n)
        for c, p in zip(cols, part):
            c[where] = p
    at_big = at[big].tolist()
    jobs = [(raws[i], *headers[i], cols, a) for i, a in zip(big, at_big)]
    threads = min(THREADS, os.cpu_count() or 1)
    if parallel and threads > 1 and int(counts[big].sum()) >= PARALLEL_POINTS:
        from concurrent.futures import ThreadPoolExecutor

        def run(part: list) -> None:
            for job in part:
                _b._decode_into(*job)

        # One contiguous share of the blocks per thread (a future per block would cost
        # more than the copy of a block), split by points.
        cut = np.searchsorted(np.cumsum(counts[big]), np.arange(1, threads) * int(counts[big].sum()) / threads)
        shares = np.split(np.arange(len(jobs)), cut)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, [[jobs[i] for i in share.tolist()] for share in shares]))
    else:
        for job in jobs:
            _b._decode_into(*job)
    return cols, counts


def _join(raws: list, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The blocks' bytes in one 8-aligned buffer, each block padded to a multiple of
    8 bytes so that its float64/int64 sections can be read through one typed view;
    and where each block starts."""
    pad = (-lens) & 7
    starts = np.zeros(len(raws), np.int64)
    np.cumsum((lens + pad)[:-1], out=starts[1:])
    size = int(starts[-1] + lens[-1] + pad[-1]) if len(raws) else 0
    arena = _hugemem.mapping(size, kept=False)
    if arena is not None:  # big: copied into huge pages (the join's fresh pages faulted one by one)
        view = memoryview(arena)
        for raw, at, n in zip(raws, starts.tolist(), lens.tolist()):
            view[at:at + n] = raw
        return arena, starts
    if pad.any():
        joined = b"".join([x for pair in zip(raws, map(_PADS.__getitem__, pad.tolist())) for x in pair])
    else:
        joined = b"".join(raws)
    buf = np.frombuffer(joined, np.uint8)
    if buf.ctypes.data % 8:
        buf = buf.copy()
    return buf, starts


def _headers(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flags, point count) of every block, checked as ``blocks._header`` checks one."""
    short = np.flatnonzero(lens < _b.HEADER_SIZE)
    if len(short):
        raise ValueError(f"block is {int(lens[short[0]])} bytes, shorter than its header")
    fmt = buf[starts]
    flags = buf[starts + 1].astype(np.int64)
    n = buf.view("<u4")[(starts >> 2) + 1].astype(np.int64)
    bad = np.flatnonzero((fmt != _b.FORMAT) & (fmt != _b.FORMAT_2))
    if len(bad):
        raise ValueError(f"unknown block format {int(fmt[bad[0]])}")
    bad = np.flatnonzero((flags & ~_b._KNOWN) | ((fmt == _b.FORMAT) & ((flags & _b._NEW) != 0)))
    if len(bad):
        raise ValueError(f"block format {int(fmt[bad[0]])} with unknown flags {int(flags[bad[0]]):#x}")
    return flags, n


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])``, vectorised."""
    total = int(counts.sum())
    before = np.cumsum(counts) - counts
    return np.repeat(starts - before, counts) + np.arange(total, dtype=np.int64)


def _gather(view: np.ndarray, word: np.ndarray, n: np.ndarray, mask: np.ndarray, out: np.ndarray,
            points: np.ndarray | None) -> None:
    """Copy ``n[b]`` items from ``view[word[b]:]`` into ``out`` at block b's points, for the
    blocks in ``mask``; ``points`` marks the points of those blocks (None: all blocks)."""
    if points is None:
        out[:] = view[_ranges(word, n)]
    else:
        out[points] = view[_ranges(word[mask], n[mask])]


def _decode_small(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray, flags: np.ndarray,
                  n: np.ndarray) -> _b.Columns:
    """Decode every block of ``buf`` (see ``_join``) in vectorised passes: the same
    arithmetic as ``blocks._decode_into``, so the same bits.

    A fresh process pays ~2 µs of page fault per 4 KiB of new memory on this
    machine's VM, more than the arithmetic: the first decode of 100,000 points
    touched ~1,600 fresh pages, mostly temporaries of a point each. So the columns
    come from one mapping advised to use huge pages (``_columns``, storage/hugemem.py),
    the two per-point scratch arrays from another, and per-block values are spread
    over points in place (``hugemem.spread``) instead of through a per-point block
    index."""
    total = int(n.sum())
    m = len(n)
    first_point = np.cumsum(n) - n
    i8, f8 = buf.view("<i8"), buf.view("<f8")
    steps, values, epochs, times = _columns(total)
    scratch = _hugemem.empty(2 * total, np.int64, kept=False)
    ar, idx = scratch[:total], scratch[total:]
    ar[:1] = 0
    ar[1:] = 1
    np.cumsum(ar, out=ar)  # 0, 1, ..., total - 1 without a fresh arange
    nonempty = n > 0

    def spread(per_block: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out[p] = per_block[block of point p] (8-byte values, bits kept)."""
        return _hugemem.spread(per_block, first_point, nonempty, out)

    def gather(view: np.ndarray, word: np.ndarray, mask: np.ndarray, out: np.ndarray,
               points: np.ndarray | None) -> None:
        """Copy ``n[b]`` items from ``view[word[b]:]`` into ``out`` at block b's points."""
        if points is None:
            spread(word - first_point, idx)
            np.add(idx, ar, out=idx)
            # mode="clip" lets take write into out without a buffer; every section
            # was checked to lie inside its block above, so no index is clipped.
            np.take(view, idx, out=out, mode="clip")
        else:
            out[points] = view[_ranges(word[mask], n[mask])]

    def each(mask: np.ndarray) -> tuple[bool, np.ndarray | None]:
        """(any block in mask, the mask of their points or None when it is every block)."""
        if mask.all():
            return True, None
        if not mask.any():
            return False, None
        return True, np.repeat(mask, n)

    # steps: a range (start), a stride (start, stride) or stored
    is_range = (flags & _b.STEPS_RANGE) != 0
    is_stride = ((flags & _b.STEPS_STRIDE) != 0) & ~is_range
    stored = ~(is_range | is_stride)
    steps_len = np.where(is_range, 8, np.where(is_stride, 16, 8 * n))
    pv = starts + _b.HEADER_SIZE + steps_len
    pe = pv + 8 * n
    no_epochs = (flags & _b.NO_EPOCHS) != 0
    pt = pe + np.where(no_epochs, 0, 8 * n)
    const = (flags & _b.CONST_TIME) != 0
    delta = ((flags & _b.TIME_DELTA) != 0) & ~const
    # Every section's end, checked before any section is read.
    times_len = np.where(const, 8, 8 * n)
    d = np.flatnonzero(delta)
    if len(d):
        ends = starts[d] + lens[d]
        cut = np.flatnonzero(pt[d] + _b._DELTA.size > ends)
        if len(cut):
            i = d[cut[0]]
            raise ValueError(f"block is {int(lens[i])} bytes, too short for its {int(n[i])} points")
        width = buf[pt[d] + 10].astype(np.int64)
        k = buf.view("<u4")[(pt[d] + 12) >> 2].astype(np.int64)
        nd = n[d]
        bad = np.flatnonzero(((width != 1) & (width != 2) & (width != 4)) | (nd < 2) | (k > nd - 1))
        if len(bad):
            b = bad[0]
            raise ValueError(f"timestamp deltas of width {int(width[b])} with {int(k[b])} exceptions "
                             f"for {int(nd[b])} points")
        times_len[d] = _b._DELTA.size + width * (nd - 1) + 8 * k
    wrong = np.flatnonzero(pt + times_len - starts != lens)
    if len(wrong):
        i = wrong[0]
        raise ValueError(f"block is {int(lens[i])} bytes, expected {int(pt[i] + times_len[i] - starts[i])} "
                         f"for {int(n[i])} points")

    computed = ~stored
    if computed.any():
        # decode's arange(n) * stride + start, in int64 (wrapping alike): within-block
        # index = ar - first point of the block. All ranges (stride 1, the common
        # case): (start - first point) spread, plus ar, the same sum mod 2**64.
        start = np.zeros(m, np.int64)
        c = np.flatnonzero(computed)
        start[c] = i8[(starts[c] + _b.HEADER_SIZE) >> 3]
        s = np.flatnonzero(is_stride)
        if len(s):
            stride = np.ones(m, np.int64)
            stride[s] = i8[(starts[s] + _b.HEADER_SIZE + 8) >> 3]
            spread(first_point, idx)
            np.subtract(ar, idx, out=idx)
            spread(stride, steps)
            steps *= idx
            spread(start, idx)
            steps += idx
        else:
            spread(start - first_point, steps)
            steps += ar
    some, points = each(stored)
    if some:
        gather(i8, (starts + _b.HEADER_SIZE) >> 3, stored, steps, points)

    gather(f8, pv >> 3, nonempty, values, None)  # every block holds values

    some, points = each(~no_epochs)
    if some:
        gather(f8, pe >> 3, ~no_epochs, epochs, points)
        if points is not None:
            epochs[~points] = np.nan
    else:
        epochs.fill(np.nan)

    some, points = each(const)
    if some:
        times_const = np.zeros(m)
        c = np.flatnonzero(const)
        times_const[c] = f8[pt[c] >> 3]
        if points is None:
            spread(times_const, times)
        else:
            spread(times_const, idx.view(np.float64))
            times[points] = idx.view(np.float64)[points]
    plain = ~(const | delta)
    some, points = each(plain)
    if some:
        gather(f8, pt >> 3, plain, times, points)
    if len(d):
        _, points = each(delta)
        t = _deltas(buf, pt[d], nd, width, k)
        if points is None:
            times[:] = t
        else:
            times[points] = t
    return steps, values, epochs, times


def _deltas(buf: np.ndarray, pt: np.ndarray, n: np.ndarray, width: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The timestamps of TIME_DELTA blocks (sections at ``pt``), one after another.

    Per block the decoder (``blocks._read_deltas``) takes a cumulative sum of the
    integer differences, scales it by 2**e and adds the first time. Here one
    cumulative sum runs over every block's differences (each block's first entry
    is 0) and each block subtracts the running sum at its start: int64 arithmetic
    wraps modulo 2**64, so each block's sums come out exact (they fit int64) even
    when the running sum overflows. The float operations are the same ones, so
    the same bits."""
    first = buf.view("<f8")[pt >> 3]
    e = buf.view("<i2")[(pt + 8) >> 1].astype(np.int64)
    head = np.cumsum(n) - n  # where each block's points start
    acc = np.zeros(int(n.sum()), np.int64)
    sec = pt + _b._DELTA.size  # 8-aligned: the differences start here
    views = {1: buf.view("<i1"), 2: buf.view("<i2"), 4: buf.view("<i4")}
    for w, view in views.items():
        sel = np.flatnonzero(width == w)
        if len(sel):
            acc[_ranges(head[sel] + 1, n[sel] - 1)] = view[_ranges(sec[sel] // w, n[sel] - 1)]
    for b in np.flatnonzero(k).tolist():  # gaps too wide for the block's width (rare)
        kb, at = int(k[b]), int(sec[b] + width[b] * (n[b] - 1))
        where = np.frombuffer(buf, "<u4", kb, at).astype(np.int64)
        if kb and int(where.max()) >= int(n[b]) - 1:
            raise ValueError(f"timestamp delta exception at {int(where.max())} beyond {int(n[b]) - 1} differences")
        acc[head[b] + 1 + where] = np.frombuffer(buf, "<i4", kb, at + 4 * kb)
    np.cumsum(acc, out=acc)
    acc -= np.repeat(acc[head], n)
    times = acc.astype(np.float64)
    times *= np.repeat(np.ldexp(1.0, e), n)
    times += np.repeat(first, n)
    return times


def _columns(total: int) -> _b.Columns:
    """Four empty columns of ``total`` points (steps int64; values, epochs, timestamps
    float64), carved from one huge-page mapping when they are big enough."""
    arena = _hugemem.mapping(32 * total)
    if arena is None:
        return (np.empty(total, np.int64), np.empty(total, np.float64), np.empty(total, np.float64),
                np.empty(total, np.float64))
    return (arena[:8 * total].view(np.int64), arena[8 * total:16 * total].view(np.float64),
            arena[16 * total:24 * total].view(np.float64), arena[24 * total:32 * total].view(np.float64))
