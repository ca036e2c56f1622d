"""SequenceCollection: the sequences a query selected, as Arrow, NumPy and plot-ready arrays.

Point data is read with one ``repo._read_sequences`` call (one read
transaction) and never walked point by point in Python: the long Arrow table
is either a few concatenations (small selections) or, for big ones, one
zero-copy chunk per sequence whose run id, name and context columns are
dictionary arrays over a shared buffer of zeros, so a 100-million-point
export costs what reading the blocks costs.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, NamedTuple

import numpy as np

from ..query import arrow as _arrow
from ..errors import InvalidValueError

from ..query.vectors import display
from ..query.tables import SeqTable, leaf_paths, walk

# Above this many points per sequence on average, to_arrow() keeps one chunk per
# sequence instead of concatenating (concatenation copies every point once).
_CHUNK_THRESHOLD = 50_000
_AXES = {"step": 0, "epoch": 2, "timestamp": 3}
# Reads of more points than this are split over up to _READ_THREADS threads.
_PARALLEL_POINTS = 2_000_000
_READ_THREADS = 4


class Aligned(NamedTuple):
    """``axis`` (sorted distinct steps/epochs/timestamps), ``values`` (one row per
    sequence, NaN where it has no point), and ``keys`` ((run_id, name, context) per row)."""

    axis: np.ndarray
    values: np.ndarray
    keys: list


class SequenceCollection:
    """Sequences selected by ``repo.query_sequences(...)``."""

    def __init__(self, repo: Any, seqs: SeqTable, rows: np.ndarray) -> None:
        self._repo = repo
        self._seqs = seqs
        self._rows = np.asarray(rows, dtype=np.int64)
        self._base_rows = seqs.base_rows(self._rows)
        self._arrays: list | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def _summary(self, b: int) -> dict:
        return self._seqs.base.summaries[b]

    def _sequence(self, b: int) -> Any:
        base = self._seqs.base
        return self._repo._sequence_view(base.run_ids[b], base.seq_ids[b], base.summaries[b])

    def __iter__(self) -> Iterator[Any]:
        for b in self._base_rows.tolist():
            yield self._sequence(b)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return SequenceCollection(self._repo, self._seqs, self._rows[index])
        return self._sequence(int(self._base_rows[index]))

    def __repr__(self) -> str:
        n = len(self)
        lines = [f"SequenceCollection({n} sequence{'s' if n != 1 else ''})"]
        for run_id, name, ctx in self.keys[:8]:
            lines.append(f"  {run_id}  {name}  {display(ctx) if ctx else ''}".rstrip())
        if n > 8:
            lines.append(f"  ... {n - 8} more")
        return "\n".join(lines)

    @property
    def keys(self) -> list[tuple[str, str, dict]]:
        """(run_id, name, context) of every sequence."""
        base = self._seqs.base
        d, run_keys, names, ctxs = base.data, base.run_keys, base.names, base.ctx_values
        run_of, name_of, ctx_of = d["run_of"], d["name_of"], d["ctx_of"]
        return [(run_keys[run_of[b]], names[name_of[b]], ctxs[ctx_of[b]] or {}) for b in self._base_rows.tolist()]

    @property
    def runs(self) -> Any:
        """The runs these sequences belong to (each once, in order)."""
        from .runframe import Source
        from .collections import RunCollection

        run_rows = self._seqs.run_idx[self._rows]
        _, first = np.unique(run_rows, return_index=True)
        return RunCollection._from(Source(self._seqs.run_table, self._repo), run_rows[np.sort(first)])

    # -- point data --------------------------------------------------------------------
    @property
    def types(self) -> list[str]:
        """``seq.type`` of every sequence: "float", or "image", "text", ... (issue 13)."""
        extras = self._seqs.base.extras
        return [(extras.get(b) or {}).get("type") or "float" for b in self._base_rows.tolist()]

    def of_type(self, *types: str) -> "SequenceCollection":
        """The sequences whose ``seq.type`` is one of ``types`` ("float", "image", ...)."""
        keep = np.array([t in types for t in self.types], dtype=bool)
        return SequenceCollection(self._repo, self._seqs, self._rows[keep] if len(keep) else self._rows)

    def _read(self, what: str = "to_numpy()") -> list:
        if self._arrays is None:
            types = self.types
            for (run_id, name, ctx), typ in zip(self.keys, types):
                if typ != "float":
                    from ..tracking import values as _values

                    raise InvalidValueError(
                        f"{what} reads float sequences, and run {run_id}'s {_values.describe(name, ctx)} "
                        f"holds {typ} values; select float sequences (seq.type == \"float\"), or use "
                        "to_arrow() on an object selection, or read the objects with seq[i]"
                    )
            base = self._seqs.base
            rows = self._base_rows.tolist()
            keys = [(base.run_ids[b], base.seq_ids[b]) for b in rows]
            counts = base.data["count"][self._base_rows].tolist()
            self._arrays = _read_sequences(self._repo, keys, counts)
        return self._arrays

    def to_numpy(self) -> list[dict]:
        """One dict per sequence: run_id, name, context, steps, values, epochs, timestamps."""
        out = []
        for (run_id, name, ctx), (steps, values, epochs, times) in zip(self.keys, self._read()):
            out.append({"run_id": run_id, "name": name, "context": ctx, "steps": steps,
                        "values": values, "epochs": epochs, "timestamps": times})
        return out

    def to_arrow(self) -> Any:
        """Long form: run_id, name, ``context.<key>`` columns, step, value, epoch, timestamp.

        On object sequences (images, text, ...): step, epoch, timestamp, type and the
        payload columns (see :mod:`runstore.analysis.objframe`); a selection mixing float and
        object sequences raises InvalidValueError (select one kind with ``seq.type``).

        run_id, name and context are dictionary-encoded (categoricals in pandas/polars);
        epoch is NaN for points tracked without one; timestamp is unix seconds."""
        import pyarrow as pa

        types = self.types
        n_float = types.count("float")
        if n_float < len(types):
            from . import objframe as _objframe

            if n_float:
                raise _objframe.mixed_error(n_float, len(types) - n_float, "to_arrow()")
            return _objframe.to_arrow(list(self), self.keys, types)
        arrays = self._read()
        keys = self.keys
        counts = np.fromiter((len(a[0]) for a in arrays), dtype=np.int64, count=len(arrays))
        ctx_paths = leaf_paths([k[2] for k in keys])
        ctx_cols = {p: _context_values([walk(k[2], p) for k in keys]) for p in ctx_paths}
        names = ["run_id", "name"] + ["context." + ".".join(map(str, p)) for p in ctx_paths]
        names += ["step", "value", "epoch", "timestamp"]
        per_seq = [([k[0] for k in keys], pa.string()), ([k[1] for k in keys], pa.string())]
        per_seq += list(ctx_cols.values())
        total = int(counts.sum())
        if len(arrays) and total / len(arrays) >= _CHUNK_THRESHOLD:
            return _chunked(arrays, counts, per_seq, names)
        seq_index = np.repeat(np.arange(len(arrays), dtype=np.int32), counts)
        cols = [_dictionary(values, typ, seq_index) for values, typ in per_seq]
        for j, typ in ((0, pa.int64()), (1, pa.float64()), (2, pa.float64()), (3, pa.float64())):
            data = np.concatenate([a[j] for a in arrays]) if arrays else np.empty(0)
            cols.append(_arrow.numeric(data, typ))
        return pa.Table.from_arrays(cols, names=names)

    def to_pandas(self) -> Any:
        from .collections import _require

        _require("pandas")
        return self.to_arrow().to_pandas()

    def to_polars(self) -> Any:
        from .collections import _require

        return _require("polars").from_arrow(self.to_arrow())

    def align(self, on: str = "step") -> Aligned:
        """A shared axis (``on`` = "step", "epoch" or "timestamp") and a 2-D matrix of values
        with one row per sequence and NaN where a sequence has no point; when a sequence has
        several points at one axis value, the last one is kept."""
        if on not in _AXES:
            raise ValueError(f"align(on=...) takes 'step', 'epoch' or 'timestamp', got {on!r}")
        j = _AXES[on]
        arrays = self._read("align()")
        xs, vs, rows = [], [], []
        for i, a in enumerate(arrays):
            x, v = a[j], a[1]
            if j == 2:
                keep = ~np.isnan(x)
                x, v = x[keep], v[keep]
            xs.append(x)
            vs.append(v)
            rows.append(np.full(len(x), i, dtype=np.int64))
        if not arrays:
            return Aligned(np.empty(0), np.empty((0, 0)), [])
        allx, allv, allr = np.concatenate(xs), np.concatenate(vs), np.concatenate(rows)
        axis = np.unique(allx)
        matrix = np.full((len(arrays), len(axis)), np.nan)
        # Points are in append order, so for duplicate (row, position) pairs the
        # last assignment wins, which is the last point tracked at that step.
        matrix[allr, np.searchsorted(axis, allx)] = allv
        return Aligned(axis, matrix, self.keys)

    def downsample(self, n: int = 1000, method: str = "minmax") -> list[dict]:
        """Like ``to_numpy()`` with at most ``n`` points per sequence, keeping the curve's shape.

        ``"minmax"`` keeps the first and last points and the minimum and maximum of each of
        ``(n - 2) // 2`` buckets (no spike is lost); ``"lttb"`` is Largest-Triangle-Three-Buckets
        (visually faithful, one point per bucket)."""
        if n < 3:
            raise ValueError("downsample(n) needs n >= 3")
        if method not in ("minmax", "lttb"):
            raise ValueError(f"downsample method must be 'minmax' or 'lttb', got {method!r}")
        out = []
        for item in self.to_numpy():
            x, y = item["steps"], item["values"]
            idx = minmax_indices(y, n) if method == "minmax" else lttb_indices(x.astype(np.float64), y, n)
            for k in ("steps", "values", "epochs", "timestamps"):
                item[k] = item[k][idx]
            out.append(item)
        return out


def _read_sequences(repo: Any, keys: list, counts: list) -> list:
    """``repo._read_sequences(keys)``, split over threads when there are many points.

    Decoding blocks is NumPy copying, which releases the GIL, so on a big
    selection two threads (each with its own read transaction) read close to
    twice as fast; small selections stay on one thread (threads cost ~0.1 ms)."""
    workers = min(_READ_THREADS, os.cpu_count() or 1, len(keys))
    if workers < 2 or sum(counts) < _PARALLEL_POINTS:
        return repo._read_sequences(keys) if keys else []
    groups: list[list[int]] = [[] for _ in range(workers)]
    load = [0] * workers
    for i in sorted(range(len(keys)), key=lambda i: -counts[i]):  # biggest first, to the lightest group
        g = load.index(min(load))
        groups[g].append(i)
        load[g] += counts[i]
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda idx: repo._read_sequences([keys[i] for i in idx]), groups))
    out: list = [None] * len(keys)
    for idx, arrays in zip(groups, parts):
        for i, a in zip(idx, arrays):
            out[i] = a
    return out


def _context_values(values: list) -> tuple[list, Any]:
    """Per-sequence context values and the one Arrow type they share."""
    import pyarrow as pa

    from ..query.vectors import MISSING

    values = [None if v is MISSING else v for v in values]
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {str}:
        return values, pa.string()
    if kinds <= {bool}:
        return values, pa.bool_()
    if kinds <= {int}:
        return values, pa.int64()
    if kinds <= {int, float}:
        return [None if v is None else float(v) for v in values], pa.float64()
    return [None if v is None else display(v) for v in values], pa.string()


def _dictionary(values: list, typ: Any, seq_index: np.ndarray) -> Any:
    """A dictionary array: one entry per distinct value, indices repeated per point."""
    import pyarrow as pa

    uniq = list(dict.fromkeys(v for v in values if v is not None))
    index = {v: i for i, v in enumerate(uniq)}
    per_seq = np.array([index[v] if v is not None else -1 for v in values], dtype=np.int32)
    idx = per_seq[seq_index] if len(seq_index) else np.empty(0, dtype=np.int32)
    mask = idx < 0
    # Built from buffers: pa.array/from_arrays would import pandas (see _arrow.py).
    return _arrow.dictionary(np.maximum(idx, 0), _arrow.from_values(uniq, typ), mask)


def _chunked(arrays: list, counts: np.ndarray, per_seq: list, names: list) -> Any:
    import pyarrow as pa

    longest = int(counts.max())
    zeros = np.zeros(longest, dtype=np.int32)
    all_null = np.ones(longest, dtype=bool)
    columns = []
    for values, typ in per_seq:
        chunks = []
        empty = _arrow.from_values([], typ)
        for v, c in zip(values, counts.tolist()):
            if v is None:
                chunks.append(_arrow.dictionary(zeros[:c], empty, all_null[:c]))
            else:
                chunks.append(_arrow.dictionary(zeros[:c], _arrow.from_values([v], typ)))
        columns.append(pa.chunked_array(chunks, type=pa.dictionary(pa.int32(), typ)))
    for j, typ in ((0, pa.int64()), (1, pa.float64()), (2, pa.float64()), (3, pa.float64())):
        columns.append(pa.chunked_array([_arrow.numeric(a[j], typ) for a in arrays], type=typ))
    return pa.Table.from_arrays(columns, names=names)


def minmax_indices(y: np.ndarray, n: int) -> np.ndarray:
    """First, last, and the argmin/argmax of each bucket of the points between them."""
    m = len(y)
    if m <= n:
        return np.arange(m)
    buckets = max(1, (n - 2) // 2)
    inner = y[1:-1]
    size = -(-len(inner) // buckets)
    padded = np.full(buckets * size, np.nan)
    padded[: len(inner)] = inner
    grid = padded.reshape(buckets, size)
    nan = np.isnan(grid)
    lo = np.argmin(np.where(nan, np.inf, grid), axis=1)
    hi = np.argmax(np.where(nan, -np.inf, grid), axis=1)
    base = np.arange(buckets) * size
    picks = np.concatenate([base + lo, base + hi])
    picks = picks[picks < len(inner)] + 1
    return np.unique(np.concatenate([[0, m - 1], picks]))


def lttb_indices(x: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Largest-Triangle-Three-Buckets: the point of each bucket forming the largest
    triangle with the previous pick and the next bucket's mean."""
    m = len(y)
    if m <= n:
        return np.arange(m)
    edges = np.linspace(1, m - 1, n - 1).astype(np.int64)
    picks = np.empty(n, dtype=np.int64)
    picks[0], picks[-1] = 0, m - 1
    prev = 0
    for b in range(n - 2):
        lo, hi = edges[b], max(edges[b + 1], edges[b] + 1)
        nlo, nhi = edges[b + 1], edges[b + 2] if b + 2 < len(edges) else m
        nhi = max(nhi, nlo + 1)
        mx, my = x[nlo:nhi].mean(), np.nanmean(y[nlo:nhi]) if np.isfinite(y[nlo:nhi]).any() else 0.0
        area = np.abs((x[prev] - mx) * (y[lo:hi] - y[prev]) - (x[prev] - x[lo:hi]) * (my - y[prev]))
        area = np.where(np.isnan(area), -1.0, area)
        prev = lo + int(np.argmax(area))
        picks[b + 1] = prev
    return picks
