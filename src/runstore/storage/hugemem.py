"""Big result arrays over memory advised to use transparent huge pages.

A fresh process pays a page fault for every 4 KiB of memory it touches first: ~2 µs
each on this project's (virtual) machines, so the first read of 100,000 points
spent more on faulting in its columns and temporaries (~2,000 faults) than on
decoding them. One 2 MiB huge page costs one fault and a clear. NumPy advises huge
pages itself only for single arrays of 4 MiB or more; the readers here put several
columns of one result into one mapping (``mapping``), and fill per-point copies
of per-sequence values in place (``spread``) instead of through temporaries.

Where the kernel gives no huge pages (THP off, another OS), the mapping is
ordinary anonymous memory: the same results, the old cost.
"""

from __future__ import annotations

import mmap

import numpy as np

# Arrays of at least this many bytes go to a huge-page mapping (128 faults of
# ~2 µs against one clear of 2 MiB, ~0.1 ms); below it the rounding up to 2 MiB
# would waste more memory than the faults cost time.
HUGE_BYTES = 512 << 10
_PAGE = 2 << 20
_ADVICE = getattr(mmap, "MADV_HUGEPAGE", None)


def mapping(nbytes: int, kept: bool = True) -> np.ndarray | None:
    """A zeroed uint8 array of ``nbytes`` over an anonymous mapping advised to use huge
    pages, or None when ``nbytes`` is small or the advice can't be given. The mapping
    is released with the last array over it.

    It is made a multiple of 2 MiB, which the kernel aligns to a huge page. A ``kept``
    array (a result the caller holds) never wastes more than half its size
    on that rounding: past that, the mapping is cut back to ``nbytes`` and its tail
    stays on 4 KiB pages. Scratch (``kept=False``) keeps the whole rounding."""
    if nbytes < HUGE_BYTES or _ADVICE is None:
        return None
    size = -(-nbytes // _PAGE) * _PAGE
    try:
        m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m.madvise(_ADVICE)
    except (OSError, ValueError):
        return None
    if kept and size - nbytes > nbytes // 2:
        try:
            m.resize(-(-nbytes // mmap.PAGESIZE) * mmap.PAGESIZE)
        except (OSError, ValueError, SystemError):
            pass  # no mremap here: keep the rounding
    return np.frombuffer(m, np.uint8, nbytes)


def empty(count: int, dtype: type, kept: bool = True) -> np.ndarray:
    """``np.empty(count, dtype)``, on huge pages when it is big (zeroed, in fact)."""
    dt = np.dtype(dtype)
    arena = mapping(count * dt.itemsize, kept)
    return np.empty(count, dt) if arena is None else arena.view(dt)


def spread(per_block: np.ndarray, first: np.ndarray, nonempty: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[:] = np.repeat(per_block, counts)`` without the temporary, where block b
    covers ``out[first[b]:first[b] + counts[b]]`` and ``nonempty = counts > 0``.

    Each non-empty block's first slot gets its difference from the block before and
    a cumulative sum carries it along. The 4- or 8-byte patterns are summed as
    integers, which wrap modulo 2**32 / 2**64, so every value, floats included,
    comes out with its exact bits."""
    as_int = np.int64 if out.dtype.itemsize == 8 else np.int32
    bits = np.ascontiguousarray(per_block).view(as_int)[nonempty]
    at = first[nonempty]
    o = out.view(as_int)
    o.fill(0)
    if len(bits):
        o[at[0]] = bits[0]
        o[at[1:]] = np.diff(bits)
        np.cumsum(o, dtype=as_int, out=o)
    return out
