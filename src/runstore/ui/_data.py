"""What the UI's routes ask of a repository, through the public API only.

Every function here takes plain Python values (already parsed from the
request) and returns Arrow tables or plain dicts; ``app.py`` only translates
HTTP to these calls and back.  Runs and sequences are selected with the query
language (``repo.query``/``repo.query_sequences``), tables come from
``RunCollection.to_arrow`` and points from ``SequenceCollection.to_numpy``.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute below; pandas used to import it as a side effect)

from runstore import Repo, RunstoreError
from runstore.errors import QueryWarning

# Columns every runs-table page carries (the user's chosen columns come after).
BASE_COLUMNS = ("id", "name", "experiment", "status", "tags", "created_at", "duration", "archived")
ATTRIBUTES = ("id", "name", "experiment", "description", "status", "tags", "created_at", "ended_at",
              "duration", "parent", "archived", "hostname", "pid")
SUMMARY_FIELDS = ("last", "min", "max", "count", "first_step", "last_step")
MAX_PAGE = 1000


class UIError(RunstoreError, ValueError):
    """A request the UI cannot serve (bad parameter); the message says which and why."""


def quote(text: str) -> str:
    """A string literal of the query language (Python escapes)."""
    return repr(str(text))


def selection_query(ids: list[str] | None, q: str | None) -> str:
    """Query text selecting runs by explicit ids or by a run query."""
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise UIError("'runs' must be a list of run ids (strings)")
        if not ids:
            return "run.id in []"
        return "run.id in [" + ", ".join(quote(i) for i in ids) + "]"
    return f"({q})" if q and q.strip() else ""


def context_key(name: str, context: dict) -> str:
    """``loss[subset=val]``: the spelling ``run.get`` and the runs table use."""
    if not context:
        return name
    flat = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k in sorted(value):
                walk(f"{prefix}.{k}" if prefix else str(k), value[k])
        else:
            flat.append(f"{prefix}={value}")

    walk("", context)
    return f"{name}[{','.join(flat)}]"


# -- arrow helpers ------------------------------------------------------------------------------
def js_friendly(table: pa.Table) -> pa.Table:
    """Types Arrow JS hands to a page as plain numbers: timestamps as float64 unix seconds,
    int64 as float64 (BigInt arithmetic is slow and error-prone), nested values as JSON."""
    cols, names = [], []
    for name, col in zip(table.column_names, table.columns):
        t = col.type
        if pa.types.is_timestamp(t):
            col = pa.compute.divide(col.cast(pa.int64()).cast(pa.float64()), 1e6 if t.unit == "us" else
                                    {"s": 1.0, "ms": 1e3, "ns": 1e9}[t.unit])
        elif pa.types.is_integer(t) and t.bit_width == 64:
            col = col.cast(pa.float64())
        elif pa.types.is_list(t) and pa.types.is_null(t.value_type):
            col = col.cast(pa.list_(pa.string()))  # lists that are all empty (tags of untagged runs)
        elif pa.types.is_struct(t) or pa.types.is_map(t) or (pa.types.is_list(t) and not pa.types.is_string(t.value_type)):
            col = pa.array([None if v is None else json.dumps(v, default=str) for v in col.to_pylist()], pa.string())
        elif pa.types.is_null(t):
            col = col.cast(pa.string())
        cols.append(col)
        names.append(name)
    return pa.table(cols, names=names)


def ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


# -- runs ---------------------------------------------------------------------------------------
class UIRepo:
    """The repository as the UI sees it, with small time-bounded caches for what is costly
    to recompute on every keystroke (the schema for autocomplete)."""

    SCHEMA_TTL = 5.0

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self._schema: tuple[float, dict] | None = None
        self._lock = threading.Lock()

    # runs table
    def runs(self, q: str | None, sort: str | None, desc: bool, offset: int, limit: int,
             columns: list[str]) -> tuple[pa.Table, int]:
        if not 0 < limit <= MAX_PAGE:
            raise UIError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        if offset < 0:
            raise UIError(f"offset must be >= 0, got {offset}")
        # catch_warnings swaps process-wide state: at worst a concurrent request's warning is
        # shown with this one, which is harmless for a hint under the query box
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", QueryWarning)
            runs = self.repo.query(q or None)
        notes = [str(w.message) for w in caught if issubclass(w.category, QueryWarning)]
        if sort:
            runs = runs.sort(sort, reverse=desc)
        elif desc:
            runs = runs[::-1]  # creation order, newest first
        page = runs[offset: offset + limit]
        # The fixed columns come from the page's Run objects (a hundred attribute reads, well
        # under a millisecond); asking to_arrow for "id" or "tags" would first build those
        # columns for every run of the repository, which costs seconds at 100,000 runs.
        fixed = [(r.id, r.handle, r.name, r.experiment, r.status, list(r.tags), r.created_at, r.duration,
                  r.archived) for r in page]
        cols = list(zip(*fixed)) if fixed else [()] * 9
        types = [pa.string(), pa.string(), pa.string(), pa.string(), pa.string(), pa.list_(pa.string()),
                 pa.float64(), pa.float64(), pa.bool_()]
        table = pa.table([pa.array(list(c), t) for c, t in zip(cols, types)],
                         names=["id", "handle", *BASE_COLUMNS[1:]])
        extra = [c for c in dict.fromkeys(columns) if c not in BASE_COLUMNS and c != "handle"]
        if extra:
            chosen = js_friendly(page.to_arrow(*extra)) if len(page) else _empty_page(extra)
            for name in chosen.column_names:
                table = table.append_column(name, chosen.column(name))
        return table, len(runs), notes

    def groups(self, q: str | None, key: str) -> list[dict]:
        runs = self.repo.query(q or None)
        col = runs.to_list(key, default=None)
        counts: dict = {}
        for v in col:
            k = json.dumps(v, default=str, sort_keys=True) if isinstance(v, (list, dict)) else v
            counts[k] = counts.get(k, 0) + 1
        return [{"value": k, "count": c} for k, c in sorted(counts.items(), key=lambda kv: -kv[1])]

    def ids(self, q: str | None, sort: str | None = None, desc: bool = True, offset: int = 0,
            limit: int | None = None) -> list[str]:
        """Run ids matching a query, in the table's order (a slice of it for shift-click ranges)."""
        runs = self.repo.query(q or None)
        if sort:
            runs = runs.sort(sort, reverse=desc)
        elif desc:
            runs = runs[::-1]
        if offset < 0 or (limit is not None and limit < 0):
            raise UIError("offset and limit must be >= 0")
        return runs[offset: None if limit is None else offset + limit].ids

    def schema(self) -> dict:
        """Keys for autocomplete and the column picker: run attributes, param paths (those that
        vary across runs first) and sequence summaries."""
        with self._lock:
            now = time.monotonic()
            if self._schema and now - self._schema[0] < self.SCHEMA_TTL:
                return self._schema[1]
            runs = self.repo.query(None)
            table = runs.to_arrow()
            params = []
            for name in table.column_names:
                if name in ("id", "name", "experiment", "status", "tags", "created_at", "ended_at"):
                    continue
                col = table.column(name)
                try:
                    distinct = len(pa.compute.unique(col))
                except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                    distinct = 2
                params.append({"key": name, "varies": distinct > 1, "distinct": distinct})
            params.sort(key=lambda p: (not p["varies"], p["key"]))
            seqs: dict = {}
            for _, name, ctx in self.repo.query_sequences("seq.type == 'float'").keys:  # curves only
                key = context_key(name, ctx)
                entry = seqs.setdefault(key, {"key": key, "name": name, "context": ctx, "runs": 0})
                entry["runs"] += 1
            contexts: dict[str, set] = {}
            for s in seqs.values():
                _context_paths("", s["context"], contexts)
            out = {
                "runs": len(runs),
                "attributes": list(ATTRIBUTES),
                "params": params,
                "sequences": sorted(seqs.values(), key=lambda s: s["key"]),
                "summary_fields": list(SUMMARY_FIELDS),
                "seq_fields": ["name"] + list(SUMMARY_FIELDS),
                "contexts": {k: sorted(map(str, v)) for k, v in sorted(contexts.items())},
            }
            self._schema = (now, out)
            return out

    # one run
    def run_detail(self, run_id: str) -> dict:
        run = self.repo.get_run(run_id)
        seqs = []
        for name, ctx in run.sequences():
            s = run.sequence(name, ctx)
            seqs.append({"name": name, "context": ctx, "key": context_key(name, ctx), "type": s.type, "count": s.count,
                         "first_step": s.first_step, "last_step": s.last_step, "last": _num(s.last),
                         "min": _num(s.min), "max": _num(s.max),
                         "system": name.startswith(("__system", "system/", "sys/"))})
        children = [{"id": c.id, "handle": c.handle, "name": c.name, "status": c.status}
                    for c in run.children]
        parent = None
        if run.parent:
            try:
                p = self.repo.get_run(run.parent)
                parent = {"id": p.id, "handle": p.handle, "name": p.name, "status": p.status}
            except RunstoreError:
                parent = {"id": run.parent, "handle": run.parent[:8], "name": None, "status": "deleted"}
        artifacts = [{k: a.get(k) for k in ("name", "kind", "size", "created_at")} for a in run.artifacts]
        return {
            "id": run.id, "handle": run.handle, "name": run.name, "experiment": run.experiment,
            "description": run.description, "status": run.status, "tags": list(run.tags),
            "created_at": run.created_at, "ended_at": run.ended_at, "duration": run.duration,
            "archived": run.archived, "hostname": run.hostname, "pid": run.pid,
            "params": _plain(run.params), "sequences": seqs, "artifacts": artifacts,
            "parent": parent, "children": children,
        }

    def edit(self, run_id: str, change: dict) -> dict:
        """Apply the editable fields (name, description, tags, archived); nothing else writes."""
        allowed = {"name", "description", "tags", "add_tags", "remove_tags", "archived"}
        unknown = set(change) - allowed
        if unknown:
            raise UIError(f"cannot edit {sorted(unknown)}: only {sorted(allowed)} are editable")
        _check_edit(change)
        run = self.repo.get_run(run_id)
        if "name" in change:
            run.name = change["name"] or None
        if "description" in change:
            run.description = change["description"] or None
        if "tags" in change:
            current = set(run.tags)
            for t in change["tags"]:
                if t not in current:
                    run.add_tag(t)
            for t in current - set(change["tags"]):
                run.remove_tag(t)
        for t in change.get("add_tags", []):
            if t not in run.tags:
                run.add_tag(t)
        for t in change.get("remove_tags", []):
            if t in run.tags:
                run.remove_tag(t)
        if "archived" in change:
            run.archived = change["archived"]
        run.refresh()
        return {"id": run.id, "name": run.name, "description": run.description, "tags": list(run.tags),
                "archived": run.archived}

    def artifact_path(self, run_id: str, name: str):
        run = self.repo.get_run(run_id)
        for a in run.artifacts:
            if a["name"] == name:
                from pathlib import Path

                path = Path(a["path"])
                root = self.repo.path.resolve()
                if root not in path.resolve().parents:  # only files inside the repository
                    raise UIError(f"artifact {name!r} is outside the repository")
                return path
        return None

    # -- sequences and curves ------------------------------------------------------------------
    def curves(self, spec: dict) -> tuple[dict, Iterator[bytes]]:
        """Downsampled points of one chart, as an Arrow IPC stream (see ``_curve_stream``)."""
        from ._curve_stream import CurveStream

        return CurveStream(self.repo).curves(spec)

    def metrics(self, ids: list[str] | None, q: str | None) -> list[dict]:
        """(name, context) pairs tracked by the selected runs, with how many runs have each."""
        sel = selection_query(ids, q)
        seqs = self.repo.query_sequences("seq.type == 'float'" + (f" and ({sel})" if sel else ""))
        out: dict = {}
        for _, name, ctx in seqs.keys:
            key = context_key(name, ctx)
            e = out.setdefault(key, {"key": key, "name": name, "context": ctx, "runs": 0})
            e["runs"] += 1
        return sorted(out.values(), key=lambda e: (e["name"].startswith("__"), e["key"]))

def _check_edit(change: dict) -> None:
    for key in ("name", "description"):
        if key in change and change[key] is not None and not isinstance(change[key], str):
            raise UIError(f"{key!r} must be a string or null")
    for key in ("tags", "add_tags", "remove_tags"):
        if key in change and not (isinstance(change[key], list) and all(isinstance(t, str) and t for t in change[key])):
            raise UIError(f"{key!r} must be a list of non-empty strings")
    if "archived" in change and not isinstance(change["archived"], bool):
        raise UIError("'archived' must be true or false")


def _context_paths(prefix: str, ctx: dict, out: dict) -> None:
    for k, v in ctx.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            _context_paths(path, v, out)
        else:
            out.setdefault(path, set()).add(v)


def _empty_page(keys: list[str]) -> pa.Table:
    return pa.table({k: pa.array([], pa.string()) for k in keys})


def _num(v: Any) -> Any:
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
