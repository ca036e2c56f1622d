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
import warnings
import time
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute below; pandas used to import it as a side effect)

from runstore import Repo, RunstoreError
from runstore.errors import QueryWarning

from . import _curves

# Columns every runs-table page carries (the user's chosen columns come after).
BASE_COLUMNS = ("id", "name", "experiment", "status", "tags", "created_at", "duration", "archived")
ATTRIBUTES = ("id", "name", "experiment", "description", "status", "tags", "created_at", "ended_at",
              "duration", "parent", "archived", "hostname", "pid")
SUMMARY_FIELDS = ("last", "min", "max", "count", "first_step", "last_step")
MAX_PAGE = 1000
MAX_POINTS = 20_000
# Sequences read per record batch of /api/curves: the first batch leaves the
# server before the rest is read.
CHUNK = 128


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


class _Chunks:
    """A write-only file collecting what the IPC writer produces, so a generator can
    yield each record batch as soon as it is encoded."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


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
            for _, name, ctx in self.repo.query_sequences(None).keys:
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
            seqs.append({"name": name, "context": ctx, "key": context_key(name, ctx), "count": s.count,
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
    def metrics(self, ids: list[str] | None, q: str | None) -> list[dict]:
        """(name, context) pairs tracked by the selected runs, with how many runs have each."""
        sel = selection_query(ids, q)
        seqs = self.repo.query_sequences(sel or None)
        out: dict = {}
        for _, name, ctx in seqs.keys:
            key = context_key(name, ctx)
            e = out.setdefault(key, {"key": key, "name": name, "context": ctx, "runs": 0})
            e["runs"] += 1
        return sorted(out.values(), key=lambda e: (e["name"].startswith("__"), e["key"]))

    def curves(self, spec: dict) -> tuple[dict, Iterator[bytes]]:
        """Downsampled points of one chart (one metric name and context over many runs), as an
        Arrow IPC stream: a schema whose metadata describes every series, then record batches
        of ``series`` (int32), ``x`` and ``y`` (plus ``lo``/``hi`` for groups)."""
        p = _curve_params(spec)
        sel = selection_query(p["runs"], p["q"])
        text = f"seq.name == {quote(p['name'])}" + (f" and {sel}" if sel else "")
        want = p["context"]
        for path, value in _leaves("", want or {}):
            if isinstance(value, (str, int, float, bool)):
                literal = quote(value) if isinstance(value, str) else repr(value)
                text += f" and seq.context.{path} == {literal}"
        found = self.repo.query_sequences(text)
        keys = found.keys
        exact = [i for i, k in enumerate(keys) if want is None or (k[2] or {}) == want][: p["max_series"]]
        if len(exact) == len(keys):
            reader = lambda a, b: found[a:b].to_numpy()  # noqa: E731  one read transaction per chunk
            seqs = list(found)
        else:
            seqs = [found[i] for i in exact]
            reader = lambda a, b: [s.numpy() for s in seqs[a:b]]  # noqa: E731
        run_ids = list(dict.fromkeys(s.run.id for s in seqs))
        info = self._run_info(run_ids, {f: p[f] for f in ("group", "color") if p[f]})
        lo, hi = p["range"] if p["range"] else (None, None)
        if p["x"] == "step" and lo is not None:
            span = max(1.0, hi - lo)
        else:
            span = max([(s.last_step or 0) - (s.first_step or 0) + 1 for s in seqs if s.count] or [1])
        w = _curves.bucket_width(span, p["points"])
        since = p["since"] if p["bucket"] == w else {}
        if not p["smooth"] and (since or (p["range"] and p["x"] == "step")):
            # Only part of each curve is wanted (live points after a cursor, or a zoomed step
            # range) and no smoothing needs the points before it: read just those blocks.
            reader = self._partial_reader(seqs, since, p["range"] if p["x"] == "step" else None)
        series = []
        for i, s in enumerate(seqs):
            rid = s.run.id
            last = s.last_step if s.last_step is not None else -1
            series.append({"run": rid, "handle": s.run.handle, "run_name": info[rid]["name"],
                           "status": info[rid]["status"], "name": s.name, "context": s.context,
                           "count": s.count, "cursor": (last // w) * w if w > 1 else last + 1,
                           "since": since.get(rid),
                           **{f"{k}_value": info[rid].get(k) for k in ("group", "color") if k in p and p[k]}})
        meta = {"bucket": w, "x": p["x"], "smooth": p["smooth"], "range": p["range"],
                "replace": not since, "series": series, "grouped": bool(p["group"])}
        if p["group"]:
            return meta, self._grouped_stream(p, seqs, reader, info, w, meta)
        return meta, self._series_stream(p, seqs, reader, info, w, meta)

    @staticmethod
    def _partial_reader(seqs: list, since: dict, step_range: list | None):
        def read(a: int, b: int) -> list[dict]:
            out = []
            for s in seqs[a:b]:
                start = since.get(s.run.id)
                stop = None
                if step_range is not None:
                    lo = int(np.floor(step_range[0]))
                    start = lo if start is None else max(start, lo)
                    stop = int(np.floor(step_range[1])) + 1
                pts = s.range(start, stop)
                out.append({"steps": pts.steps, "values": pts.values, "epochs": pts.epochs,
                            "timestamps": pts.timestamps})
            return out

        return read

    def _run_info(self, run_ids: list[str], keys: dict[str, str]) -> dict:
        info = {rid: {} for rid in run_ids}
        if not run_ids:
            return info
        runs = self.repo.query(selection_query(run_ids, None))
        t = js_friendly(runs.to_arrow("id", "name", "status", "created_at"))
        for rid, name, status, created in zip(*(t.column(c).to_pylist() for c in ("id", "name", "status", "created_at"))):
            info[rid].update(name=name, status=status, created_at=created)
        for field, key in keys.items():
            for rid, v in zip(runs.ids, runs.to_list(key, default=None)):
                info[rid][field] = v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v, default=str)
        return info

    def _points(self, p: dict, seqs: list, reader, info: dict, since: dict) -> Iterator[tuple]:
        """Per chunk of sequences: (series index per point, steps, x, y), smoothed, range-cut,
        and cut at each series' cursor, ready for bucketing."""
        for start in range(0, len(seqs), CHUNK):
            part = seqs[start: start + CHUNK]
            coll_items = reader(start, start + len(part))
            sid, st, xs, ys = [], [], [], []
            for j, item in enumerate(coll_items):
                steps, y = item["steps"], item["values"]
                epochs, times = item["epochs"], item["timestamps"]
                steps, y, epochs, times = _curves.sorted_by_step(steps, y, epochs, times)
                y = _curves.ema(y, p["smooth"]) if p["smooth"] else y
                t0 = info[part[j].run.id].get("created_at") or (times[0] if len(times) else 0.0)
                x = _curves.x_values(p["x"], steps, epochs, times, t0)
                keep = None
                if p["range"]:
                    keep = (x >= p["range"][0]) & (x <= p["range"][1])
                cursor = since.get(part[j].run.id)
                if cursor is not None:
                    c = steps >= cursor
                    keep = c if keep is None else keep & c
                if keep is not None:
                    steps, x, y = steps[keep], x[keep], y[keep]
                sid.append(np.full(len(steps), start + j, dtype=np.int32))
                st.append(steps)
                xs.append(x)
                ys.append(y)
            yield (_curves.concat(sid, np.int32), _curves.concat(st, np.int64), _curves.concat(xs, np.float64),
                   _curves.concat(ys, np.float64))

    def _series_stream(self, p, seqs, reader, info, w, meta) -> Iterator[bytes]:
        ydtype = pa.float32() if p["precision"] == 32 else pa.float64()
        # steps as int32 when they fit (half the bytes of float64; JS does plain arithmetic on it)
        xtype = pa.int32() if p["x"] == "step" and all((s.last_step or 0) < 2**31 and (s.first_step or 0) >= -2**31
                                                         for s in seqs) else pa.float64()
        fields = [("series", pa.int32()), ("x", xtype), ("y", ydtype)]
        with_step = p["x"] != "step"  # live clients cut at a step cursor; in step mode x is the step
        if with_step:
            fields.append(("step", pa.float64()))
        schema = pa.schema(fields, metadata={"runstore": json.dumps(meta, default=str)})
        since = {s["run"]: s["since"] for s in meta["series"] if s["since"] is not None}

        def gen():
            sink = _Chunks()
            writer = pa.ipc.new_stream(sink, schema)
            yield sink.take()
            for sid, steps, x, y in self._points(p, seqs, reader, info, since):
                idx = _curves.pick_indices(sid, steps, y, w)
                xs = steps[idx].astype(np.int32) if xtype == pa.int32() else x[idx]
                cols = [pa.array(sid[idx]), pa.array(xs), pa.array(y[idx]).cast(ydtype)]
                if with_step:
                    cols.append(pa.array(steps[idx].astype(np.float64)))
                batch = pa.record_batch(cols, schema=schema)
                writer.write_batch(batch)
                yield sink.take()
            writer.close()
            yield sink.take()

        return gen()

    def _grouped_stream(self, p, seqs, reader, info, w, meta) -> Iterator[bytes]:
        values = [info[s.run.id].get("group") for s in seqs]
        labels = list(dict.fromkeys(json.dumps(v, default=str) for v in values))
        index = {lab: i for i, lab in enumerate(labels)}
        seq_group = np.array([index[json.dumps(v, default=str)] for v in values], dtype=np.int64)
        members = np.bincount(seq_group, minlength=len(labels)) if len(labels) else np.zeros(0, np.int64)
        meta["groups"] = [{"value": json.loads(lab), "runs": int(members[i])} for i, lab in enumerate(labels)]
        meta["band"] = p["band"]
        gw = max(w, 1)
        schema = pa.schema([("series", pa.int32()), ("x", pa.float64()), ("y", pa.float64()),
                            ("lo", pa.float64()), ("hi", pa.float64())],
                           metadata={"runstore": json.dumps(meta, default=str)})

        def gen():
            parts = [_curves.bucket_means(sid.astype(np.int64), steps, x, y, gw)
                     for sid, steps, x, y in self._points(p, seqs, reader, info, {})]
            cat = [np.concatenate([pt[k] for pt in parts]) if parts else np.empty(0) for k in range(4)]
            g, x, y, lo, hi, _ = _curves.group_curves(seq_group, cat[0].astype(np.int64), cat[1].astype(np.int64),
                                                      cat[2], cat[3], p["band"])
            table = pa.table({"series": pa.array(np.asarray(g, dtype=np.int32)), "x": x, "y": y, "lo": lo, "hi": hi},
                             schema=schema)
            yield ipc_bytes(table)

        return gen()


def _leaves(prefix: str, ctx: dict):
    for k, v in ctx.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            yield from _leaves(path, v)
        else:
            yield path, v


def _curve_params(spec: dict) -> dict:
    def num(key, default, lo, hi, kind=float):
        v = spec.get(key, default)
        try:
            v = kind(v)
        except (TypeError, ValueError):
            raise UIError(f"{key!r} must be a number, got {spec.get(key)!r}") from None
        if not lo <= v <= hi:
            raise UIError(f"{key!r} must be between {lo} and {hi}, got {v}")
        return v

    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise UIError("'name' (the metric name) is required")
    ctx = spec.get("context")
    if isinstance(ctx, str):
        try:
            ctx = json.loads(ctx) if ctx else None
        except json.JSONDecodeError:
            raise UIError(f"'context' must be a JSON object, got {ctx!r}") from None
    if ctx is not None and not isinstance(ctx, dict):
        raise UIError("'context' must be a JSON object such as {\"subset\": \"train\"}")
    x = spec.get("x", "step")
    if x not in _curves.X_MODES:
        raise UIError(f"'x' must be one of {list(_curves.X_MODES)}, got {x!r}")
    rng = spec.get("range")
    if isinstance(rng, str):
        rng = [float(v) for v in rng.split(",")] if rng else None
    if rng is not None:
        if not (isinstance(rng, (list, tuple)) and len(rng) == 2) or not all(isinstance(v, (int, float)) for v in rng):
            raise UIError("'range' must be two numbers [low, high] on the x axis")
        rng = [float(min(rng)), float(max(rng))]
    since = spec.get("since") or {}
    if isinstance(since, str):
        since = json.loads(since)
    if not isinstance(since, dict):
        raise UIError("'since' must map run ids to step cursors")
    band = spec.get("band", "minmax")
    if band not in ("minmax", "std"):
        raise UIError(f"'band' must be 'minmax' or 'std', got {band!r}")
    runs = spec.get("runs")
    if isinstance(runs, str):
        runs = [r for r in runs.split(",") if r]
    return {
        "name": name, "context": ctx, "x": x, "range": rng, "band": band,
        "points": int(num("points", 2000, 8, MAX_POINTS, int)),
        "smooth": num("smooth", 0.0, 0.0, 0.999),
        "precision": _precision(spec.get("precision", 32)),
        "bucket": int(num("bucket", 0, 0, 2 ** 62, int)),
        "since": {str(k): int(v) for k, v in since.items()},
        "runs": runs, "q": spec.get("q"),
        "group": spec.get("group") or None, "color": spec.get("color") or None,
        "max_series": int(num("max_series", 5000, 1, 100_000, int)),
    }


def _precision(value: Any) -> int:
    """y values travel as float32 by default (7 significant digits are more than a chart
    shows, and half the bytes); 64 asks for full precision."""
    if str(value) not in ("32", "64"):
        raise UIError(f"'precision' must be 32 or 64, got {value!r}")
    return int(value)


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
