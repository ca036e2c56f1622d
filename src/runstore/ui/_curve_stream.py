"""``/api/curves``: the points of one chart (one metric name and context over many runs),
downsampled with ``_curves`` and streamed as Arrow IPC, one record batch per chunk of
sequences, so the first curves leave the server before the last are read."""

from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from runstore import Repo

from . import _curves
from ._data import UIError, ipc_bytes, js_friendly, quote, selection_query

MAX_POINTS = 20_000
# Sequences read per record batch: the first batch leaves the server before the rest is read.
CHUNK = 128


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


class CurveStream:
    """Answers one /api/curves request over a repository."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    def curves(self, spec: dict) -> tuple[dict, Iterator[bytes]]:
        """Downsampled points of one chart (one metric name and context over many runs), as an
        Arrow IPC stream: a schema whose metadata describes every series, then record batches
        of ``series`` (int32), ``x`` and ``y`` (plus ``lo``/``hi`` for groups)."""
        p = _curve_params(spec)
        sel = selection_query(p["runs"], p["q"])
        # Curves are of float sequences; images, text, ... (issue 13) have no y to draw.
        text = f"seq.type == 'float' and seq.name == {quote(p['name'])}" + (f" and {sel}" if sel else "")
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
            reader = lambda a, b: [s.numpy() if s.count else _no_points() for s in seqs[a:b]]  # noqa: E731
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
                if not s.count:  # created but nothing tracked yet: reading it is an error
                    out.append(_no_points())
                    continue
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


def _no_points() -> dict:
    e = np.empty(0)
    return {"steps": e.astype(np.int64), "values": e, "epochs": e, "timestamps": e}


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
