"""SequenceCollection: the sequences a query selected, as Arrow, NumPy and plot-ready arrays.

Point data is read with one ``repo._read_columns`` call (one read
transaction, one cursor: storage/bulk.py) into four flat columns for the whole
selection plus offsets, and never walked point by point, nor sequence by
sequence, in Python: the long Arrow table takes those columns as they are (no
copy), and its run id, name and context columns are dictionary arrays built
from the query table's codes; for big sequences, one chunk per sequence whose
run id, name and context are dictionary arrays over a shared buffer of zeros,
so a 100-million-point export costs what reading the blocks costs.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..query import arrow as _arrow
from ..storage import hugemem as _hugemem
from ..storage.gc import gc_paused
from ..errors import InvalidValueError

from ..query.parser import node_class
from ..query.vectors import display
from ..query.tables import SeqTable, leaf_paths, walk

# Above this many points per sequence on average, to_arrow() keeps one chunk per
# sequence instead of concatenating (concatenation copies every point once).
_CHUNK_THRESHOLD = 50_000
_AXES = {"step": 0, "epoch": 2, "timestamp": 3}


# A tuple with names (not typing.NamedTuple: ~150 µs to create, on a first query's path).
Aligned = node_class("Aligned", "axis values keys", doc=(
    "``axis`` (sorted distinct steps/epochs/timestamps), ``values`` (one row per sequence, NaN "
    "where it has no point), and ``keys`` ((run_id, name, context) per row)."))


class SequenceCollection:
    """Sequences selected by ``repo.query_sequences(...)``."""

    def __init__(self, repo: Any, seqs: SeqTable, rows: np.ndarray) -> None:
        self._repo = repo
        self._seqs = seqs
        self._rows = np.asarray(rows, dtype=np.int64)
        self._base_rows = seqs.base_rows(self._rows)
        self._points: tuple | None = None  # (four flat columns, offsets), read once

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
        rows = self._base_rows
        return [(run_keys[r], names[n], ctxs[c] or {}) for r, n, c in zip(
            d["run_of"][rows].tolist(), d["name_of"][rows].tolist(), d["ctx_of"][rows].tolist())]

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
        if not extras:  # no object sequence in the repository
            return ["float"] * len(self._base_rows)
        return [(extras.get(b) or {}).get("type") or "float" for b in self._base_rows.tolist()]

    def of_type(self, *types: str) -> "SequenceCollection":
        """The sequences whose ``seq.type`` is one of ``types`` ("float", "image", ...)."""
        keep = np.array([t in types for t in self.types], dtype=bool)
        return SequenceCollection(self._repo, self._seqs, self._rows[keep] if len(keep) else self._rows)

    def _read(self, what: str = "to_numpy()") -> tuple:
        """(steps, values, epochs, timestamps) of every selected sequence, one after
        another, and offsets: sequence i is ``column[offsets[i]:offsets[i + 1]]``."""
        if self._points is None:
            types = self.types
            if types.count("float") != len(types):
                from ..tracking import values as _values

                i = next(i for i, t in enumerate(types) if t != "float")
                run_id, name, ctx = self[i:i + 1].keys[0]
                raise InvalidValueError(
                    f"{what} reads float sequences, and run {run_id}'s {_values.describe(name, ctx)} "
                    f"holds {types[i]} values; select float sequences (seq.type == \"float\"), or use "
                    "to_arrow() on an object selection, or read the objects with seq[i]"
                )
            base = self._seqs.base
            d, rows, run_keys = base.data, self._base_rows, base.run_keys
            # gc paused: a tuple per sequence set off full collections of the query tables
            # (0.5 s of a fresh process's first to_numpy() over 100,000 sequences).
            with gc_paused():
                keys = list(zip([run_keys[c] for c in d["run_of"][rows].tolist()], d["seq_id"][rows].tolist()))
            self._points = _read_columns(self._repo, keys)
        return self._points

    def to_numpy(self) -> list[dict]:
        """One dict per sequence: run_id, name, context, steps, values, epochs, timestamps.

        The arrays of all sequences are slices (views) of four arrays read at once."""
        (steps, values, epochs, times), offsets = self._read()
        bounds = offsets.tolist()
        base = self._seqs.base
        d, rows, run_keys, names, ctxs = base.data, self._base_rows, base.run_keys, base.names, base.ctx_values
        codes = zip(d["run_of"][rows].tolist(), d["name_of"][rows].tolist(), d["ctx_of"][rows].tolist())
        with gc_paused():  # a dict per sequence: no cyclic garbage, but full collections
            return [{"run_id": run_keys[r], "name": names[n], "context": ctxs[c] or {}, "steps": steps[lo:hi],
                     "values": values[lo:hi], "epochs": epochs[lo:hi], "timestamps": times[lo:hi]}
                    for (r, n, c), lo, hi in zip(codes, bounds, bounds[1:])]

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
        columns, offsets = self._read()
        counts = np.diff(offsets)
        # run id, name and context per sequence as codes into the query table's lists of
        # distinct values: the dictionary columns are built per distinct value, not per sequence.
        base = self._seqs.base
        d, rows = base.data, self._base_rows
        ctx_seen, ctx_first, ctx_inv = np.unique(d["ctx_of"][rows], return_index=True, return_inverse=True)
        order = np.argsort(ctx_first, kind="stable")  # first-appearance order, as leaf_paths walks
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        ctx_inv = rank[ctx_inv.reshape(-1)]
        ctxs = [base.ctx_values[c] or {} for c in ctx_seen[order].tolist()]
        ctx_paths = leaf_paths(ctxs)
        names = ["run_id", "name"] + ["context." + ".".join(map(str, p)) for p in ctx_paths]
        names += ["step", "value", "epoch", "timestamp"]
        # run keys and names are lists of distinct strings; context leaves may repeat (False).
        per_seq = [(d["run_of"][rows], base.run_keys, pa.string(), True),
                   (d["name_of"][rows], base.names, pa.string(), True)]
        for p in ctx_paths:
            labels, typ = _context_values([walk(c, p) for c in ctxs])
            per_seq.append((ctx_inv, labels, typ, False))
        if len(counts) and int(offsets[-1]) / len(counts) >= _CHUNK_THRESHOLD:
            values = [([labels[c] for c in codes.tolist()], typ) for codes, labels, typ, _ in per_seq]
            return _chunked(columns, offsets, values, names)
        cols = [_coded(codes, labels, typ, counts, distinct) for codes, labels, typ, distinct in per_seq]
        for data, typ in zip(columns, (pa.int64(), pa.float64(), pa.float64(), pa.float64())):
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
        columns, offsets = self._read("align()")
        n = len(offsets) - 1
        if not n:
            return Aligned(np.empty(0), np.empty((0, 0)), [])
        allx, allv = columns[j], columns[1]
        allr = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
        if j == 2:
            keep = ~np.isnan(allx)
            allx, allv, allr = allx[keep], allv[keep], allr[keep]
        axis = np.unique(allx)
        matrix = np.full((n, len(axis)), np.nan)
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


def _read_columns(repo: Any, keys: list) -> tuple:
    """``repo._read_columns(keys)``: four flat columns and offsets (storage/bulk.py; it
    splits the copies of long blocks over threads itself). A repository-like object
    with only the per-sequence hook ``_read_sequences`` is read through that."""
    read = getattr(repo, "_read_columns", None)
    if read is not None:
        return read(keys)
    from ..storage import blocks as _blocks

    arrays = repo._read_sequences(keys) if keys else []
    offsets = np.zeros(len(arrays) + 1, np.int64)
    np.cumsum([len(a[1]) for a in arrays], out=offsets[1:])
    if not arrays:
        return _blocks.empty(), offsets
    return tuple(np.concatenate([a[j] for a in arrays]) for j in range(4)), offsets


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
    uniq = list(dict.fromkeys(v for v in values if v is not None))
    index = {v: i for i, v in enumerate(uniq)}
    per_seq = np.array([index[v] if v is not None else -1 for v in values], dtype=np.int32)
    idx = per_seq[seq_index] if len(seq_index) else np.empty(0, dtype=np.int32)
    mask = idx < 0
    # Built from buffers: pa.array/from_arrays would import pandas (see _arrow.py).
    return _arrow.dictionary(np.maximum(idx, 0), _arrow.from_values(uniq, typ), mask)


def _coded(codes: np.ndarray, labels: list, typ: Any, counts: np.ndarray, distinct: bool = False) -> Any:
    """The dictionary array of a per-sequence column: sequence i's value is
    ``labels[codes[i]]`` (None: null), repeated ``counts[i]`` times. The same array
    as ``_dictionary`` builds from the values (dictionary in order of first
    appearance), with Python work per distinct code instead of per sequence;
    none at all when ``distinct`` (``labels`` holds distinct values, no None).
    The indices are spread over points in place (``hugemem.spread``), not through
    ``np.repeat``'s temporary."""
    seen, first, inv = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # distinct codes in order of first appearance
    index_of_code = np.empty(len(seen), np.int32)
    if distinct:
        index_of_code[order] = np.arange(len(order), dtype=np.int32)
        uniq: Any = [labels[c] for c in seen[order].tolist()]
    else:
        uniq = {}
        for k, code in zip(order.tolist(), seen[order].tolist()):
            v = labels[code]
            index_of_code[k] = -1 if v is None else uniq.setdefault(v, len(uniq))
    total = int(counts.sum())
    if not (index_of_code != 0).any():
        # one value for all (a name, a context): zeros the kernel hands out untouched,
        # no page written (or faulted in) here
        idx = np.zeros(total, np.int32)
    else:
        idx = _hugemem.spread(index_of_code[inv.reshape(-1)], np.cumsum(counts) - counts, counts > 0,
                              _hugemem.empty(total, np.int32))
    if (index_of_code >= 0).all():  # no null: the indices as they are
        return _arrow.dictionary(idx, _arrow.from_values(list(uniq), typ))
    mask = idx < 0
    return _arrow.dictionary(np.maximum(idx, 0), _arrow.from_values(list(uniq), typ), mask)


def _chunked(columns: tuple, offsets: np.ndarray, per_seq: list, names: list) -> Any:
    import pyarrow as pa

    counts = np.diff(offsets)
    longest = int(counts.max())
    zeros = np.zeros(longest, dtype=np.int32)
    all_null = np.ones(longest, dtype=bool)
    out = []
    for values, typ in per_seq:
        chunks = []
        empty = _arrow.from_values([], typ)
        for v, c in zip(values, counts.tolist()):
            if v is None:
                chunks.append(_arrow.dictionary(zeros[:c], empty, all_null[:c]))
            else:
                chunks.append(_arrow.dictionary(zeros[:c], _arrow.from_values([v], typ)))
        out.append(pa.chunked_array(chunks, type=pa.dictionary(pa.int32(), typ)))
    bounds = offsets.tolist()
    for data, typ in zip(columns, (pa.int64(), pa.float64(), pa.float64(), pa.float64())):
        out.append(pa.chunked_array([_arrow.numeric(data[lo:hi], typ) for lo, hi in zip(bounds, bounds[1:])],
                                    type=typ))
    return pa.Table.from_arrays(out, names=names)


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
