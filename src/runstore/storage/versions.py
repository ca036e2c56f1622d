"""Version counters and the change index (``Environment.bump``).

RUNS_VERSION and SEQS_VERSION count the commits that changed runs (records,
params) or sequences; a named bump also indexes the runs it changed (RUN_AT /
RUN_CHANGED, SEQ_AT / SEQ_CHANGED in env.py), so a reader brings its cached
columns up to date by re-reading only those runs. Split out of env.py.
"""

from __future__ import annotations

import struct
from typing import Any

from . import env as _env  # (env imports this module first: its names are read at call time)

_U64 = struct.Struct(">Q")


def bump(env: Any, txn: Any, key: bytes, runs: Any = None) -> None:
    """Grow a version counter in ``txn``. For SEQS_VERSION and RUNS_VERSION, ``runs``
    (12-byte run keys) names the runs whose sequences (records, params) changed; they
    are indexed (two small puts per run, at most one per run and version) so a reader
    can ask which runs changed since a version. A bump that names no runs breaks the
    chain of named bumps (see SEQS_CHAIN_START): readers then re-read everything,
    never a stale answer.

    Named bumps of one counter in one transaction share one version (readers only
    ever see committed versions): a run created and closed in one transaction bumped
    the runs version three times (record, params, closing record), and each bump
    re-indexed the run (issue 22, target 3)."""
    meta = env.dbs["meta"]
    index = _env.CHANGE_INDEX.get(key)
    done = env._bumped.get(key)
    if done is not None and done[0] is txn and runs is not None:
        _, packed, logged = done  # this transaction's version; only runs not yet named
    else:
        raw = txn.get(key, db=meta)
        version = (_U64.unpack(raw)[0] if raw else 0) + 1
        packed = _U64.pack(version)
        txn.put(key, packed, db=meta)
        if index is None or runs is None:
            env._bumped.pop(key, None)  # unnamed: the next named bump starts a new version
            return
        upto = txn.get(index[2], db=meta)
        if upto is None or _U64.unpack(upto)[0] != version - 1:
            txn.put(index[3], packed, db=meta)
        txn.put(index[2], packed, db=meta)
        logged = set()
        # (the transaction itself is held: a later one can never be the same object)
        env._bumped[key] = (txn, packed, logged)
    run_at, changed = index[0], index[1]
    for run in runs:
        run = bytes(run)
        if run in logged:
            continue
        logged.add(run)
        at = run_at + run
        old = txn.get(at, db=meta)
        if old is not None:
            txn.delete(changed + bytes(old) + run, db=meta)
        txn.put(at, packed, db=meta)
        txn.put(changed + packed + run, b"", db=meta)

