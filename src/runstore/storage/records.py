"""Reads and writes of run records, params and sequence records (msgpack),
and of whole sequences' blocks. Functions take an open LMDB transaction."""

from __future__ import annotations

from typing import Any, Iterator

import msgpack

from . import blocks as _blocks
from . import prefetch as _prefetch
from .env import _U64, CHANGE_INDEX, RUNS_VERSION, SEQS_VERSION, Environment
from .keys import RUN_ID_BYTES, block_key, block_no_of, run_id_of, run_key, seq_id_of, seq_key

pack = msgpack.Packer(use_bin_type=True).pack


def unpack(raw) -> Any:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


# -- runs ---------------------------------------------------------------------
def get_record(env: Environment, txn, run_id: str) -> dict | None:
    raw = txn.get(run_key(run_id), db=env.dbs["runs"])
    return None if raw is None else unpack(raw)


def put_record(env: Environment, txn, run_id: str, record: dict) -> None:
    key = run_key(run_id)
    txn.put(key, pack(record), db=env.dbs["runs"])
    env.bump(txn, RUNS_VERSION, (key,))


def get_params(env: Environment, txn, run_id: str) -> dict:
    raw = txn.get(run_key(run_id), db=env.dbs["params"])
    return {} if raw is None else unpack(raw)


def put_params(env: Environment, txn, run_id: str, params: dict) -> None:
    key = run_key(run_id)
    txn.put(key, pack(params), db=env.dbs["params"])
    env.bump(txn, RUNS_VERSION, (key,))


def scan_runs(env: Environment, txn) -> list[tuple[str, dict, dict]]:
    params_cur = txn.cursor(db=env.dbs["params"])
    out = []
    for key, raw in txn.cursor(db=env.dbs["runs"]):
        p = params_cur.get(key)
        out.append((run_id_of(key), unpack(raw), {} if p is None else unpack(p)))
    return out


def run_ids(env: Environment, txn) -> list[str]:
    """Every run id, in creation order (keys only: no record is decoded)."""
    return [run_id_of(key) for key in txn.cursor(db=env.dbs["runs"]).iternext(values=False)]


def count_runs(env: Environment, txn) -> int:
    return txn.stat(env.dbs["runs"])["entries"]


def delete_run(env: Environment, txn, run_id: str) -> bool:
    key = run_key(run_id)
    found = txn.delete(key, db=env.dbs["runs"])
    txn.delete(key, db=env.dbs["params"])
    txn.delete(LEASE_PREFIX + key, db=env.dbs["meta"])
    for db in ("seqs", "blocks"):
        _delete_prefix(txn, env.dbs[db], key)
    env.bump(txn, RUNS_VERSION, (key,))
    env.bump(txn, SEQS_VERSION, (key,))  # its rows leave the query columns
    return found


def _delete_prefix(txn, db, prefix: bytes) -> int:
    cur = txn.cursor(db=db)
    n = 0
    if cur.set_range(prefix):
        while bytes(cur.key()[: len(prefix)]) == prefix:
            n += 1
            if not cur.delete():  # moves to the next item; False at the end
                break
    return n


# -- writer leases (see runstore.tracking.lease) ----------------------------------------
# Kept in the meta database, not in the run record: a heartbeat at every flush
# must not bump the runs version (that would invalidate every query cache).
LEASE_PREFIX = b"lease:"


def get_lease(env: Environment, txn, run_id: str) -> dict | None:
    raw = txn.get(LEASE_PREFIX + run_key(run_id), db=env.dbs["meta"])
    return None if raw is None else unpack(raw)


def put_lease(env: Environment, txn, run_id: str, lease: dict) -> None:
    txn.put(LEASE_PREFIX + run_key(run_id), pack(lease), db=env.dbs["meta"])


def delete_lease(env: Environment, txn, run_id: str) -> None:
    txn.delete(LEASE_PREFIX + run_key(run_id), db=env.dbs["meta"])


def has_run(env: Environment, txn, run_id: str) -> bool:
    return txn.get(run_key(run_id), db=env.dbs["runs"]) is not None


# -- sequences ----------------------------------------------------------------
def scan_sequences(env: Environment, txn, run_id: str | None = None) -> list[tuple[str, int, dict]]:
    cur = txn.cursor(db=env.dbs["seqs"])
    out = []
    if run_id is None:
        for key, raw in cur:
            out.append((run_id_of(key), seq_id_of(key), unpack(raw)))
        return out
    prefix = run_key(run_id)
    if cur.set_range(prefix):
        for key, raw in cur:
            if bytes(key[:RUN_ID_BYTES]) != prefix:
                break
            out.append((run_id, seq_id_of(key), unpack(raw)))
    return out


def scan_sequence_names(env: Environment, txn, run_id: str) -> list[tuple[str, dict]]:
    """(name, context) of one run's sequences in creation order, decoding only those
    two fields of each record: ``run.sequences()`` of a run with 10,000 metrics spent
    half its time building the summary dicts it then dropped."""
    prefix = run_key(run_id)
    cur = txn.cursor(db=env.dbs["seqs"])
    raws = []
    if cur.set_range(prefix):
        for key, raw in cur:
            if bytes(key[:RUN_ID_BYTES]) != prefix:
                break
            raws.append(bytes(raw))
    if not raws:
        return []
    up = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=0)
    up.feed(b"".join(raws))
    read_map_header, unpack, skip = up.read_map_header, up.unpack, up.skip
    out = []
    for _ in raws:
        n = read_map_header()
        name = context = _ABSENT
        i = 0
        while i < n:  # the writers put name and context first; any order is read
            field = unpack()
            i += 1
            if field == "name":
                name = unpack()
            elif field == "context":
                context = unpack()
            else:
                skip()
                continue
            if name is not _ABSENT and context is not _ABSENT:
                for _ in range(2 * (n - i)):
                    skip()
                break
        if name is _ABSENT or context is _ABSENT:
            raise KeyError(f"a sequence record of run {run_id} has no {'name' if name is _ABSENT else 'context'}")
        out.append((name, context))
    return out


_ABSENT = object()


def iter_sequences(env: Environment, txn) -> Iterator[tuple[str, int, dict]]:
    """Every (run id, sequence id, record), one at a time."""
    run, run_id = b"", ""
    for key, raw in txn.cursor(db=env.dbs["seqs"]):
        if key[:RUN_ID_BYTES] != run:  # rows come grouped by run: one hex string per run
            run = bytes(key[:RUN_ID_BYTES])
            run_id = run.hex()
        yield run_id, seq_id_of(key), unpack(raw)


def sequences_changed_since(env: Environment, txn, version: int) -> tuple[int, list[str]] | None:
    """(current sequences version, ids of the runs whose sequences changed after
    ``version``, in key order) from the change index, or None when that cannot be
    told (a change after ``version`` was committed without naming its runs, or by a
    runstore older than the index)."""
    return changed_since(env, txn, SEQS_VERSION, version)


def runs_changed_since(env: Environment, txn, version: int) -> tuple[int, list[str]] | None:
    """The same for the runs version: runs whose record or params changed (or that
    were created or deleted) after ``version``."""
    return changed_since(env, txn, RUNS_VERSION, version)


def changed_since(env: Environment, txn, counter: bytes, version: int) -> tuple[int, list[str]] | None:
    meta = env.dbs["meta"]
    _, changed_prefix, logged_upto, chain_start = CHANGE_INDEX[counter]
    raw = txn.get(counter, db=meta)
    current = _U64.unpack(raw)[0] if raw else 0
    if current < version:
        return None
    if current > version:
        # Every bump after ``version`` must be in one unbroken chain of named bumps.
        upto, start = txn.get(logged_upto, db=meta), txn.get(chain_start, db=meta)
        if upto is None or start is None or _U64.unpack(upto)[0] != current \
                or _U64.unpack(start)[0] > version + 1:
            return None
    changed = []
    if current > version:
        cur = txn.cursor(db=meta)
        n = len(changed_prefix)
        if cur.set_range(changed_prefix + _U64.pack(version + 1)):
            for key in cur.iternext(values=False):
                if bytes(key[:n]) != changed_prefix:
                    break
                changed.append(bytes(key[n + 8:]).hex())
    return current, sorted(changed)


def put_sequence(env: Environment, txn, run_id: str, seq_id: int, record: dict) -> None:
    txn.put(seq_key(run_key(run_id), seq_id), pack(record), db=env.dbs["seqs"])


def delete_sequence(env: Environment, txn, run_id: str, seq_id: int) -> None:
    key = seq_key(run_key(run_id), seq_id)
    txn.delete(key, db=env.dbs["seqs"])
    _delete_prefix(txn, env.dbs["blocks"], key)
    env.bump(txn, SEQS_VERSION, (run_key(run_id),))


def put_block(env: Environment, txn, run: bytes, seq_id: int, block_no: int, data: bytes) -> None:
    if data[0] == _blocks.FORMAT_2:  # the first such block marks an older repository (env.py)
        env.mark_format(txn, _blocks.REPOSITORY_FORMAT_2)
    txn.put(block_key(run, seq_id, block_no), data, db=env.dbs["blocks"])


def put_blocks(env: Environment, txn, items: list) -> int:
    """Put many blocks in one call: ``items`` are (run key, sequence id, block number,
    encoded block), numeric or object blocks, of any sequences and runs. Returns the
    bytes put.

    One ``Cursor.putmulti`` in key order instead of a ``txn.put`` per block: the
    Python side of a put (argument parsing, key building, a call) is paid once per
    flush (issue 22, target 8). LMDB still releases the GIL around each item inside
    putmulti (py-lmdb 3.0), so this does not make a flush hand the GIL over fewer
    times; sorted keys keep the B-tree walk on neighbouring pages. As ``put_block``,
    the first format-2 block marks an older repository (env.py)."""
    if not items:
        return 0
    pairs = [(block_key(run, seq_id, block_no), data) for run, seq_id, block_no, data in items]
    pairs.sort(key=_first)
    if env.format < _blocks.REPOSITORY_FORMAT_2 and any(data[0] == _blocks.FORMAT_2 for _, data in pairs):
        env.mark_format(txn, _blocks.REPOSITORY_FORMAT_2)
    with txn.cursor(db=env.dbs["blocks"]) as cur:
        cur.putmulti(pairs)
    return sum(len(data) for _, data in pairs)


def _first(pair: tuple) -> bytes:
    return pair[0]


def get_block(env: Environment, txn, run_id: str, seq_id: int, block_no: int):
    raw = txn.get(block_key(run_key(run_id), seq_id, block_no), db=env.dbs["blocks"])
    return None if raw is None else _blocks.decode(raw)


def iter_blocks(env: Environment, txn, run_id: str, seq_id: int) -> Iterator[tuple[int, Any]]:
    """(block number, raw bytes) of one sequence in order."""
    prefix = seq_key(run_key(run_id), seq_id)
    cur = txn.cursor(db=env.dbs["blocks"])
    if cur.set_range(prefix):
        n = len(prefix)
        for key, raw in cur:
            if bytes(key[:n]) != prefix:
                break
            yield block_no_of(key), raw


def read_sequence(env: Environment, txn, run_id: str, seq_id: int) -> tuple:
    run = run_key(run_id)
    db = env.dbs["blocks"]
    # Blocks are numbered from 0, so one lookup of block MIN_BLOCKS - 1 (a miss for the
    # common short sequence: ~1 µs) tells whether a read-ahead hint is worth giving.
    if txn.get(block_key(run, seq_id, _prefetch.MIN_BLOCKS - 1), db=db) is not None:
        _hint_sequence(env, txn, run, seq_id)
    return _blocks.decode_many([raw for _, raw in iter_blocks(env, txn, run_id, seq_id)])


def _hint_sequence(env: Environment, txn, run: bytes, seq_id: int) -> None:
    """Read ahead a long sequence's blocks before fetching them (see ``prefetch``):
    a cursor move finds its last block."""
    if not _prefetch.enabled():
        return
    db = env.dbs["blocks"]
    first = txn.get(block_key(run, seq_id, 0), db=db)
    prefix = seq_key(run, seq_id)
    cur = txn.cursor(db=db)
    # Positioning reads keys only; cur.value() then faults in the last block alone
    # (py-lmdb touches every page of a value it returns).
    if seq_id < 0xFFFFFFFF and cur.set_range(seq_key(run, seq_id + 1)):
        cur.prev()
    else:
        cur.last()
    if first is None or bytes(cur.key()[:len(prefix)]) != prefix:
        return
    _prefetch.hint_blocks(first, cur.value(), block_no_of(cur.key()) + 1)


def reencode_blocks(env: Environment, batch: int = 256) -> tuple[int, int, int]:
    """Rewrite the numeric blocks of format 1 that the current encoding stores in
    fewer bytes (timestamp deltas, step strides: storage/blocks.py); returns
    (blocks rewritten, their bytes before, after). The migration ``compact`` runs.

    A block reads back the same points, bit for bit. Batches of ``batch`` blocks
    per transaction keep each commit small (LMDB bounds a transaction's dirty
    pages), and a crash in between leaves a repository of old and new blocks,
    which is a valid one."""
    db = env.dbs["blocks"]
    with env.read(buffers=True) as txn:
        keys = [bytes(key) for key, raw in txn.cursor(db=db) if raw[0] == _blocks.FORMAT]
    done = [0, 0, 0]

    def rewrite(txn, part):
        stats = [0, 0, 0]
        for key in part:
            raw = txn.get(key, db=db)
            if raw is None or raw[0] != _blocks.FORMAT:
                continue  # deleted or rewritten since the scan
            new = _blocks.encode(*_blocks.decode(raw))
            if new[0] == _blocks.FORMAT_2 and len(new) < len(raw):
                env.mark_format(txn, _blocks.REPOSITORY_FORMAT_2)
                txn.put(key, new, db=db)
                stats[0] += 1
                stats[1] += len(raw)
                stats[2] += len(new)
        return stats

    for i in range(0, len(keys), batch):
        stats = env.write(lambda txn: rewrite(txn, keys[i:i + batch]))
        done = [a + b for a, b in zip(done, stats)]
    return tuple(done)
