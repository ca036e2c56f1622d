"""Column tables over a repository and the cache that keeps them.

A :class:`RunTable` is an immutable snapshot of every run (one row per run) taken
from ``repo._scan_runs()`` (or mapped, or refreshed); a :class:`SeqTable` has one
row per sequence of a ``SeqBase`` (query/seqbase.py) plus one *virtual* row for each run without any
sequence, so that ``repo.query("run.x == 1 or seq.last < 0.5")`` still sees runs
that have not tracked anything yet.

Columns are built lazily, per name, the first time a query or a collection
needs them: a query over ``run.hparams.lr`` never pays for flattening the other
params of 100,000 runs.

:class:`ColumnCache` keeps the tables of one ``Repo`` and checks
``repo._versions()`` (one LMDB read) on every request, so a commit made by any
process is visible to the next query.  The two halves are versioned apart: a
training loop that only appends points invalidates the sequence table, not the
run table, and a new run only re-maps the sequence rows onto the new run rows
instead of rescanning every summary.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Iterable

import numpy as np

from ..storage.gc import gc_paused
from . import runkeys
from .seqbase import FLOAT_FIELDS, INT_FIELDS, SeqBase  # noqa: F401  (SeqBase lived here: re-exported)
from .vectors import MISSING, Column

RUN_ATTRS = (
    "id",
    "name",
    "experiment",
    "tags",
    "status",
    "created_at",
    "ended_at",
    "duration",
    "description",
    "parent",
    "archived",
    "hostname",
    "pid",
)
SEQ_FIELDS = ("name", "context", "type", "count", "first_step", "last_step", "last", "min", "max")
SUMMARY_FIELDS = ("count", "first_step", "last_step", "last", "min", "max")
DATE_ATTRS = ("created_at", "ended_at")


def walk(node: Any, path: tuple) -> Any:
    """``node[path[0]][path[1]]...`` through dicts (str keys) and lists (int keys), or MISSING."""
    for key in path:
        t = type(node)
        if t is dict:
            node = node.get(key, MISSING) if type(key) is str else MISSING
        elif t is list:
            if type(key) is str:  # dotted keys spell list indices as text: "layers.0"
                key = int(key) if key.lstrip("-").isdigit() else None
            if type(key) is not int or not -len(node) <= key < len(node):
                return MISSING
            node = node[key]
        else:
            return MISSING
        if node is MISSING:
            return MISSING
    return node


def leaf_paths(trees: Iterable[dict]) -> list[tuple]:
    """Every leaf path (dicts walked, lists are leaves) in first-appearance order."""
    seen: dict = {}

    def visit(node: dict, prefix: tuple) -> None:
        for key, value in node.items():
            path = prefix + (key,)
            if type(value) is dict and value:
                visit(value, path)
            else:
                seen[path] = None

    shapes: set = set()
    for tree in trees:
        # Most runs of a sweep share one shape; skip the walk for a shape already seen.
        shape = _shape(tree)
        if shape in shapes:
            continue
        shapes.add(shape)
        visit(tree, ())
    return list(seen)


def _shape(tree: dict) -> Any:
    return tuple((k, _shape(v) if type(v) is dict else None) for k, v in tree.items())


class RunTable:
    """One row per run: ids, records, params, and lazily built columns."""

    def __init__(self, rows: list, version: Any = None, repo: Any = None, runs: list | None = None) -> None:
        self.version = version
        # Weak: the table lives in the repo's cache, and a strong reference back
        # would keep every Repo (and its LMDB environment) alive until a GC pass.
        self._repo_ref = weakref.ref(repo) if repo is not None and _weakrefable(repo) else (lambda r=repo: r)
        self._ids: list | None = [r[0] for r in rows]
        self._raw_ids: np.ndarray | None = None  # the ids as 12-byte keys (runkeys), made on first use
        self._index: dict | None = None
        self._records: list | None = [r[1] for r in rows]
        self._params: list | None = [r[2] if r[2] is not None else {} for r in rows]
        self.n = len(rows)
        self.runs = runs  # Run objects given by the caller (standalone tables), else None
        self._cols: dict = {}
        self._paths: list | None = None
        self._stored: dict = {}  # columns of the persisted snapshot, decoded on first use
        self._paths_superset = False  # _paths may hold paths no run has (after a refresh)
        self.snapshotted = False

    @classmethod
    def from_snapshot(cls, ids: list, stored: dict, paths: list, version: Any, repo: Any) -> RunTable:
        """A table whose columns come from the persisted snapshot; records and
        params are scanned only if something needs the dicts themselves."""
        self = cls([], version, repo)
        self._raw_ids = ids  # 12-byte ids, mapped: the strings and the index are made on first use
        self._ids = self._index = None
        self.n = len(ids) // 12
        self._records = self._params = None
        self._stored = stored
        self._paths = paths
        self.snapshotted = True
        return self

    def _load_dicts(self) -> None:
        from ..storage.gc import gc_paused

        with gc_paused():
            rows = {rid: (rec, params) for rid, rec, params in self.repo._scan_runs()}
        # The repository may have moved on since the snapshot: keep this table's rows.
        self._params = [rows.get(rid, ({}, {}))[1] or {} for rid in self.ids]
        self._records = [rows.get(rid, ({}, {}))[0] for rid in self.ids]

    @property
    def ids(self) -> list:
        if self._ids is None:
            self._ids = runkeys.decode_ids(self._raw_ids)
        return self._ids

    @property
    def raw_ids(self) -> np.ndarray:
        """The ids as one flat uint8 array of 12-byte keys (ValueError: not run ids)."""
        if self._raw_ids is None:
            self._raw_ids = runkeys.encode_ids(self.ids)
        return self._raw_ids

    @property
    def index(self) -> dict:
        """Run id -> row."""
        if self._index is None:
            self._index = {rid: i for i, rid in enumerate(self.ids)}
        return self._index

    @property
    def records(self) -> list:
        if self._records is None:
            self._load_dicts()
        return self._records

    @property
    def params(self) -> list:
        if self._params is None:
            self._load_dicts()
        return self._params

    @property
    def repo(self) -> Any:
        return self._repo_ref()

    @classmethod
    def from_runs(cls, runs: list) -> RunTable:
        """A standalone table built from Run objects (runs of several repos, or not yet committed)."""
        rows = []
        for run in runs:
            rec = {a: getattr(run, a, None) for a in RUN_ATTRS if a not in ("id", "duration")}
            rec["tags"] = list(rec.get("tags") or [])
            rec["env"] = getattr(run, "env", None)
            rows.append((run.id, rec, run.params))
        return cls(rows, None, None, list(runs))

    def attr(self, name: str) -> Column:
        key = ("attr", name)
        col = self._cols.get(key)
        if col is None:
            col = self._stored_column(key)
            if col is None:
                col = self._build_attr(name)
            if name != "duration":  # a running run's duration grows: recomputed per query
                self._cols[key] = col
        return col

    def _build_attr(self, name: str) -> Column:
        if name == "id":
            return self._id_column()
        if name in ("created_at", "ended_at", "pid"):
            vals = [r.get(name) for r in self.records]
            arr = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
            if name == "pid":
                mask = ~np.isnan(arr)
                return Column.numeric(arr, mask, np.where(mask, arr, 0).astype(np.int64))
            return Column.numeric(arr)
        if name == "duration":  # like Run.duration: to now while running
            created, ended = self.attr("created_at").num, self.attr("ended_at").num
            status = self.attr("status")
            running_code = status.cat_index().get("running") if status.codes is not None else None
            running = np.isnan(ended) & (status.codes == running_code) if running_code is not None else None
            ended = ended.copy()
            if running is not None:
                ended[running] = time.time()
            return Column.numeric(ended - created)
        if name == "archived":
            return Column.boolean(np.array([bool(r.get("archived")) for r in self.records], dtype=bool))
        if name == "tags":
            return Column.from_values([list(r.get("tags") or []) for r in self.records])
        return Column.from_values([r.get(name) for r in self.records])

    def _id_column(self) -> Column:
        """``run.id``: ids are unique and (from a repository) already in key order,
        which is their sorted order as hex text: codes are the rows, no sort, no dict."""
        try:
            in_order = runkeys.strictly_sorted(runkeys.as_keys(self.raw_ids))
        except ValueError:  # a standalone table of foreign ids
            in_order = False
        if not in_order:
            return Column.strings(self.n, np.arange(self.n), self.ids)
        col = Column(self.n)
        col.codes = np.arange(self.n, dtype=np.int32)
        col.cats = np.empty(self.n, dtype=object)
        col.cats[:] = self.ids
        return col

    def env(self, path: tuple) -> Column:
        """``run.env.<path>``: the environment captured at run start (kept in the record)."""
        key = ("env", path)
        col = self._cols.get(key)
        if col is None:
            col = self._cols[key] = Column.from_values([walk(r.get("env") or {}, path) for r in self.records])
        return col

    def param(self, path: tuple) -> Column:
        key = ("param", path)
        col = self._cols.get(key)
        if col is None and self._stored:
            skey = ("param", tuple(map(str, path)))
            col = self._stored_column(skey)
            if col is not None:
                self._cols[key] = col
            elif skey in self._stored:
                pass  # a refreshed column that cannot be told exactly: built from the params below
            elif path and self._params is None and _snapshot().missing_param(self._paths or [], path):
                col = self._cols[key] = Column(self.n)  # no run has it: no need to decode every params tree
        if col is None:
            if not path:
                col = Column.from_values(list(self.params))
            elif len(path) == 1 and type(path[0]) is str:
                k = path[0]
                col = Column.from_values([p.get(k, MISSING) for p in self.params])
            else:
                col = Column.from_values([walk(p, path) for p in self.params])
            self._cols[key] = col
        return col

    def _stored_column(self, key: tuple) -> Column | None:
        """A column of the persisted snapshot (decoded now), or of an older table
        patched by a refresh (query/refresh.py); None when there is none."""
        entry = self._stored.get(key)
        if entry is None:
            return None
        if type(entry) is tuple:
            return _snapshot().decode_column(entry)
        return entry.column()

    def param_paths(self) -> list[tuple]:
        if self._paths is None:
            self._paths = leaf_paths(self.params)
        elif self._paths_superset:
            from .refresh import exact_paths

            self._paths = exact_paths(self, self._paths)
            self._paths_superset = False
        return self._paths

    def has_param(self, path: tuple) -> bool:
        return bool(self.param(path).present().any())


class SeqTable:
    """One row per sequence (real rows first) plus virtual rows for runs without sequences."""

    def __init__(self, base: SeqBase, run_table: RunTable) -> None:
        self.base = base
        self.run_table = run_table
        ridx = base.rows_in(run_table)
        keep = ridx >= 0  # sequences of runs created after the run scan: seen next time
        self.real_rows = np.flatnonzero(keep)  # rows of base
        counts = np.bincount(ridx[keep], minlength=run_table.n)
        self.virtual_runs = np.flatnonzero(counts == 0)
        self.n_real = len(self.real_rows)
        self.n = self.n_real + len(self.virtual_runs)
        self.run_idx = np.concatenate([ridx[keep], self.virtual_runs]).astype(np.int64)
        self.real = np.zeros(self.n, dtype=bool)
        self.real[: self.n_real] = True
        self._all_real = bool(keep.all())
        self._cols: dict = {}

    def column(self, field: str, path: tuple = ()) -> Column:
        key = (field, path)
        col = self._cols.get(key)
        if col is None:
            col = self.base.column(field, path)
            if not self._all_real:
                col = col.take(self.real_rows)
            col = col.pad(len(self.virtual_runs))
            self._cols[key] = col
        return col

    def run_column(self, getter: Any, key: Any) -> Column:
        """A run-table column broadcast onto the sequence rows."""
        ck = ("run", key)
        col = self._cols.get(ck)
        if col is None:
            col = getter().take(self.run_idx)
            self._cols[ck] = col
        return col

    def base_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows of this table (real ones) as rows of the scan (``base``)."""
        return self.real_rows[rows]


class ColumnCache:
    """The tables of one repository, rebuilt (in halves) when ``repo._versions()`` moves."""

    def __init__(self, repo: Any) -> None:
        self._repo_ref = weakref.ref(repo) if _weakrefable(repo) else (lambda r=repo: r)
        self._runs: RunTable | None = None
        self._base: SeqBase | None = None
        self._seqs: SeqTable | None = None
        self._lock = threading.Lock()

    @property
    def repo(self) -> Any:
        return self._repo_ref()

    def runs(self) -> RunTable:
        return self.tables(False)[0]

    def tables(self, need_seqs: bool = True) -> tuple[RunTable, SeqTable | None]:
        repo = self.repo
        if need_seqs:
            _flush_own_runs(repo)
        with self._lock:
            # Read the versions *before* scanning: a commit landing during the scan
            # leaves the table stamped older than its content, so the next call
            # rescans instead of missing that commit.
            runs_version, seqs_version = repo._versions()
            snap = _snapshot() if _snapshot().enabled(repo) else None
            if self._runs is None or self._runs.version != runs_version:
                stored = snap.load_runs(repo, runs_version) if snap is not None else None
                if stored is not None:
                    self._runs = RunTable.from_snapshot(*stored, runs_version, repo)
                else:
                    # The run table of an older version (this process's, else the newest
                    # persisted half) is patched with the runs changed since.
                    older = self._runs
                    if older is None and snap is not None:
                        found = snap.load_older_runs(repo, runs_version)
                        older = RunTable.from_snapshot(*found[1], found[0], repo) if found is not None else None
                    patched = None
                    if older is not None:
                        from .refresh import refresh_runs

                        with gc_paused():
                            patched = refresh_runs(repo, older)
                    if patched is not None:
                        self._runs = patched
                    else:
                        with gc_paused():
                            self._runs = RunTable(repo._scan_runs(), runs_version, repo)
                    if snap is not None and snap.writable(repo):
                        snap.schedule(snap.save_runs, repo, self._runs)
            if not need_seqs:
                return self._runs, None
            if self._base is None or self._base.version != seqs_version:
                data = snap.load_seqs(repo, seqs_version) if snap is not None else None
                older = None
                if data is None:
                    # Columns of an older version (this process's, else the newest
                    # persisted half) are patched with the runs changed since.
                    older = self._base
                    if older is None and snap is not None:
                        found = snap.load_older_seqs(repo, seqs_version)
                        older = SeqBase(found[1], found[0]) if found is not None else None
                    if older is not None:
                        from .refresh import refresh

                        with gc_paused():
                            older = refresh(repo, older)
                if data is not None:
                    self._base = SeqBase(data, seqs_version)
                elif older is not None:
                    self._base = older
                    if snap is not None and snap.writable(repo):
                        snap.schedule(snap.save_seqs, repo, self._base)
                else:
                    with gc_paused():
                        self._base = SeqBase.from_scan(repo._iter_sequences(), seqs_version)
                    if snap is not None and snap.writable(repo):
                        snap.schedule(snap.save_seqs, repo, self._base)
                self._seqs = None
            if self._seqs is None or self._seqs.run_table is not self._runs or self._seqs.base is not self._base:
                self._seqs = SeqTable(self._base, self._runs)
            return self._runs, self._seqs


def _snapshot() -> Any:
    from . import snapshot

    return snapshot


def _flush_own_runs(repo: Any) -> None:
    """Read your own writes: points this process tracked but has not flushed yet
    (the flush interval is about a second) are committed before a sequence query."""
    from ..tracking import lifecycle as _lifecycle
    from ..errors import RepositoryError

    for run in _lifecycle.live_runs():
        if run.repo == repo:
            try:
                run._flush()  # a run's own flush error is its own: never fail a query for it
            except RepositoryError:  # a full disk is the writer's problem, reported there
                pass


def _weakrefable(obj: Any) -> bool:
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False


def cache_for(repo: Any) -> ColumnCache:
    """The ColumnCache of ``repo``'s repository, one per path and process.

    It is kept on the shared environment, not on the Repo object: a thousand
    ``Repo(path)`` objects in one process (one per request, per notebook cell)
    must cost what one does (119 s and 12 GB when each built its own columns).
    The cache refers back weakly to the Repo that asked last.
    """
    env = getattr(repo, "_env", None)
    env = getattr(env, "_env", env)  # unwrap a read-only view
    holder = env if env is not None else repo
    cache = getattr(holder, "_query_cache", None)
    if cache is None:
        cache = ColumnCache(repo)
        try:
            holder._query_cache = cache
        except AttributeError:  # pragma: no cover - no place to keep it: works, uncached
            pass
    elif cache.repo is not repo:
        cache._repo_ref = weakref.ref(repo) if _weakrefable(repo) else (lambda r=repo: r)
    return cache
