"""Object blocks and the blob database (storage format 2, issue 13).

An object sequence (images, text, ...) is split into blocks like a numeric one,
under the same keys in the ``blocks`` database (run id + sequence id + block
number), with its own capacity and layout (little-endian)::

    u8  format (0x81)   u8 flags (0)   u16 reserved (0)   u32 count
    steps       int64[count]
    epochs      float64[count]     (NaN: no epoch)
    timestamps  float64[count]
    items       msgpack list of ``count`` dicts: the object's small metadata
                (caption, width, text, histogram counts...) and ``"b"``: a map
                from role ("data", "svg") to the 32-byte SHA-256 of a blob

The format byte has its high bit set (numeric blocks use 1, 2, ... as their
format evolves), so a block tells which kind it is without its sequence record.
The steps column sits where a numeric block's does, so the binary search over
first steps in :mod:`locate` works on both. Large payloads (encoded images,
WAV, figures, .npy) live in the ``blobs`` database: key = SHA-256 of the bytes,
value = the bytes, written with ``overwrite=False`` so identical payloads are
stored once. Blobs are never deleted with a run: ``check()`` reports the ones no
block references as reclaimable and ``compact`` drops them.
"""

from __future__ import annotations

import struct
from typing import Any, Iterable

import msgpack
import numpy as np

from . import locate as _locate

FORMAT = 0x81  # high bit: an object block (numeric block formats are small numbers)
CAPACITY = 256  # metadata of 256 points decodes in well under a millisecond
_HEADER = struct.Struct("<BBHI")
HEADER_SIZE = _HEADER.size

_pack = msgpack.Packer(use_bin_type=True).pack


def empty() -> tuple:
    return (np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.float64), [])


def is_object_block(raw: Any) -> bool:
    return len(raw) > 0 and raw[0] == FORMAT


def encode(steps: np.ndarray, epochs: np.ndarray, times: np.ndarray, items: list) -> bytes:
    n = len(items)
    return b"".join((
        _HEADER.pack(FORMAT, 0, 0, n),
        np.ascontiguousarray(steps, "<i8").tobytes(),
        np.ascontiguousarray(epochs, "<f8").tobytes(),
        np.ascontiguousarray(times, "<f8").tobytes(),
        _pack(items),
    ))


def decode(raw: Any) -> tuple:
    """(steps, epochs, timestamps, items), copied out of the transaction's buffer."""
    fmt, _, _, n = _HEADER.unpack_from(raw, 0)
    if fmt != FORMAT:
        raise ValueError(f"not an object block (format {fmt})")
    pos = HEADER_SIZE
    steps = np.frombuffer(raw, "<i8", n, pos).copy()
    pos += 8 * n
    epochs = np.frombuffer(raw, "<f8", n, pos).copy()
    pos += 8 * n
    times = np.frombuffer(raw, "<f8", n, pos).copy()
    pos += 8 * n
    items = msgpack.unpackb(bytes(raw[pos:]), raw=False)
    if not isinstance(items, list) or len(items) != n:
        raise ValueError(f"object block holds {len(items) if isinstance(items, list) else '?'} items, header says {n}")
    return steps, epochs, times, items


def concat(parts: list) -> tuple:
    if not parts:
        return empty()
    if len(parts) == 1:
        return parts[0]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]), [it for p in parts for it in p[3]])


def cut(cols: tuple, a: int, b: int) -> tuple:
    return (cols[0][a:b], cols[1][a:b], cols[2][a:b], cols[3][a:b])


def take(cols: tuple, idx: np.ndarray) -> tuple:
    items = cols[3]
    return (cols[0][idx], cols[1][idx], cols[2][idx], [items[i] for i in idx.tolist()])


# -- blobs ----------------------------------------------------------------------
def blob_key(data: bytes) -> bytes:
    import hashlib  # at first object, not at import

    return hashlib.sha256(data).digest()


def blobs_db(env: Any, txn: Any) -> Any:
    """The blobs database, or None in a format-1 repository never migrated.

    Another process may have migrated the repository after this one opened it:
    look again. A handle opened inside a read transaction closes with it, so it
    is not kept (this only happens until this process tracks an object itself)."""
    db = env.dbs.get("blobs")
    if db is None:
        import lmdb

        try:
            db = env.lmdb.open_db(b"blobs", txn=txn, create=False)
        except lmdb.NotFoundError:
            return None
    return db


def put_blobs(env: Any, txn: Any, blobs: dict) -> dict:
    """Store each payload once; return role -> key."""
    return put_blobs_many(env, txn, [blobs])[0]


def put_blobs_many(env: Any, txn: Any, many: list) -> list:
    """The payloads of many objects (each a dict role -> bytes) in one
    ``Cursor.putmulti``; returns a dict role -> key for each. Same bytes, same key:
    a payload already stored (or twice in ``many``) is stored once."""
    out, pairs = [], []
    for blobs in many:
        refs = {}
        for role, data in blobs.items():
            key = blob_key(data)
            pairs.append((key, data))
            refs[role] = key
        out.append(refs)
    if pairs:
        pairs.sort(key=lambda pair: pair[0])
        with txn.cursor(db=env.dbs["blobs"]) as cur:
            cur.putmulti(pairs, overwrite=False)
    return out


def get_blobs(env: Any, txn: Any, refs: dict) -> dict:
    db = blobs_db(env, txn)
    out = {}
    for role, key in refs.items():
        raw = None if db is None else txn.get(bytes(key), db=db)
        if raw is None:
            raise KeyError(f"blob {bytes(key).hex()[:16]}... is missing (run `runstore check`)")
        out[role] = bytes(raw)
    return out


def referenced(items: Iterable[dict]) -> Iterable[bytes]:
    for item in items:
        for key in (item.get("b") or {}).values():
            yield bytes(key)


def drop_unreferenced(env: Any, txn: Any) -> int:
    """Delete the blobs no object block references; returns how many.

    Safe against concurrent writers: a block and the blobs it names are put in
    one write transaction, and this runs in one too, so every reference it
    cannot see was not committed yet and will put its blob again."""
    db = blobs_db(env, txn)
    if db is None:
        return 0
    keep = set()
    for raw in txn.cursor(db=env.dbs["blocks"]).iternext(keys=False):
        if is_object_block(raw):
            keep.update(referenced(decode(raw)[3]))
    drop = [bytes(k) for k in txn.cursor(db=db).iternext(values=False) if bytes(k) not in keep]
    for key in drop:
        txn.delete(key, db=db)
    return len(drop)


# -- reading parts: the locate module's two ways, with this capacity and codec ---------
def read_positions(reader: Any, count: int, start: int, stop: int) -> tuple:
    if stop <= start:
        return empty()
    first, last = start // CAPACITY, (stop - 1) // CAPACITY
    cols = concat([decode(reader.raw(no)) for no in range(first, last + 1)])
    offset = first * CAPACITY
    return cut(cols, start - offset, stop - offset)


def read_steps(reader: Any, sorted_steps: bool, lo: int | None, hi: int | None) -> tuple:
    n = reader.nblocks
    if n == 0:
        return empty()
    if not sorted_steps:
        cols = concat([decode(reader.raw(no)) for no in range(n)])
        keep = np.ones(len(cols[0]), dtype=bool)
        if lo is not None:
            keep &= cols[0] >= lo
        if hi is not None:
            keep &= cols[0] < hi
        return take(cols, np.flatnonzero(keep))
    first = 0 if lo is None else max(_locate._last_block_starting_at_or_before(reader, lo), 0)
    last = n - 1 if hi is None else _locate._last_block_starting_at_or_before(reader, hi - 1)
    if last < first:
        return empty()
    cols = concat([decode(reader.raw(no)) for no in range(first, last + 1)])
    a = 0 if lo is None else int(np.searchsorted(cols[0], lo, side="left"))
    b = len(cols[0]) if hi is None else int(np.searchsorted(cols[0], hi, side="left"))
    return cut(cols, a, b)
