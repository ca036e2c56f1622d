"""One column of values over the rows of a table (runs or sequences).

A param may hold an int in one run, a string in another, a list in a third and
be absent from a fourth, so a column is split by *kind* instead of forcing one
dtype on it:

- numbers (int and float, not bool): ``num`` float64 + ``num_mask``; ``ints``
  keeps the exact int64 values when every number was an int;
- strings: ``codes`` int32 into ``cats``, the sorted distinct strings (-1 where
  the row is not a string).  Sorting the categories turns ``<``/``>`` against a
  literal into one ``searchsorted`` plus an integer comparison, and ``==`` into
  a dict lookup plus one vectorised compare;
- booleans: ``bools`` + ``bool_mask`` (booleans are not numbers here: True does
  not equal 1, which keeps ``flag == 1`` from matching by accident);
- everything else (lists, dicts): ``obj`` object array + ``obj_mask``;
- ``none_mask``: present and None.

A row in none of the masks is *missing*.  Each kind is ``None`` when no row has
it, so a pure float column costs one float array and one mask.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING", "__bool__": lambda self: False})()

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class Column:
    __slots__ = (
        "n",
        "num",
        "num_mask",
        "ints",
        "codes",
        "cats",
        "_cat_index",
        "_pa_cats",
        "bools",
        "bool_mask",
        "obj",
        "obj_mask",
        "none_mask",
        "_elements",
    )

    def __init__(self, n: int) -> None:
        self.n = n
        self.num = self.num_mask = self.ints = None
        self.codes = self.cats = self._cat_index = self._pa_cats = None
        self.bools = self.bool_mask = None
        self.obj = self.obj_mask = None
        self.none_mask = None
        self._elements = None

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_values(cls, values: list) -> Column:
        """Split a list of Python values (``MISSING`` for absent rows) into kinds."""
        n = len(values)
        col = cls(n)
        num_i, num_v, str_i, str_v, bool_i, bool_v, obj_i, none_i = [], [], [], [], [], [], [], []
        all_int = True
        for i, v in enumerate(values):
            t = type(v)
            if t is float:
                num_i.append(i)
                num_v.append(v)
                all_int = False
            elif t is str:
                str_i.append(i)
                str_v.append(v)
            elif t is int:
                if _INT64_MIN <= v <= _INT64_MAX:
                    num_i.append(i)
                    num_v.append(v)
                else:  # too large for int64: kept as an opaque value
                    obj_i.append(i)
            elif v is MISSING:
                continue
            elif v is None:
                none_i.append(i)
            elif t is bool:
                bool_i.append(i)
                bool_v.append(v)
            else:
                _classify_other(v, i, num_i, num_v, str_i, str_v, bool_i, bool_v, obj_i)
                all_int = all_int and not isinstance(v, float)
        if num_i:
            idx = np.asarray(num_i, dtype=np.int64)
            col.num = np.full(n, np.nan)
            col.num[idx] = np.asarray(num_v, dtype=np.float64)
            col.num_mask = _mask(n, idx)
            if all_int:
                col.ints = np.zeros(n, dtype=np.int64)
                col.ints[idx] = np.asarray([int(v) for v in num_v], dtype=np.int64)
        if str_i:
            col._set_strings(np.asarray(str_i, dtype=np.int64), str_v)
        if bool_i:
            idx = np.asarray(bool_i, dtype=np.int64)
            col.bools = np.zeros(n, dtype=bool)
            col.bools[idx] = np.asarray(bool_v, dtype=bool)
            col.bool_mask = _mask(n, idx)
        if obj_i:
            idx = np.asarray(obj_i, dtype=np.int64)
            col.obj = np.empty(n, dtype=object)
            col.obj[idx] = [values[i] for i in obj_i]
            col.obj_mask = _mask(n, idx)
        if none_i:
            col.none_mask = _mask(n, np.asarray(none_i, dtype=np.int64))
        return col

    @classmethod
    def numeric(cls, values: np.ndarray, mask: np.ndarray | None = None, ints: np.ndarray | None = None) -> Column:
        col = cls(len(values))
        col.num = np.asarray(values, dtype=np.float64)
        col.num_mask = ~np.isnan(col.num) if mask is None else mask
        col.ints = ints
        return col

    @classmethod
    def strings(cls, n: int, idx: np.ndarray, values: list) -> Column:
        col = cls(n)
        if len(values):
            col._set_strings(np.asarray(idx, dtype=np.int64), values)
        return col

    @classmethod
    def boolean(cls, values: np.ndarray) -> Column:
        col = cls(len(values))
        col.bools = values
        col.bool_mask = np.ones(len(values), dtype=bool)
        return col

    def _set_strings(self, idx: np.ndarray, values: list) -> None:
        first_seen = dict.fromkeys(values)
        cats = sorted(first_seen)
        lookup = {s: i for i, s in enumerate(cats)}
        self.codes = np.full(self.n, -1, dtype=np.int32)
        self.codes[idx] = np.fromiter((lookup[s] for s in values), dtype=np.int32, count=len(values))
        self.cats = np.empty(len(cats), dtype=object)
        self.cats[:] = cats
        self._cat_index = lookup

    # -- derived views ---------------------------------------------------------------
    @property
    def str_mask(self) -> np.ndarray | None:
        return None if self.codes is None else self.codes >= 0

    def cat_index(self) -> dict:
        if self._cat_index is None:
            self._cat_index = {s: i for i, s in enumerate(self.cats)}
        return self._cat_index

    def pa_cats(self) -> Any:
        if self._pa_cats is None:
            from . import arrow as _arrow

            self._pa_cats = _arrow.strings(list(self.cats))
        return self._pa_cats

    def present(self) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        for m in (self.num_mask, self.bool_mask, self.obj_mask, self.none_mask):
            if m is not None:
                out |= m
        if self.codes is not None:
            out |= self.codes >= 0
        return out

    def is_none(self) -> np.ndarray:
        """Missing or None (what ``is None`` tests)."""
        out = ~self.present()
        if self.none_mask is not None:
            out |= self.none_mask
        return out

    def elements(self) -> dict:
        """For list-valued rows: element key -> rows containing it (built once, used by ``x in col``)."""
        if self._elements is None:
            index: dict = {}
            if self.obj is not None:
                for i in np.flatnonzero(self.obj_mask):
                    v = self.obj[i]
                    if isinstance(v, list):
                        for e in v:
                            k = element_key(e)
                            if k is not None:
                                index.setdefault(k, set()).add(int(i))
            self._elements = {k: np.fromiter(sorted(rows), dtype=np.int64) for k, rows in index.items()}
        return self._elements

    def take(self, idx: np.ndarray) -> Column:
        """The rows at ``idx`` (a new column; categories are shared)."""
        out = Column(len(idx))
        if self.num is not None:
            out.num, out.num_mask = self.num[idx], self.num_mask[idx]
            out.ints = None if self.ints is None else self.ints[idx]
        if self.codes is not None:
            out.codes, out.cats, out._cat_index, out._pa_cats = self.codes[idx], self.cats, self._cat_index, self._pa_cats
        if self.bools is not None:
            out.bools, out.bool_mask = self.bools[idx], self.bool_mask[idx]
        if self.obj is not None:
            out.obj, out.obj_mask = self.obj[idx], self.obj_mask[idx]
        if self.none_mask is not None:
            out.none_mask = self.none_mask[idx]
        return out

    @staticmethod
    def concat(a: Column, b: Column) -> Column:
        """The rows of ``a`` then the rows of ``b`` (kinds merged; the string
        categories of both, sorted, with ``a``'s codes shifted where ``b`` adds one)."""
        out = Column(a.n + b.n)

        def both(x: Any, y: Any, fill: Any, dtype: Any) -> np.ndarray:
            x = np.full(a.n, fill, dtype=dtype) if x is None else x
            y = np.full(b.n, fill, dtype=dtype) if y is None else y
            return np.concatenate([x, y])

        if a.num is not None or b.num is not None:
            out.num = both(a.num, b.num, np.nan, np.float64)
            out.num_mask = both(a.num_mask, b.num_mask, False, bool)
            # Exact ints only when every number of both is an int (as from_values decides).
            if (a.num is None or a.ints is not None) and (b.num is None or b.ints is not None):
                out.ints = both(a.ints, b.ints, 0, np.int64)
        if a.codes is not None or b.codes is not None:
            ca = [] if a.cats is None else a.cats
            cb = [] if b.cats is None else b.cats
            index = a.cat_index() if a.codes is not None else {}
            added = sorted({c for c in cb if c not in index})
            if added:  # a's codes move up by the number of new categories sorting before them
                at = np.searchsorted(np.array(ca, dtype=object), np.array(added, dtype=object)) if len(ca) \
                    else np.zeros(len(added), dtype=np.int64)
                cats = np.insert(np.array(ca, dtype=object), at, np.array(added, dtype=object))
                shift = np.searchsorted(at, np.arange(len(ca)), side="right").astype(np.int32)
            else:
                cats, shift = (a.cats if a.codes is not None else np.empty(0, dtype=object)), None
            codes_a = np.full(a.n, -1, np.int32) if a.codes is None else a.codes
            if shift is not None and a.codes is not None:
                codes_a = np.where(codes_a >= 0, codes_a + shift[np.maximum(codes_a, 0)], -1).astype(np.int32)
            full_index = {c: i for i, c in enumerate(cats)} if added else index
            if b.codes is not None:
                remap = np.array([full_index[c] for c in cb] + [-1], dtype=np.int32)
                codes_b = remap[b.codes]  # -1 (not a string) picks the trailing -1
            else:
                codes_b = np.full(b.n, -1, np.int32)
            out.codes = np.concatenate([codes_a, codes_b])
            out.cats = cats if isinstance(cats, np.ndarray) else np.array(cats, dtype=object)
            out._cat_index = full_index
        if a.bools is not None or b.bools is not None:
            out.bools = both(a.bools, b.bools, False, bool)
            out.bool_mask = both(a.bool_mask, b.bool_mask, False, bool)
        if a.obj is not None or b.obj is not None:
            out.obj = both(a.obj, b.obj, None, object)
            out.obj_mask = both(a.obj_mask, b.obj_mask, False, bool)
        if a.none_mask is not None or b.none_mask is not None:
            out.none_mask = both(a.none_mask, b.none_mask, False, bool)
        return out

    def pad(self, extra: int) -> Column:
        """This column followed by ``extra`` missing rows."""
        if extra == 0:
            return self
        if self.n == 0:
            return Column(extra)
        return self.take(np.concatenate([np.arange(self.n), np.full(extra, -1)])).masked(
            np.concatenate([np.ones(self.n, bool), np.zeros(extra, bool)])
        )

    def masked(self, keep: np.ndarray) -> Column:
        """A copy where rows outside ``keep`` are missing."""
        out = Column(self.n)
        if self.num is not None:
            out.num, out.num_mask, out.ints = self.num, self.num_mask & keep, self.ints
        if self.codes is not None:
            out.codes = np.where(keep, self.codes, -1).astype(np.int32)
            out.cats, out._cat_index, out._pa_cats = self.cats, self._cat_index, self._pa_cats
        if self.bools is not None:
            out.bools, out.bool_mask = self.bools, self.bool_mask & keep
        if self.obj is not None:
            out.obj, out.obj_mask = self.obj, self.obj_mask & keep
        if self.none_mask is not None:
            out.none_mask = self.none_mask & keep
        return out

    def coalesce(self, other: Column) -> Column:
        """Rows of ``self`` where present, else rows of ``other`` (same length)."""
        mine = self.present()
        if mine.all():
            return self
        if not mine.any():
            return other
        values = self.to_pylist(MISSING)
        for i, v in zip(np.flatnonzero(~mine), other.take(np.flatnonzero(~mine)).to_pylist(MISSING)):
            values[i] = v
        return Column.from_values(values)

    # -- conversion -------------------------------------------------------------------
    def kinds(self) -> list[str]:
        out = []
        if self.num is not None and self.num_mask.any():
            out.append("int" if self.ints is not None else "float")
        if self.codes is not None and (self.codes >= 0).any():
            out.append("str")
        if self.bools is not None and self.bool_mask.any():
            out.append("bool")
        if self.obj is not None and self.obj_mask.any():
            out.append("object")
        return out

    def to_pylist(self, missing: Any = None) -> list:
        """Python values per row; ``missing`` where the row has no value."""
        out = [missing] * self.n
        if self.none_mask is not None:
            for i in np.flatnonzero(self.none_mask):
                out[i] = None
        if self.num is not None:
            idx = np.flatnonzero(self.num_mask)
            vals = (self.ints if self.ints is not None else self.num)[idx].tolist()
            for i, v in zip(idx.tolist(), vals):
                out[i] = v
        if self.codes is not None:
            idx = np.flatnonzero(self.codes >= 0)
            for i, v in zip(idx.tolist(), self.cats[self.codes[idx]].tolist()):
                out[i] = v
        if self.bools is not None:
            idx = np.flatnonzero(self.bool_mask)
            for i, v in zip(idx.tolist(), self.bools[idx].tolist()):
                out[i] = v
        if self.obj is not None:
            for i in np.flatnonzero(self.obj_mask).tolist():
                out[i] = copy_tree(self.obj[i])
        return out

    def to_arrow(self) -> Any:
        """A pyarrow array; a column mixing kinds becomes strings (lists as JSON)."""
        import pyarrow as pa

        kinds = self.kinds()
        if not kinds:
            return pa.nulls(self.n)
        # The common kinds are built from buffers: pa.array would import pandas (see _arrow.py).
        from . import arrow as _arrow

        if kinds in (["int"], ["float"]):
            if self.ints is not None:
                return _arrow.numeric(self.ints, pa.int64(), ~self.num_mask)
            return _arrow.numeric(self.num, pa.float64(), ~self.num_mask)
        if kinds == ["bool"]:
            return _arrow.numeric(self.bools, pa.bool_(), ~self.bool_mask)
        if kinds == ["str"]:
            values = np.where(self.codes >= 0, self.cats[np.maximum(self.codes, 0)] if len(self.cats) else None, None)
            return _arrow.strings(values.tolist())
        values = self.to_pylist()
        if kinds == ["object"]:
            lists = _arrow.string_lists(values)  # tags
            if lists is not None:
                return lists
            try:
                return pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
                pass  # e.g. lists mixing int64 and uint64 values: shown as text below
        return pa.array([None if v is None else display(v) for v in values], type=pa.string())


def _classify_other(v: Any, i: int, num_i: list, num_v: list, str_i: list, str_v: list,
                    bool_i: list, bool_v: list, obj_i: list) -> None:
    """Subclasses and NumPy scalars (from user callables) go to their natural kind."""
    if isinstance(v, (bool, np.bool_)):
        bool_i.append(i)
        bool_v.append(bool(v))
    elif isinstance(v, (int, np.integer)) and _INT64_MIN <= v <= _INT64_MAX:
        num_i.append(i)
        num_v.append(int(v))
    elif isinstance(v, (float, np.floating)):
        num_i.append(i)
        num_v.append(float(v))
    elif isinstance(v, str):
        str_i.append(i)
        str_v.append(str(v))
    else:
        obj_i.append(i)


def _mask(n: int, idx: np.ndarray) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[idx] = True
    return m


def copy_tree(v: Any) -> Any:
    """A copy of a param or context tree (dicts and lists; leaves shared): what a
    caller gets may be edited without changing the columns it came from."""
    if isinstance(v, list):
        return [copy_tree(x) for x in v]
    if isinstance(v, dict):
        return {k: copy_tree(x) for k, x in v.items()}
    return v


def display(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (list, dict)):
        import json  # only to display nested values

        return json.dumps(v, default=str)
    return repr(v)


def element_key(v: Any) -> Any:
    """A hashable key under which equal values meet (1 == 1.0, but True != 1)."""
    if v is None:
        return ("none",)
    t = type(v)
    if t is bool:
        return ("bool", v)
    if t is int or t is float:
        return ("num", float(v)) if not (t is float and math.isnan(v)) else None
    if t is str:
        return ("str", v)
    if t is list or t is tuple:
        try:
            return ("list", tuple(element_key(x) for x in v))
        except TypeError:
            return None
    return None
