"""Fixed-width big-endian keys, so that LMDB's byte order is the natural order.

* runs, params:  run id (12 bytes)
* seqs:          run id + sequence id (u32)
* blocks:        run id + sequence id (u32) + block number (u32)

A run id is 6 bytes of milliseconds since the Unix epoch followed by 6 bytes
that are random for the first id of a process and then incremented, so ids made
by one process are strictly increasing and ids made by several processes are
ordered by creation time to the millisecond (the idea of ULID / UUIDv7).
Shown to users as 24 lowercase hex characters.
"""

from __future__ import annotations

import os
import struct
import threading
import time

RUN_ID_BYTES = 12
_SEQ = struct.Struct(">I")
_SEQ_BLOCK = struct.Struct(">II")

_lock = threading.Lock()
_last = 0  # the last id made by this process, as an int


def new_run_id(at: float | None = None) -> str:
    """A new run id; ``at`` (seconds) backdates it for a run imported from another
    tracker, so it sorts where the run really started. A backdated id skips the
    process counter (48 random bits keep it unique; the caller checks anyway)."""
    global _last
    if at is not None:
        return ((int(at * 1000) << 48) | int.from_bytes(os.urandom(6), "big")).to_bytes(RUN_ID_BYTES, "big").hex()
    now_ms = int(time.time() * 1000)
    with _lock:
        candidate = (now_ms << 48) | int.from_bytes(os.urandom(6), "big")
        if candidate <= _last:  # same millisecond (or a clock step back): keep ordering
            candidate = _last + 1
        _last = candidate
    return candidate.to_bytes(RUN_ID_BYTES, "big").hex()


def _reset_after_fork() -> None:
    # A child must not continue its parent's counter: it would mint the same ids.
    global _last
    _last = 0


os.register_at_fork(after_in_child=_reset_after_fork)


def run_key(run_id: str) -> bytes:
    try:
        key = bytes.fromhex(run_id)
    except (ValueError, TypeError):
        key = b""
    if len(key) != RUN_ID_BYTES:
        from ..errors import RunNotFoundError

        raise RunNotFoundError(
            f"{run_id!r} is not a run id (a run id is {2 * RUN_ID_BYTES} hex characters, "
            "as shown by run.id or `runstore ls`)"
        )
    return key


def run_id_of(key: bytes) -> str:
    return bytes(key[:RUN_ID_BYTES]).hex()


def seq_key(run: bytes, seq_id: int) -> bytes:
    return run + _SEQ.pack(seq_id)


def seq_id_of(key: bytes) -> int:
    return _SEQ.unpack_from(key, RUN_ID_BYTES)[0]


def block_key(run: bytes, seq_id: int, block_no: int) -> bytes:
    return run + _SEQ_BLOCK.pack(seq_id, block_no)


def block_no_of(key: bytes) -> int:
    return _SEQ_BLOCK.unpack_from(key, RUN_ID_BYTES)[1]


def run_created_at(run_id: str) -> float:
    """Creation time encoded in the id (seconds)."""
    return (int(run_id[:12], 16)) / 1000.0
