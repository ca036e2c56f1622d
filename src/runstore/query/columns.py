"""Column tables over a repository and the cache that keeps them.

A :class:`RunTable` is an immutable snapshot of every run (one row per run) taken
from ``repo._scan_runs()``; a :class:`SeqTable` has one row per sequence from
``repo._scan_sequences()`` plus one *virtual* row for each run without any
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

from .._gc import gc_paused
from .column import MISSING, Column

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
SEQ_FIELDS = ("name", "context", "count", "first_step", "last_step", "last", "min", "max")
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
        self.ids = [r[0] for r in rows]
        self.records = [r[1] for r in rows]
        self.params = [r[2] if r[2] is not None else {} for r in rows]
        self.n = len(rows)
        self.index = {rid: i for i, rid in enumerate(self.ids)}
        self.runs = runs  # Run objects given by the caller (standalone tables), else None
        self._cols: dict = {}
        self._paths: list | None = None

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
            rows.append((run.id, rec, run.params))
        return cls(rows, None, None, list(runs))

    def attr(self, name: str) -> Column:
        key = ("attr", name)
        col = self._cols.get(key)
        if col is None:
            col = self._build_attr(name)
            if name != "duration":  # a running run's duration grows: recomputed per query
                self._cols[key] = col
        return col

    def _build_attr(self, name: str) -> Column:
        n = self.n
        if name == "id":
            return Column.strings(n, np.arange(n), self.ids)
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

    def param(self, path: tuple) -> Column:
        key = ("param", path)
        col = self._cols.get(key)
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

    def param_paths(self) -> list[tuple]:
        if self._paths is None:
            self._paths = leaf_paths(self.params)
        return self._paths

    def has_param(self, path: tuple) -> bool:
        return bool(self.param(path).present().any())


class SeqTable:
    """One row per sequence (real rows first) plus virtual rows for runs without sequences."""

    def __init__(self, base: SeqBase, run_table: RunTable) -> None:
        self.base = base
        self.run_table = run_table
        lookup = run_table.index
        ridx = np.fromiter((lookup.get(r, -1) for r in base.run_ids), dtype=np.int64, count=base.n)
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


class SeqBase:
    """The scanned summaries of every sequence, independent of the run table."""

    def __init__(self, scan: list, version: Any = None) -> None:
        self.version = version
        self.n = len(scan)
        self.run_ids = [s[0] for s in scan]
        self.seq_ids = [s[1] for s in scan]
        self.summaries = [s[2] for s in scan]
        self._cols: dict = {}

    def column(self, field: str, path: tuple = ()) -> Column:
        key = (field, path)
        col = self._cols.get(key)
        if col is None:
            if field == "context":
                col = Column.from_values([walk(s.get("context") or {}, path) for s in self.summaries])
            elif field == "name":
                col = Column.strings(self.n, np.arange(self.n), [s["name"] for s in self.summaries])
            else:
                vals = [s.get(field) for s in self.summaries]
                arr = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
                ints = None
                if field in ("count", "first_step", "last_step"):
                    ints = np.where(np.isnan(arr), 0, arr).astype(np.int64)
                col = Column.numeric(arr, ~np.isnan(arr), ints)
            self._cols[key] = col
        return col

    def contexts(self, rows: Iterable[int]) -> list[dict]:
        return [self.summaries[i].get("context") or {} for i in rows]


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
            if self._runs is None or self._runs.version != runs_version:
                with gc_paused():
                    self._runs = RunTable(repo._scan_runs(), runs_version, repo)
            if not need_seqs:
                return self._runs, None
            if self._base is None or self._base.version != seqs_version:
                with gc_paused():
                    self._base = SeqBase(repo._scan_sequences(), seqs_version)
                self._seqs = None
            if self._seqs is None or self._seqs.run_table is not self._runs or self._seqs.base is not self._base:
                self._seqs = SeqTable(self._base, self._runs)
            return self._runs, self._seqs


def _flush_own_runs(repo: Any) -> None:
    """Read your own writes: points this process tracked but has not flushed yet
    (the flush interval is about a second) are committed before a sequence query."""
    from .. import _lifecycle
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
    """The ColumnCache of ``repo``, kept on the Repo object (the cache refers back weakly)."""
    cache = getattr(repo, "_query_cache", None)
    if cache is None:
        cache = ColumnCache(repo)
        try:
            repo._query_cache = cache
        except AttributeError:  # pragma: no cover - a Repo with __slots__: works, uncached
            pass
    return cache
