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
    found = _changes(repo, "_sequences_since", base.version,
                     max(64, MAX_CHANGED_SHARE * len(base.key_raw) // runkeys.KEY_BYTES))
    if found is None:
        return None
    version, changed, rows = found
    return base if version == base.version else patch(base, changed, rows, version)


def _changes(repo: Any, hook: str, version: Any, limit: float) -> tuple | None:
    """(current version, changed run ids, their rows) since ``version`` from the
    repository's change index (``hook``: ``_sequences_since`` or ``_runs_since``);
    None when it cannot tell, or more than ``limit`` runs changed: scan instead."""
    since = getattr(repo, hook, None)
    if since is None or not isinstance(version, int):
        return None
    found = since(version)
    if found is None or len(found[1]) > limit:
        return None
    return found


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


# -- the run table ----------------------------------------------------------------------
def refresh_runs(repo: Any, table: Any) -> Any:
    """The run table ``table`` brought up to the repository's current runs version,
    or None (scan) when the change index cannot say what changed, too much changed,
    or the table is not in key order. Only the changed runs' records and params are
    read; every column is made from the older one when first used (:class:`Patched`)."""
    if table.runs is not None:
        return None
    found = _changes(repo, "_runs_since", table.version, max(64, MAX_CHANGED_SHARE * table.n))
    if found is None:
        return None
    version, changed, rows = found
    if version == table.version:
        return table
    try:
        return patch_runs(table, changed, rows, version)
    except ValueError:  # ids that are not 12-byte run keys
        return None


def patch_runs(table: Any, changed: list, rows: list, version: Any) -> Any:
    """A new RunTable: ``table`` without the rows of the runs ``changed`` (sorted
    ids), with ``rows`` ((id, record, params) of those that exist, in key order)
    in key order among the others."""
    from .tables import RunTable, leaf_paths

    old = runkeys.as_keys(table.raw_ids)
    if not runkeys.strictly_sorted(old):
        return None
    ch = runkeys.as_keys(runkeys.encode_ids(changed))
    at = np.searchsorted(old, ch)
    known = at < len(old)
    known[known] = old[at[known]] == ch[known]
    keep = np.ones(len(old), dtype=bool)
    keep[at[known]] = False
    kept = np.flatnonzero(keep)
    fresh_keys = runkeys.as_keys(runkeys.encode_ids([r[0] for r in rows]))
    ins = np.searchsorted(old[kept], fresh_keys)
    # New row -> row of (old rows, then fresh rows).
    order = np.insert(kept, ins, table.n + np.arange(len(rows)))
    fresh = RunTable(rows)
    step = (_Order(order), fresh)

    new = RunTable([], version, table.repo)
    new._raw_ids = np.insert(old[kept], ins, fresh_keys).view(np.uint8)
    new.n = len(order)
    new.snapshotted = table.snapshotted
    new._index = None
    new._ids = _spliced(table._ids, fresh._ids, order)
    new._records = _spliced(table._records, fresh._records, order)
    new._params = _spliced(table._params, fresh._params, order)
    entries: dict = {}
    for key, entry in table._stored.items():
        entries[key] = entry.then(step) if isinstance(entry, Patched) else Patched(entry, key, [step])
    for key, col in table._cols.items():
        if key[0] == "attr" and key[1] not in ("id", "duration"):
            entries[key] = Patched(col, key, [step])
        elif key[0] == "param":
            entries[("param", tuple(map(str, key[1])))] = Patched(col, ("param", key[1]), [step])
    if new._params is None:  # mapped columns: leaf paths of the older table, then the new ones
        paths = list(table._paths or [])
        seen = {tuple(map(str, p)) for p in paths}
        for path in leaf_paths(fresh.params):
            if tuple(map(str, path)) not in seen:
                paths.append(path)
                entries[("param", tuple(map(str, path)))] = Patched(table.n, ("param", path), [step])
        new._paths = paths
        new._paths_superset = True  # a superset (what no run has any more stays): exact when asked
        for path in paths:  # the older table's paths as spelled (ints stay ints)
            k = ("param", tuple(map(str, path)))
            if k in entries:
                entries[k].key = ("param", path)
    else:
        new._paths = None  # exact, from the spliced params, when asked
    new._stored = entries
    return new


def _spliced(old: list | None, fresh: list | None, order: np.ndarray) -> list | None:
    if old is None:
        return None
    both = old + fresh
    return [both[i] for i in order.tolist()]


class _Order:
    """A row order kept as its runs of consecutive rows (a few per changed run, not
    8 bytes per row): a long-lived process patches many times."""

    __slots__ = ("starts", "lengths", "n")

    def __init__(self, order: np.ndarray) -> None:
        breaks = np.flatnonzero(np.diff(order) != 1) + 1 if len(order) else np.empty(0, np.int64)
        first = np.concatenate([[0], breaks]).astype(np.int64) if len(order) else np.empty(0, np.int64)
        self.starts = order[first] if len(order) else first
        self.lengths = np.diff(np.append(first, len(order)))
        self.n = len(order)

    def array(self) -> np.ndarray:
        offsets = np.cumsum(self.lengths) - self.lengths
        return np.arange(self.n, dtype=np.int64) + np.repeat(self.starts - offsets, self.lengths)


class Patched:
    """A column of a refreshed run table, made when first used: the older column
    (mapped from a snapshot, built, or absent: a row count) followed by the changed
    runs' fresh rows, put in key order, once per refresh since."""

    __slots__ = ("base", "key", "steps")

    def __init__(self, base: Any, key: tuple, steps: list) -> None:
        self.base, self.key, self.steps = base, key, steps

    def then(self, step: tuple) -> Patched:
        return Patched(self.base, self.key, self.steps + [step])

    def column(self) -> Any:
        """The column, or None when it cannot be told exactly (the caller builds it
        from the records): a numeric column with a float whose every remaining
        number is whole may have lost its last float with a changed run."""
        from . import snapshot
        from .vectors import Column

        base = self.base
        col = Column(base) if isinstance(base, int) else base if isinstance(base, Column) \
            else snapshot.decode_column(base)
        kind, arg = self.key
        for order, fresh in self.steps:
            part = fresh.attr(arg) if kind == "attr" else fresh.param(arg)
            idx = order.array()
            out = Column.concat(col, part).take(idx)
            if col.num is not None and col.ints is None and (part.num is None or part.ints is not None):
                kept = idx[idx < col.n]
                if int(col.num_mask[kept].sum()) < int(col.num_mask.sum()):  # numbers were dropped
                    nums = out.num[out.num_mask]
                    if len(nums) and bool(np.all(nums == np.floor(nums))):
                        return None  # was the last float among them (3.0 vs 3)? not known here
            col = out
        return col


def exact_paths(table: Any, candidates: list) -> list:
    """``leaf_paths`` of the table's params trees, from its columns: the candidate
    paths some run has, ordered as a scan orders them (by the first run having the
    path as a leaf, then by that run's tree walk). The params of those first runs
    are read (a few); when a path's first run does not have it as a leaf (another
    run has a dict or a list there), every tree is read, as before."""
    from .tables import leaf_paths

    firsts = []
    for path in candidates:
        present = table.param(path).present()
        if present.any():
            firsts.append((int(present.argmax()), path))
    rows = sorted({r for r, _ in firsts})
    repo = table.repo
    raw = table.raw_ids
    ids = [runkeys.decode_ids(raw[r * runkeys.KEY_BYTES:(r + 1) * runkeys.KEY_BYTES])[0] for r in rows]
    trees = repo._params_of(ids) if rows and repo is not None else []
    walk_pos = {}
    for r, tree in zip(rows, trees):
        for i, path in enumerate(leaf_paths([tree])):
            walk_pos[r, tuple(map(str, path))] = i
    if any((r, tuple(map(str, p))) not in walk_pos for r, p in firsts):
        return leaf_paths(table.params)
    firsts.sort(key=lambda rp: (rp[0], walk_pos[rp[0], tuple(map(str, rp[1]))]))
    return [p for _, p in firsts]
