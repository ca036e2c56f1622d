"""TFRecord framing, the container of TensorBoard event files, with checksums.

A record is ``uint64 length, uint32 masked_crc32c(length bytes), data,
uint32 masked_crc32c(data)``, little-endian.

Two things make this fast without a compiled extension:

* Framing is sequential (a record's length says where the next one starts), but
  the lengths of a training log repeat with a short period (one record per tag
  per step). After a few records are walked one by one, the period is guessed
  and the next few thousand record positions are *predicted* and checked at once
  with NumPy; the first position where the stored length differs from the
  prediction ends the run of predictions and the walk continues from there.
  A wrong guess costs one vectorised check, never a wrong record.
* CRC-32C is computed for all records of one length together: one table lookup
  per byte column over the whole batch (the classic byte-at-a-time algorithm,
  vectorised across records instead of along one). Records longer than
  ``_WIDE`` bytes (images, histograms) are checked one at a time with the
  ``crc32c`` / ``google-crc32c`` package when installed, else counted as
  unverified and reported.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable

import numpy as np

_LEN = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_WIDE = 512  # bytes: longer records are checked one by one (a column loop would cost more)
_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _table() -> np.ndarray:
    table = np.zeros(256, np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table[i] = c
    return table


_TABLE = _table()


def crc32c_rows(matrix: np.ndarray) -> np.ndarray:
    """CRC-32C of each row of a (records, bytes) uint8 matrix."""
    columns = np.asfortranarray(matrix)  # each byte column contiguous for the loop below
    crc = np.full(matrix.shape[0], 0xFFFFFFFF, np.uint32)
    table = _TABLE
    low = np.uint32(0xFF)
    eight = np.uint32(8)
    for j in range(matrix.shape[1]):
        crc = table[(crc & low) ^ columns[:, j]] ^ (crc >> eight)
    return crc ^ np.uint32(0xFFFFFFFF)


def gather(u8: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` bytes at each of ``starts`` as a (len(starts), width) matrix.

    Rows of a sliding-window view are copied whole: no (n, width) index matrix."""
    if not len(starts):
        return np.zeros((0, width), np.uint8)
    return np.lib.stride_tricks.sliding_window_view(u8, width)[starts]


def masked(crc: np.ndarray) -> np.ndarray:
    crc = crc.astype(np.uint32)
    return (((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(0xA282EAD8)).astype(np.uint32)


def crc_library() -> Callable[[bytes], int] | None:
    """crc32c from the ``crc32c`` or ``google-crc32c`` package when either is installed."""
    try:
        import crc32c

        return crc32c.crc32c
    except ImportError:
        pass
    try:
        import google_crc32c

        return lambda data: int(google_crc32c.value(bytes(data)))
    except ImportError:
        return None


def _period(lengths: list[int]) -> int:
    """The smallest period (<= 64) of the last 128 lengths, or 0."""
    window = lengths[-128:]
    for p in range(1, 65):
        if all(window[i] == window[i - p] for i in range(p, len(window))):
            return p
    return 0


def frame(data: bytes, path: Path, verify: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Positions and lengths of the records' data, in file order, and the problems
    found (each a sentence naming the file and the byte offset).

    A truncated last record is skipped and reported. With ``verify``, a record
    whose length checksum is wrong ends the file (the framing after it cannot be
    trusted); data checksums are checked by :func:`rows`, group by group."""
    n = len(data)
    u8 = np.frombuffer(data, np.uint8)
    heads: list[int] = []
    lens: list[int] = []
    chunks: list[tuple[np.ndarray, np.ndarray]] = []
    problems: list[str] = []
    unpack = _LEN.unpack_from
    pos = 0
    walked = 0  # records walked one by one since the last prediction
    while pos + 12 <= n:
        length = unpack(data, pos)[0]
        end = pos + 16 + length
        if end > n:
            break
        heads.append(pos)
        lens.append(length)
        pos = end
        walked += 1
        if walked >= 128:
            walked = 0
            period = _period(lens)
            if period:
                pos = _predict(u8, n, pos, lens[-period:], heads, lens, chunks)
    if pos < n:
        problems.append(f"{path}: the last record is truncated ({n - pos} bytes at the end; a writer "
                        "stopped mid-record); it was skipped")
    chunks.append((np.array(heads, np.int64), np.array(lens, np.int64)))
    head = np.concatenate([c[0] for c in chunks])
    size = np.concatenate([c[1] for c in chunks])
    if verify and len(head):
        head, size = _check_lengths(data, u8, path, head, size, problems)
    return head + 12, size, problems


def _predict(u8: np.ndarray, n: int, pos: int, cycle: list[int], heads: list[int], lens: list[int],
             chunks: list) -> int:
    """Check predicted record positions from ``pos`` on; keep the ones that hold."""
    cyc = np.array(cycle, np.int64)
    step = cyc + 16
    stride = int(step.sum())
    offsets = np.concatenate(([0], np.cumsum(step)[:-1]))
    while True:
        reps = min(max((n - pos) // stride, 1), max(65536 // len(cyc), 1))
        starts = (pos + np.arange(reps, dtype=np.int64)[:, None] * stride + offsets).ravel()
        expect = np.tile(cyc, reps)
        fits = starts + 16 + expect <= n
        good = fits.copy()
        at = starts[fits]
        good[fits] = gather(u8, at, 8).copy().view("<u8").ravel() == expect[fits].astype(np.uint64)
        ok = len(good) if good.all() else int(np.argmin(good))
        if ok == 0:
            return pos
        chunks.append((np.array(heads, np.int64), np.array(lens, np.int64)))
        heads.clear()
        lens.clear()
        chunks.append((starts[:ok], expect[:ok]))
        pos = int(starts[ok - 1] + 16 + expect[ok - 1])
        if ok < len(good):
            return pos


def _check_lengths(data: bytes, u8: np.ndarray, path: Path, head: np.ndarray, size: np.ndarray,
                   problems: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Length checksums (8 bytes each, all records at once); the file ends at the first bad one."""
    header = gather(u8, head, 12)
    stored = np.ascontiguousarray(header[:, 8:12]).view("<u4").ravel()
    bad = masked(crc32c_rows(header[:, :8])) != stored
    if bad.any():
        first = int(np.argmax(bad))
        problems.append(f"{path}: the record at byte {int(head[first])} has a bad length checksum; the "
                        f"{len(data) - int(head[first])} bytes from there were not read")
        head, size = head[:first], size[:first]
    return head, size


def rows(data: bytes, u8: np.ndarray, offs: np.ndarray, length: int, path: Path, verify: bool,
         problems: list[str]) -> tuple[np.ndarray | None, np.ndarray]:
    """The data of records all ``length`` bytes long (at ``offs``) as a (records, length)
    matrix (None for few or long records, which are decoded one by one), and a mask of
    those whose data checksum holds (all True without ``verify``).

    The matrix is gathered once with the stored checksums beside the data, so the
    check and the decoding share it."""
    n = len(offs)
    keep = np.ones(n, bool)
    if length <= _WIDE and (n >= 8 or verify):
        matrix = gather(u8, offs, length + (4 if verify else 0))
        if verify:
            stored = np.ascontiguousarray(matrix[:, length:]).view("<u4").ravel()
            keep = masked(crc32c_rows(matrix[:, :length])) == stored
            matrix = matrix[:, :length]
        _report(path, offs[~keep], problems)
        return (matrix if n >= 8 else None), keep
    if verify:
        library = crc_library()
        if library is None:
            problems.append(f"{path}: {n} records of {length} bytes (images, histograms) were not checksummed: "
                            "pip install crc32c to check them too")
        else:
            for i, a in enumerate(offs.tolist()):
                crc = library(data[a:a + length])
                keep[i] = ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF) == \
                    _CRC.unpack_from(data, a + length)[0]
            _report(path, offs[~keep], problems)
    if n >= 8 and length <= 4 * _WIDE:
        return gather(u8, offs, length), keep
    return None, keep


def _report(path: Path, bad_offs: np.ndarray, problems: list[str]) -> None:
    for a in bad_offs[:5].tolist():
        problems.append(f"{path}: the record at byte {a - 12} has a bad data checksum; it was skipped")
    if len(bad_offs) > 5:
        problems.append(f"{path}: {len(bad_offs) - 5} more records with bad data checksums were skipped")
