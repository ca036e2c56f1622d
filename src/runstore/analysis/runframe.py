"""Vectorised work behind RunCollection: key columns, criteria, sort ranks, group codes, tables.

Everything here takes a :class:`Source` (a run table plus the typed-config and
implementation bindings of a collection) and an array of table rows, and works
on columns; a Python loop per run only happens for what cannot be a column
(predicates, callables, a typed config's defaults, ``run.impl`` attributes).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import keys as _keys
from ..errors import MatchError
from ..query import evaluate as ev
from ..query.vectors import MISSING, Column, display, element_key
from ..query.tables import DATE_ATTRS, RUN_ATTRS, RunTable, cache_for

INFO_COLUMNS = ("id", "name", "experiment", "status", "tags", "created_at", "ended_at")


class Source:
    """A run table, the bindings of the collections drawn from it, and their Run objects."""

    def __init__(self, table: RunTable, repo: Any = None, cfg_type: Any = None, impl_factory: Any = None) -> None:
        self.table = table
        self.repo = repo if repo is not None else table.repo  # strong: keeps the repo open
        self.cfg_type = cfg_type
        self.impl_factory = impl_factory
        self.runs: dict[int, Any] = {}

    @property
    def bound(self) -> bool:
        return self.cfg_type is not None or self.impl_factory is not None

    def run(self, row: int) -> Any:
        run = self.runs.get(row)
        if run is None:
            table = self.table
            if table.runs is not None and not self.bound:
                run = table.runs[row]
            else:
                from ..tracking.run import Run

                repo = self.repo if self.repo is not None else table.runs[row].repo
                rec = table.records[row] if table.runs is None else None
                params = table.params[row] if table.runs is None else None
                run = Run._view(repo, table.ids[row], rec, params)
                if not self.bound:
                    # Not kept: a view is four attributes over the table's dicts, cheaper to
                    # make again than to keep (100,000 kept views made the cyclic GC walk
                    # them all, 2-3x the cost of the loop). Edits through a view change the
                    # table's dicts in place (Run._keep), so the next view sees them.
                    return run
            if self.bound:
                _keys.bind(run, self.cfg_type, self.impl_factory)
            self.runs[row] = run
        return run


# -- key columns -----------------------------------------------------------------------------
def key_column(src: Source, rows: np.ndarray, key: str, check: bool = True) -> Column:
    """The values of ``key`` (``run.get`` spelling and lookup order) for ``rows``."""
    if not isinstance(key, str) or not key:
        raise TypeError(f"a key must be a non-empty string such as 'hparams.lr', got {key!r}")
    table = src.table
    full = table.param(_keys.split_path(key))
    known = bool(full.present().any())
    col = full.take(rows)
    if src.cfg_type is not None:
        col, found = _fill_per_run(src, rows, col, lambda run: _keys._cfg_default(run, key))
        known |= found
    attr = _keys.ATTR_ALIASES.get(key, key)
    if attr in RUN_ATTRS:
        known = True
        col = col.coalesce(table.attr(attr).take(rows))
    if key in _keys.DERIVED_KEYS:
        known = True
        col, _ = _fill_per_run(src, rows, col, lambda run: _keys.derived(run, key))
    spec = _keys.parse_seq_key(key)
    if spec is not None and not col.present().all():
        # Only the selected rows that lack the key as a param need a summary, and only
        # they can make it ambiguous: a run outside the selection must not matter.
        need = rows[~col.present()]
        seqcol = seq_summary_column(src, spec, need)
        known |= bool(seqcol.present().any()) or _has_sequence_name(src, spec.name)
        col = col.coalesce(seqcol.take(rows))
    if src.impl_factory is not None and "." not in key:
        col, found = _fill_per_run(
            src, rows, col, lambda run: getattr(_keys.run_impl(run), key) if hasattr(_keys.run_impl(run), key) else MISSING
        )
        known |= found
    if check and not known and table.n:
        raise KeyError(_keys.missing_key_message(key, "no run has the key", candidates(src)))
    return col


def _fill_per_run(src: Source, rows: np.ndarray, col: Column, get: Callable) -> tuple[Column, bool]:
    missing = np.flatnonzero(~col.present())
    if not len(missing):
        return col, False
    values = col.to_pylist(MISSING)
    found = False
    for i in missing.tolist():
        v = get(src.run(int(rows[i])))
        if v is not MISSING:
            values[i], found = v, True
    return (Column.from_values(values), True) if found else (col, False)


def _has_sequence_name(src: Source, name: str) -> bool:
    """Does any run of the table have a sequence called ``name`` (the key is not a typo)?"""
    table = src.table
    if table.runs is not None:
        return any(n == name for run in table.runs for n, _ in run.sequences())
    _, seqs = cache_for(src.repo).tables(True)
    names = seqs.base.column("name")
    return names.codes is not None and names.cat_index().get(name) is not None


def seq_summary_column(src: Source, spec: _keys.SeqKey, rows: np.ndarray | None = None) -> Column:
    """``loss[subset=val].last`` for the table's rows, from the sequence summaries.

    Only ``rows`` (all when None) are filled and checked for ambiguity: a run with
    several matching sequences is an error only when it is asked about."""
    table = src.table
    n = table.n
    if table.runs is not None:  # standalone table: ask each run
        wanted = set(range(n) if rows is None else np.asarray(rows).tolist())
        values = [_keys._summary(run, spec) if i in wanted else MISSING for i, run in enumerate(table.runs)]
        return Column.from_values(values)
    _, seqs = cache_for(src.repo).tables(True)
    base = seqs.base
    names = base.column("name")
    code = names.cat_index().get(spec.name) if names.codes is not None else None
    if code is None:
        return Column(n)
    sel = np.flatnonzero(names.codes == code)
    if spec.context:
        ctxs = base.contexts(sel)
        sel = sel[np.fromiter((spec.matches(spec.name, c) for c in ctxs), dtype=bool, count=len(sel))]
    lookup = table.index
    ridx = base.run_rows(lookup)[sel]
    keep = ridx >= 0
    if rows is not None:
        wanted = np.zeros(n, dtype=bool)
        wanted[np.asarray(rows, dtype=np.int64)] = True
        keep &= wanted[np.maximum(ridx, 0)]
    sel, ridx = sel[keep], ridx[keep]
    counts = np.bincount(ridx, minlength=n)
    if (counts > 1).any():
        row = int(np.flatnonzero(counts > 1)[0])
        contexts = base.contexts(sel[ridx == row])
        raise MatchError(_keys.ambiguous_message(table.ids[row], spec, contexts))
    field = base.column(spec.field)
    out = Column(n)
    out.num = np.full(n, np.nan)
    out.num[ridx] = field.num[sel]
    out.num_mask = np.zeros(n, dtype=bool)
    out.num_mask[ridx] = field.num_mask[sel]
    if field.ints is not None:
        out.ints = np.zeros(n, dtype=np.int64)
        out.ints[ridx] = field.ints[sel]
    return out


def candidates(src: Source) -> list[str]:
    table = src.table
    out = [".".join(map(str, p)) for p in table.param_paths()] + list(RUN_ATTRS)
    if table.runs is None and src.repo is not None:
        _, seqs = cache_for(src.repo).tables(True)
        names = seqs.base.column("name")
        if names.cats is not None:
            out += [f"{c}.last" for c in names.cats]
    return out


# -- criteria -------------------------------------------------------------------------------
def criterion_mask(col: Column, value: Any) -> np.ndarray:
    """Rows of ``col`` matching a HydraFlow-style criterion.

    Scalar: equality.  Tuple ``(low, high)``: inclusive range (None = open).
    List or set: any of.  Callable: ``value(stored)``.  A stored list is compared
    with a list or tuple criterion by equality instead."""
    n = col.n
    if callable(value):
        out = np.zeros(n, dtype=bool)
        for i, v in enumerate(col.to_pylist(MISSING)):
            if v is not MISSING:
                out[i] = bool(value(v))
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        out = np.zeros(n, dtype=bool)
        if isinstance(value, (list, tuple)) and col.obj is not None:
            listrows = col.obj_mask & np.array([type(v) is list for v in col.obj], dtype=bool)
            out |= listrows & ev.compare("==", col, ev.Lit(list(value)), n)
        else:
            listrows = np.zeros(n, dtype=bool)
        if isinstance(value, tuple):
            if len(value) != 2:
                raise ValueError(f"a tuple criterion is an inclusive range (low, high), got {value!r}")
            low, high = value
            m = col.present()
            if low is not None:
                m = m & ev.compare(">=", col, ev.Lit(low), n)
            if high is not None:
                m = m & ev.compare("<=", col, ev.Lit(high), n)
            if low is None and high is None:
                m = m & ~col.is_none()
        else:
            m = ev.member(col, ev.Lit(list(value)), n, False)
        return out | (m & ~listrows)
    return ev.compare("==", col, ev.Lit(value), n)


def matches_criterion(stored: Any, value: Any) -> bool:
    """The same rule for one value (used by tests and by standalone predicates)."""
    if value is None:  # like `== None` in a query: None or missing
        return stored is MISSING or stored is None
    if stored is MISSING:
        return False
    if callable(value):
        return bool(value(stored))
    if isinstance(value, (list, tuple)) and isinstance(stored, list):
        return ev.py_compare("==", stored, list(value))
    if isinstance(value, tuple):
        low, high = value
        if stored is None:
            return False
        return (low is None or ev.py_compare(">=", stored, low)) and (high is None or ev.py_compare("<=", stored, high))
    if isinstance(value, (list, set, frozenset)):
        key = element_key(stored)
        return key is not None and any(element_key(v) == key for v in value)
    return ev.py_compare("==", stored, value)


# -- sorting and grouping --------------------------------------------------------------------
def ranks(col: Column) -> tuple[np.ndarray, int]:
    """Dense ascending ranks (numbers < strings < booleans < other); None and missing share the last rank."""
    n = col.n
    r = np.zeros(n, dtype=np.int64)
    offset = 0
    if col.num is not None and col.num_mask.any():
        m = col.num_mask
        u, inv = np.unique(col.num[m], return_inverse=True)
        r[m] = inv.ravel()
        offset += len(u)
    if col.codes is not None and len(col.cats):
        m = col.codes >= 0
        r[m] = offset + col.codes[m]
        offset += len(col.cats)
    if col.bools is not None and col.bool_mask.any():
        m = col.bool_mask
        r[m] = offset + col.bools[m]
        offset += 2
    if col.obj is not None and col.obj_mask.any():
        idx = np.flatnonzero(col.obj_mask)
        texts = np.array([display(v) for v in col.obj[idx]], dtype=object)
        u, inv = np.unique(texts, return_inverse=True)
        r[idx] = offset + inv.ravel()
        offset += len(u)
    r[col.is_none()] = offset
    return r, offset


def sort_order(cols: list[Column], reverse: bool) -> np.ndarray:
    """Row order for sorting by ``cols`` (first primary), missing values last either way."""
    keys = []
    for col in cols:
        r, last = ranks(col)
        if reverse:
            r = np.where(r < last, last - 1 - r, last)
        keys.append(r)
    return np.lexsort(keys[::-1]) if keys else np.arange(cols[0].n if cols else 0)


def hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple((k, hashable(x)) for k, x in v.items())
    return v


def group_rows(cols: list[Column]) -> list[tuple[Any, np.ndarray]]:
    """(group key, positions) per distinct combination of values, in order of first appearance."""
    n = cols[0].n
    if n == 0:
        return []
    # One int64 per row (mixed radix over the dense ranks) so that a 1-D np.unique
    # does the grouping; np.unique(axis=0) on a 2-D array is several times slower.
    combined = np.zeros(n, dtype=np.int64)
    for col in cols:
        r, last = ranks(col)
        if combined.max() > (np.iinfo(np.int64).max - last) // (last + 1):  # re-densify before overflowing
            combined = np.unique(combined, return_inverse=True)[1].ravel().astype(np.int64)
        combined = combined * (last + 1) + r
    _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    order_of_group = np.argsort(first, kind="stable")
    position = np.empty_like(order_of_group)
    position[order_of_group] = np.arange(len(order_of_group))
    gid = position[inverse]
    order = np.argsort(gid, kind="stable")
    bounds = np.flatnonzero(np.diff(gid[order])) + 1
    parts = np.split(order, bounds)
    firsts = np.array([p[0] for p in parts], dtype=np.int64)
    key_values = [c.take(firsts).to_pylist(None) for c in cols]
    out = []
    for g, part in enumerate(parts):
        vals = tuple(hashable(kv[g]) for kv in key_values)
        out.append((vals[0] if len(cols) == 1 else vals, part))
    return out


# -- tables ---------------------------------------------------------------------------------
def arrow_column(col: Column, key: str, table: RunTable) -> Any:
    import pyarrow as pa

    arr = col.to_arrow()
    if key in DATE_ATTRS and not table.param((key,)).present().any() and pa.types.is_floating(arr.type):
        micros = np.round(np.nan_to_num(col.num, nan=0.0) * 1e6).astype(np.int64)
        from ..query import arrow as _arrow

        arr = _arrow.numeric(micros, pa.timestamp("us", tz="UTC"), ~col.num_mask)
    return arr


def default_columns(src: Source) -> list[tuple[str, str, tuple]]:
    """(column name, "attr" | "param", attribute name or param path): run info, then every param dotted."""
    out = [(k, "attr", k) for k in INFO_COLUMNS]
    for path in src.table.param_paths():
        dotted = ".".join(map(str, path))
        out.append((dotted if dotted not in INFO_COLUMNS else "params." + dotted, "param", path))
    return out


def build_arrow(src: Source, rows: np.ndarray, keys: tuple, callables: dict, defaults: dict | None = None) -> Any:
    """``defaults`` maps a key to the value (or a callable taking the run) used where a run lacks it."""
    import pyarrow as pa

    defaults = defaults or {}

    table = src.table
    columns: dict[str, Any] = {}
    if not keys and not callables:
        for name, source, what in default_columns(src):
            if source == "attr":
                columns[name] = arrow_column(table.attr(what).take(rows), what, table)
            else:
                columns[name] = table.param(what).take(rows).to_arrow()
    for key in keys:
        if key in defaults:
            col = key_column(src, rows, key, check=False)
            if not col.present().all():
                default = defaults[key]
                values = col.to_pylist(MISSING)
                for i, v in enumerate(values):
                    if v is MISSING:
                        values[i] = default(src.run(int(rows[i]))) if callable(default) else default
                col = Column.from_values(values)
        else:
            col = key_column(src, rows, key)
        columns[key] = arrow_column(col, key, table)
    for name, fn in callables.items():
        results = [fn(src.run(int(r))) for r in rows]
        if any(isinstance(v, dict) for v in results):
            names = list(dict.fromkeys(k for v in results if isinstance(v, dict) for k in v))
            for sub in names:
                vals = [v.get(sub, MISSING) if isinstance(v, dict) else MISSING for v in results]
                columns[sub] = Column.from_values(vals).to_arrow()
        else:
            columns[name] = Column.from_values([_plain(v) for v in results]).to_arrow()
    if not columns:
        from ..query import arrow as _arrow

        return pa.table({"id": _arrow.strings([table.ids[r] for r in rows])})
    return pa.table(columns)


def _plain(v: Any) -> Any:
    """NumPy scalars from a callable become Python values so the column keeps its kind."""
    item = getattr(v, "item", None)
    if callable(item) and type(v).__module__ == "numpy":
        try:
            return item()
        except (ValueError, TypeError):
            return v
    return v
