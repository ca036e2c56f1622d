"""Incremental refresh of the sequence summary columns (``SeqBase``).

A repository written every second never has summary columns (in memory or in
``query-snapshot/``) at the current sequences version, and rebuilding them means
decoding every sequence record (~1 s per 100,000 runs). Every commit that changes
a run's sequences names that run in the storage's change index
(``storage.records.sequences_changed_since``), so an older ``SeqBase`` is brought
up to date by dropping the rows of the changed runs and inserting their rows as
stored now, at the places a full scan would put them (rows are in key order: by
run id, then sequence id). The result is the table a full scan gives; only the
changed runs' records are decoded.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

import numpy as np

from .tables import FLOAT_FIELDS, INT_FIELDS, SeqBase

# Past this share of the repository's runs, re-reading them costs about a full scan.
MAX_CHANGED_SHARE = 0.5


def refresh(repo: Any, base: SeqBase) -> SeqBase | None:
    """``base`` brought up to the repository's current sequences version, or None
    when the change index cannot say what changed (or too much changed): scan."""
    since = getattr(repo, "_sequences_since", None)
    if since is None or not isinstance(base.version, int):
        return None
    found = since(base.version)
    if found is None:
        return None
    version, changed, rows = found
    if version == base.version:
        return base
    if len(changed) > max(64, MAX_CHANGED_SHARE * len(base.run_keys)):
        return None
    return patch(base, changed, rows, version)


def patch(base: SeqBase, changed: list, rows: list, version: Any) -> SeqBase:
    """A new SeqBase: ``base`` without the rows of the runs ``changed`` (sorted run
    ids), with ``rows`` ((run id, seq id, record) of those runs, in key order) in
    their place."""
    fresh = SeqBase.from_scan(rows)
    d, f = base.data, fresh.data
    # Run ids: the interned list stays sorted (codes grow with key order) so that
    # sorting rows by code sorts them as the storage does. A run that was deleted
    # keeps its (unused) entry.
    keys = list(base.run_keys)
    known = {k: i for i, k in enumerate(keys)}
    new_keys = sorted(k for k in fresh.run_keys if k not in known)
    if new_keys:
        at = [bisect_left(keys, k) for k in new_keys]  # places in the old list
        shift = np.searchsorted(np.array(at, dtype=np.int64), np.arange(len(keys)), side="right")
        old_code = np.arange(len(keys), dtype=np.int64) + shift
        merged: list = []
        prev = 0
        for pos, k in zip(at, new_keys):
            merged.extend(keys[prev:pos])
            merged.append(k)
            prev = pos
        merged.extend(keys[prev:])
        keys = merged
        known = {k: i for i, k in enumerate(keys)}
    else:
        old_code = np.arange(len(keys), dtype=np.int64)
    drop = np.zeros(len(base.run_keys), dtype=bool)
    for k in changed:
        i = bisect_left(base.run_keys, k)
        if i < len(base.run_keys) and base.run_keys[i] == k:
            drop[i] = True
    keep = ~drop[d["run_of"]] if base.n else np.zeros(0, dtype=bool)
    kept_idx = np.flatnonzero(keep)
    kept_run = old_code[d["run_of"][kept_idx]] if len(kept_idx) else np.empty(0, np.int64)
    new_run = np.array([known[k] for k in fresh.run_keys], dtype=np.int64)[f["run_of"]] if fresh.n \
        else np.empty(0, np.int64)
    # Rows of a changed run are all new, so each new row goes before the first kept
    # row of a later run (np.insert keeps the new rows' own order).
    pos = np.searchsorted(kept_run, new_run, side="left")

    names = list(base.names)
    name_code = {n: i for i, n in enumerate(names)}
    for n in fresh.names:
        if n not in name_code:
            name_code[n] = len(names)
            names.append(n)
    name_map = np.array([name_code[n] for n in fresh.names], dtype=np.int32)
    ctxs = list(base.ctx_values)
    ctx_code = {repr(c): i for i, c in enumerate(ctxs)}
    ctx_map_list = []
    for c in fresh.ctx_values:
        code = ctx_code.get(repr(c))
        if code is None:
            code = ctx_code[repr(c)] = len(ctxs)
            ctxs.append(c)
        ctx_map_list.append(code)
    ctx_map = np.array(ctx_map_list, dtype=np.int32)

    def merge(old: np.ndarray, new: np.ndarray) -> np.ndarray:
        return np.insert(old[kept_idx], pos, new)

    data: dict = {"run_keys": keys, "names": names, "contexts": ctxs}
    data["run_of"] = np.insert(kept_run.astype(np.int32), pos, new_run.astype(np.int32))
    data["seq_id"] = merge(d["seq_id"], f["seq_id"])
    data["name_of"] = merge(d["name_of"], name_map[f["name_of"]] if fresh.n else f["name_of"])
    data["ctx_of"] = merge(d["ctx_of"], ctx_map[f["ctx_of"]] if fresh.n else f["ctx_of"])
    for field in INT_FIELDS + FLOAT_FIELDS:
        for k in (field, field + ".present"):
            data[k] = merge(d[k], f[k])
    # Rows moved: renumber the extras (kept row j lands after the new rows placed at or before it).
    extras: dict = {}
    if base.extras:
        new_index = np.full(base.n, -1, dtype=np.int64)
        new_index[kept_idx] = np.arange(len(kept_idx)) + np.searchsorted(pos, np.arange(len(kept_idx)), side="right")
        for i, more in base.extras.items():
            j = int(new_index[int(i)])
            if j >= 0:
                extras[j] = more
    for i, more in fresh.extras.items():
        extras[int(pos[i]) + int(i)] = more
    data["extras"] = extras
    return SeqBase(data, version)
