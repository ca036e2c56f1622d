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

from typing import Any

import numpy as np

from . import runkeys
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
    if len(changed) > max(64, MAX_CHANGED_SHARE * len(base.key_raw) // runkeys.KEY_BYTES):
        return None
    return patch(base, changed, rows, version)


def patch(base: SeqBase, changed: list, rows: list, version: Any) -> SeqBase:
    """A new SeqBase: ``base`` without the rows of the runs ``changed`` (sorted run
    ids), with ``rows`` ((run id, seq id, record) of those runs, in key order) in
    their place.

    ``base``'s rows are sorted by run code and its run ids are sorted, so the rows
    of a changed run are one contiguous range (empty for a new run): the result is
    the old rows cut at those ranges with the fresh rows in between, each column
    copied once by one concatenation of slices."""
    fresh = SeqBase.from_scan(rows)
    d, f = base.data, fresh.data
    # Run ids as sorted 12-byte keys: the old table's are mapped from the snapshot,
    # never turned into a million strings here.
    old_keys = runkeys.as_keys(base.key_raw)
    ch = runkeys.as_keys(runkeys.encode_ids(changed))
    fresh_keys = runkeys.as_keys(fresh.key_raw)
    run_of = d["run_of"]
    # The run id list stays sorted (a run that was deleted keeps its unused entry),
    # so codes keep growing with key order.
    at = np.searchsorted(old_keys, ch)
    known = at < len(old_keys)
    known[known] = old_keys[at[known]] == ch[known]
    new_at = at[~known]
    keys = np.insert(old_keys, new_at, ch[~known]) if len(new_at) else old_keys
    # An old code moves up by the number of new ids inserted before it.
    shift = np.searchsorted(new_at, np.arange(len(old_keys)), side="right").astype(np.int32) if len(new_at) else None
    fresh_code = np.searchsorted(keys, fresh_keys)
    # Cut points: for each changed run, the range of its old rows and of its fresh rows.
    f_run_of = f["run_of"]
    a_old = np.searchsorted(run_of, at, side="left")
    b_old = np.where(known, np.searchsorted(run_of, at, side="right"), a_old)
    j = np.searchsorted(fresh_keys, ch)
    has_fresh = j < len(fresh_keys)
    has_fresh[has_fresh] = fresh_keys[j[has_fresh]] == ch[has_fresh]
    a_new = np.searchsorted(f_run_of, j, side="left")
    b_new = np.searchsorted(f_run_of, j, side="right")
    pieces: list = []  # (True, start, stop) of old rows, (False, start, stop) of fresh rows
    prev = 0
    for a, b, fresh_here, fa, fb in zip(a_old.tolist(), b_old.tolist(), has_fresh.tolist(),
                                        a_new.tolist(), b_new.tolist()):
        if a > prev:
            pieces.append((True, prev, a))
        if fresh_here:
            pieces.append((False, fa, fb))
        prev = max(prev, b)
    if base.n > prev:
        pieces.append((True, prev, base.n))

    def merge(old: np.ndarray, new: np.ndarray) -> np.ndarray:
        parts = [old[a:b] if is_old else new[a:b] for is_old, a, b in pieces]
        return np.concatenate(parts) if parts else old[:0].copy()

    names = list(base.names)
    name_code = {n: i for i, n in enumerate(names)}
    for n in fresh.names:
        if n not in name_code:
            name_code[n] = len(names)
            names.append(n)
    ctxs = list(base.ctx_values)
    ctx_code = {repr(c): i for i, c in enumerate(ctxs)}
    ctx_map = []
    for c in fresh.ctx_values:
        code = ctx_code.get(repr(c))
        if code is None:
            code = ctx_code[repr(c)] = len(ctxs)
            ctxs.append(c)
        ctx_map.append(code)

    def codes(table: list, col: np.ndarray) -> np.ndarray:
        return np.array(table, dtype=np.int32)[col] if len(col) else col.astype(np.int32)

    old_run_of = (run_of + shift[run_of]) if shift is not None and base.n else run_of
    data: dict = {"run_keys.raw": keys.view(np.uint8), "names": names, "contexts": ctxs}
    data["run_of"] = merge(old_run_of.astype(np.int32, copy=False), codes(fresh_code, f_run_of))
    data["seq_id"] = merge(d["seq_id"], f["seq_id"])
    data["name_of"] = merge(d["name_of"], codes([name_code[n] for n in fresh.names], f["name_of"]))
    data["ctx_of"] = merge(d["ctx_of"], codes(ctx_map, f["ctx_of"]))
    for field in INT_FIELDS + FLOAT_FIELDS:
        for k in (field, field + ".present"):
            data[k] = merge(d[k], f[k])
    # Rows moved: renumber the extras by the piece they fall in.
    extras: dict = {}
    out = 0
    old_extras = {int(i): v for i, v in base.extras.items()} if base.extras else {}
    for is_old, a, b in pieces:
        src = old_extras if is_old else fresh.extras
        if src:
            for i in range(a, b) if b - a < len(src) else sorted(i for i in src if a <= i < b):
                more = src.get(i)
                if more:
                    extras[out + i - a] = more
        out += b - a
    data["extras"] = extras
    return SeqBase(data, version)
