"""The sequence summaries of a repository as typed columns (``SeqBase``).

One row per stored sequence, in key order (by run id, then sequence id), built
by a scan (``SeqBase.from_scan``), mapped from the persisted snapshot, or
patched by a refresh (query/refresh.py). ``SeqTable`` (query/tables.py) puts
these rows beside the run table's rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from . import runkeys
from .vectors import MISSING, Column, copy_tree

if TYPE_CHECKING:
    from .tables import RunTable

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
        out: dict = {"name": self.names[d["name_of"][i]], "context": copy_tree(self.ctx_values[d["ctx_of"][i]])}
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
                from .tables import walk

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
