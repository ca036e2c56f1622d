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

from ..storage.gc import gc_paused
from . import runkeys
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
        n = self.n
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


INT_FIELDS = ("count", "first_step", "last_step")
FLOAT_FIELDS = ("last", "min", "max", "first_ts", "last_ts")
# Identity, and keys the storage keeps for itself (tracking/sequence.py's _INTERNAL):
# "sorted_steps" is in every record written since issue 11; kept as an extra it cost
# a dict per sequence (and 19 MB of snapshot meta per 1 M sequences).
_NOT_SUMMARY = ("name", "context", "blocks", "sorted_steps")
_KNOWN_KEYS = frozenset(_NOT_SUMMARY + INT_FIELDS + FLOAT_FIELDS)


class _Rows:
    """A read-only list-like view ``get(i)`` over the rows of a SeqBase."""

    __slots__ = ("_n", "_get")

    def __init__(self, n: int, get: Any) -> None:
        self._n, self._get = n, get

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> Any:
        return self._get(int(i))

    def __iter__(self) -> Any:
        return (self._get(i) for i in range(self._n))


class SeqBase:
    """The scanned summaries of every sequence, independent of the run table, as
    typed columns: one row costs ~90 bytes (a dict per summary cost ~2.3 KB).

    Run ids, names and contexts are interned (int32 codes into lists of the
    distinct values); the summary numbers are int64/float64 arrays with a mask
    of the rows that have them. Keys this layer does not know (kept by newer
    writers) are kept per row in ``extras``.
    """

    def __init__(self, data: dict, version: Any = None) -> None:
        self.version = version
        self.data = data
        self.n = len(data["seq_id"])
        # Run ids: a list of hex strings (from a scan) or 12-byte keys (from a
        # snapshot, a refresh); each made from the other on first use.
        self._run_keys: list | None = data.get("run_keys")
        self._key_raw: np.ndarray | None = data.get("run_keys.raw")
        self.names: list = data["names"]
        self.ctx_values: list = data["contexts"]
        self.extras: dict = data.get("extras") or {}
        run_of, seq_id = data["run_of"], data["seq_id"]
        self.run_ids = _Rows(self.n, lambda i: self.run_keys[run_of[i]])
        self.seq_ids = _Rows(self.n, lambda i: int(seq_id[i]))
        self.summaries = _Rows(self.n, self.summary)
        self._cols: dict = {}

    @property
    def run_keys(self) -> list:
        """The distinct run ids, sorted (``data["run_of"]`` codes into this list)."""
        if self._run_keys is None:
            self._run_keys = runkeys.decode_ids(self._key_raw)
        return self._run_keys

    @property
    def key_raw(self) -> np.ndarray:
        """``run_keys`` as one flat uint8 array of 12-byte keys (ValueError: not run ids)."""
        if self._key_raw is None:
            self._key_raw = runkeys.encode_ids(self._run_keys)
        return self._key_raw

    def rows_in(self, run_table: RunTable) -> np.ndarray:
        """For every row, the row of its run in ``run_table`` (-1: not there), joined
        on the 12-byte keys: one compare when both list the same runs (the usual
        case), else one searchsorted; no id strings, no dict of a million ids."""
        run_of = self.data["run_of"]
        try:
            mine, theirs = self.key_raw, run_table.raw_ids
        except ValueError:  # ids that are not run ids (standalone tables)
            return self.run_rows(run_table.index)
        if np.array_equal(mine, theirs):
            return run_of.astype(np.int64)
        per_run = runkeys.rows_of(runkeys.as_keys(mine), runkeys.as_keys(theirs))
        return per_run[run_of] if self.n else np.empty(0, dtype=np.int64)

    @classmethod
    def from_scan(cls, rows: Iterable, version: Any = None) -> SeqBase:
        """Build from (run_id, seq_id, summary dict) rows, consumed one at a time."""
        from array import array

        run_keys: dict = {}
        names: dict = {}
        ctxs: dict = {}
        ctx_list: list = []
        run_of, seq_ids, name_of, ctx_of = array("i"), array("q"), array("i"), array("i")
        fields = INT_FIELDS + FLOAT_FIELDS
        flat: list = []  # the summary numbers, row-major; typed once, by NumPy, after the loop
        extras: dict = {}
        get_ctx = ctxs.get
        last_run, last_code = None, -1
        for i, (run_id, seq_id, summ) in enumerate(rows):
            if run_id is not last_run:  # rows come grouped by run
                last_run, last_code = run_id, run_keys.setdefault(run_id, len(run_keys))
            run_of.append(last_code)
            seq_ids.append(seq_id)
            name_of.append(names.setdefault(summ.get("name"), len(names)))
            ctx = summ.get("context") or {}
            key = repr(ctx)  # tells 1, 1.0 and True apart, as the stored records do
            code = get_ctx(key)
            if code is None:
                code = ctxs[key] = len(ctx_list)
                ctx_list.append(ctx)
            ctx_of.append(code)
            flat.extend(map(summ.get, fields))
            if not summ.keys() <= _KNOWN_KEYS:  # e.g. "type" of an object sequence
                extras[i] = {k: v for k, v in summ.items() if k not in _KNOWN_KEYS}
        n = len(seq_ids)
        data = {
            "run_keys": list(run_keys), "names": list(names), "contexts": ctx_list, "extras": extras,
            "run_of": np.frombuffer(run_of, dtype=np.int32) if n else np.empty(0, np.int32),
            "seq_id": np.frombuffer(seq_ids, dtype=np.int64) if n else np.empty(0, np.int64),
            "name_of": np.frombuffer(name_of, dtype=np.int32) if n else np.empty(0, np.int32),
            "ctx_of": np.frombuffer(ctx_of, dtype=np.int32) if n else np.empty(0, np.int32),
        }
        table = np.array(flat, dtype=object).reshape(n, len(fields)) if n else np.empty((0, len(fields)), object)
        for j, f in enumerate(fields):
            data[f], data[f + ".present"] = _typed(table[:, j], f in INT_FIELDS)
        return cls(data, version)

    def nbytes(self) -> int:
        """Bytes of the typed arrays (the interned lists and their values not counted)."""
        return sum(v.nbytes for v in self.data.values() if isinstance(v, np.ndarray))

    def summary(self, i: int) -> dict:
        """The summary dict of row ``i`` (a fresh dict; its context is a copy)."""
        d = self.data
        out: dict = {"name": self.names[d["name_of"][i]], "context": _copy_tree(self.ctx_values[d["ctx_of"][i]])}
        for f in INT_FIELDS:
            out[f] = int(d[f][i]) if d[f + ".present"][i] else None
        for f in FLOAT_FIELDS:
            out[f] = float(d[f][i]) if d[f + ".present"][i] else None
        more = self.extras.get(i)
        if more:
            out.update(more)
        return out

    def run_rows(self, lookup: dict) -> np.ndarray:
        """For every row, the row of its run in a run table's ``index`` (-1: not there)."""
        per_run = np.fromiter((lookup.get(r, -1) for r in self.run_keys), dtype=np.int64, count=len(self.run_keys))
        return per_run[self.data["run_of"]] if self.n else np.empty(0, dtype=np.int64)

    def column(self, field: str, path: tuple = ()) -> Column:
        key = (field, path)
        col = self._cols.get(key)
        if col is None:
            d = self.data
            if field == "context":
                per_ctx = [walk(c, path) for c in self.ctx_values]
                col = Column.from_values(per_ctx).take(d["ctx_of"]) if self.n else Column(0)
            elif field == "name":
                col = _coded_strings(d["name_of"], self.names)
            elif field == "type":  # "float", or the object type kept in the record (issue 13)
                types = ["float"]
                per_row = np.zeros(self.n, dtype=np.int32)
                for i, more in self.extras.items():
                    if more.get("type"):
                        types.append(more["type"])
                        per_row[int(i)] = len(types) - 1
                col = _coded_strings(per_row, types)
            elif field in INT_FIELDS:
                arr, ok = d[field], d[field + ".present"]
                col = Column.numeric(np.where(ok, arr, np.nan).astype(np.float64), ok.copy(), arr)
            elif field in FLOAT_FIELDS:
                arr, ok = d[field], d[field + ".present"]
                col = Column.numeric(arr, ok & ~np.isnan(arr))
            else:
                col = Column.from_values([self.extras.get(i, {}).get(field, MISSING) for i in range(self.n)])
            self._cols[key] = col
        return col

    def contexts(self, rows: Iterable[int]) -> list[dict]:
        ctx_of = self.data["ctx_of"]
        return [self.ctx_values[ctx_of[i]] for i in rows]


def _coded_strings(codes: np.ndarray, values: list) -> Column:
    """A string column from per-row codes into ``values`` without a Python string per
    row: only the distinct values used are sorted into categories."""
    n = len(codes)
    if not n:
        return Column(0)
    used = np.flatnonzero(np.bincount(codes, minlength=len(values)))
    if any(type(values[c]) is not str for c in used.tolist()):  # not all strings: the general path
        return Column.from_values([values[c] for c in codes.tolist()])
    cats = sorted({values[c] for c in used.tolist()})
    lookup = {s: i for i, s in enumerate(cats)}
    remap = np.full(len(values), -1, dtype=np.int32)
    for c in used.tolist():
        remap[c] = lookup[values[c]]
    col = Column(n)
    col.codes = remap[codes]
    col.cats = np.empty(len(cats), dtype=object)
    col.cats[:] = cats
    col._cat_index = lookup
    return col


def _typed(values: np.ndarray, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    """(int64 or float64 array, mask of the rows holding a number) from an object column."""
    kinds = {type(v) for v in values.tolist()} if len(values) else set()
    present = np.fromiter((type(v) in (int, float) for v in values.tolist()), dtype=bool, count=len(values)) \
        if not kinds <= {int, float, type(None)} or type(None) in kinds else np.ones(len(values), dtype=bool)
    if integer:
        out = np.zeros(len(values), dtype=np.int64)
        if present.any():
            vals = values[present]
            if float in kinds:  # an integral float (old writers); anything else is not a count/step
                ok = np.array([v == v and float(v).is_integer() for v in vals.tolist()], dtype=bool)
                idx = np.flatnonzero(present)
                present[idx[~ok]] = False
                vals = vals[ok]
            out[present] = np.array([int(v) for v in vals.tolist()], dtype=np.int64) if float in kinds \
                else vals.astype(np.int64)
        return out, present
    out = np.full(len(values), np.nan)
    if present.any():
        out[present] = values[present].astype(np.float64)
    return out, present


def _copy_tree(node: Any) -> Any:
    if type(node) is dict:
        return {k: _copy_tree(v) for k, v in node.items()}
    if type(node) is list:
        return [_copy_tree(v) for v in node]
    return node


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
