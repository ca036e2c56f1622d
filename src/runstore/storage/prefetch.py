"""Read-ahead hints for reads that span many blocks of one sequence.

The environment is opened with ``readahead=False`` (LMDB then advises the
whole map ``MADV_RANDOM``): queries touch small records all over the file, and
kernel read-ahead around each of them would fill the page cache with pages
nobody asked for. But a full read of a long sequence from a cold page cache
then faults its blocks in one 4 KiB page at a time (a 100 M-point sequence
took ~220,000 major faults, 24 s, where ``cat`` of the file took 0.5 s).

So a read that is about to copy many blocks first tells the kernel which bytes
it will need: ``madvise(MADV_WILLNEED)`` over the pages from its first block to
its last, which starts asynchronous reads of that range and leaves the map's
random-access policy alone. The hint must come before the other blocks are
fetched: py-lmdb touches every page of a value as it returns it (it "preloads"
values with the GIL released), so by the time a list of buffers exists, the
faults have already happened. Only the first and last block are fetched to
locate the range. When the blocks are not close together (e.g. interleaved
with other sequences' blocks), a range more than ``SLACK`` times the bytes
needed gets no hint. Reads of fewer than ``MIN_BLOCKS`` blocks (lookups,
binary searches, short sequences) give no hint and cost nothing more.

``RUNSTORE_READAHEAD=0`` turns the hints off (benchmarks compare both).
"""

from __future__ import annotations

import ctypes
import mmap
import os
from typing import Any

import numpy as np

PAGE = mmap.PAGESIZE
# Hint only reads of at least this many blocks: below that, a cold read is a
# few dozen faults, and the syscalls would cost more on a warm cache.
MIN_BLOCKS = 8
# Bytes per madvise call: Linux reads at most the device's read-ahead size
# (read_ahead_kb, 128 KiB by default) per WILLNEED call and silently ignores the
# rest. 1,400 calls for a 170 MiB sequence cost ~10 ms, all asynchronous.
CHUNK = 128 << 10
# A range up to this many times the bytes the read needs is still read ahead
# as a whole: one sequential read of a few times the bytes beats a random 4 KiB
# fault per page by far (here ~1.7 GB/s against ~60 MB/s).
SLACK = 4

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _madvise = _libc.madvise
    _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    _madvise.restype = ctypes.c_int
    _WILLNEED = getattr(mmap, "MADV_WILLNEED", 3)
except (OSError, AttributeError):  # no libc madvise (not Linux/BSD/macOS): no hints
    _madvise = None


def enabled() -> bool:
    return _madvise is not None and os.environ.get("RUNSTORE_READAHEAD", "1") != "0"


def _address(raw: Any) -> int:
    return np.frombuffer(raw, np.uint8).ctypes.data


def hint_blocks(first: Any, last: Any, nblocks: int) -> bool:
    """Read ahead the map from block ``first`` to block ``last`` (buffers into the map,
    ``nblocks`` blocks apart, inclusive) when the range is worth it; True if hinted."""
    if nblocks < MIN_BLOCKS or not enabled():
        return False
    # Only buffers into the map (``buffers=True`` transactions) can be hinted.
    if not (isinstance(first, memoryview) and isinstance(last, memoryview)):
        return False
    lo, hi = _address(first), _address(last) + len(last)
    if hi <= lo or hi - lo > SLACK * nblocks * max(len(first), len(last)):
        return False
    lo -= lo % PAGE
    for at in range(lo, hi, CHUNK):
        # Errors are only ever lost hints (EINVAL on an exotic mapping): ignored.
        _madvise(at, min(CHUNK, hi - at), _WILLNEED)
    return True
