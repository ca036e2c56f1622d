"""Vectorised semantics of the query operators over :class:`Column` values.

Every operator works on whole columns at once.  Operands are a ``Column``, a
``Lit`` (a literal from the query) or a boolean ndarray (the result of another
comparison).  The rules, documented for users in docs/query.md:

- a comparison, membership test or method call involving a missing value, or
  values of kinds that cannot be compared (a string against a number), is
  False for that row; nothing raises;
- ``== None`` / ``!= None`` mean ``is None`` / ``is not None``; ``is None`` is
  True when the value is missing or None;
- booleans compare only with booleans (``== True``), not with numbers;
- arithmetic on anything but numbers (and ``+`` on strings), or a division by
  zero, gives a missing value, which in turn makes the comparison False.

Literal-vs-column work is done on the column's distinct strings (``cats``) and
broadcast with ``codes``, so string methods cost one call per distinct value.
"""

from __future__ import annotations

import operator
import re
from typing import Any

import numpy as np

from .parser import node_class
from .vectors import Column, element_key

_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
ORDERING = ("<", "<=", ">", ">=")
# Distinct-string counts above which string methods go through pyarrow.compute.
_ARROW_THRESHOLD = 512


Lit = node_class("Lit", "value", doc="A constant operand (a query literal or a value computed from literals).")


def kind(v: Any) -> str:
    if v is None:
        return "none"
    t = type(v)
    if t is bool:
        return "bool"
    if t is int or t is float:
        return "num"
    if t is str:
        return "str"
    if t is list or t is tuple:
        return "list"
    if t is dict:
        return "dict"
    return "other"


def as_column(x: Any, n: int) -> Any:
    """A boolean result used as a value becomes a boolean column."""
    if isinstance(x, np.ndarray):
        return Column.boolean(x)
    return x


# -- scalar rules (literal against literal, and the per-row fallbacks) -------------
def py_compare(op: str, a: Any, b: Any) -> bool:
    """Two present values; None only equals None (a literal None is handled before)."""
    if b is None or a is None:
        return op == "==" and a is None and b is None
    ka, kb = kind(a), kind(b)
    if ka != kb:
        return False
    if ka in ("bool", "list", "dict", "other") and op in ORDERING:
        return False
    if ka == "list":
        a, b = list(a), list(b)
    try:
        return bool(_OPS[op](a, b))
    except TypeError:
        return False


def py_member(a: Any, b: Any) -> bool | None:
    """``a in b`` with the kind rules; None when ``b`` is not a container."""
    kb = kind(b)
    if kb == "str":
        return isinstance(a, str) and a in b
    if kb == "list":
        key = element_key(a)
        return key is not None and any(element_key(e) == key for e in b)
    if kb == "dict":
        return isinstance(a, str) and a in b
    return None


# -- truthiness ------------------------------------------------------------------------
def truth(x: Any, n: int) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, Lit):
        return np.full(n, bool(x.value))
    out = np.zeros(n, dtype=bool)
    if x.num is not None:
        out |= x.num_mask & (x.num != 0)
    if x.codes is not None:
        nonempty = np.array([bool(c) for c in x.cats] + [False], dtype=bool)
        out |= nonempty[x.codes]  # code -1 picks the trailing False
    if x.bools is not None:
        out |= x.bool_mask & x.bools
    if x.obj is not None:
        for i in np.flatnonzero(x.obj_mask):
            out[i] = bool(x.obj[i])
    return out


def present(x: Any, n: int) -> np.ndarray:
    if isinstance(x, Column):
        return x.present()
    if isinstance(x, Lit):
        return np.full(n, True)
    return np.ones(n, dtype=bool)


def is_none(x: Any, n: int) -> np.ndarray:
    if isinstance(x, Column):
        return x.is_none()
    if isinstance(x, Lit):
        return np.full(n, x.value is None)
    return np.zeros(n, dtype=bool)


def is_const(x: Any, value: Any, n: int) -> np.ndarray:
    """``x is True`` / ``x is False`` / ``x is None``."""
    if value is None:
        return is_none(x, n)
    x = as_column(x, n)
    if isinstance(x, Lit):
        return np.full(n, x.value is value)
    if x.bools is None:
        return np.zeros(n, dtype=bool)
    return x.bool_mask & (x.bools == value)


# -- comparisons -----------------------------------------------------------------------
def compare(op: str, a: Any, b: Any, n: int) -> np.ndarray:
    a, b = as_column(a, n), as_column(b, n)
    if isinstance(a, Lit) and a.value is None:  # `None == x` reads as `x is None`
        a, b = b, a
    if isinstance(b, Lit) and b.value is None:
        if op not in ("==", "!="):
            return np.zeros(n, dtype=bool)
        r = is_none(a, n)
        return r if op == "==" else ~r
    if isinstance(a, Lit) and isinstance(b, Lit):
        return np.full(n, py_compare(op, a.value, b.value))
    if isinstance(a, Lit):
        return _compare_lit(b, FLIP[op], a.value)
    if isinstance(b, Lit):
        return _compare_lit(a, op, b.value)
    return _compare_cols(a, op, b)


def _compare_lit(col: Column, op: str, v: Any) -> np.ndarray:
    n = col.n
    k = kind(v)
    f = _OPS[op]
    if k == "num":
        if col.num is None:
            return np.zeros(n, dtype=bool)
        with np.errstate(invalid="ignore"):
            return f(col.num, v) & col.num_mask
    if k == "str":
        if col.codes is None:
            return np.zeros(n, dtype=bool)
        codes, has = col.codes, col.codes >= 0
        if op in ("==", "!="):
            c = col.cat_index().get(v)
            if op == "==":
                return np.zeros(n, dtype=bool) if c is None else codes == c
            return has if c is None else has & (codes != c)
        side = "left" if op in ("<", ">=") else "right"
        cut = int(np.searchsorted(col.cats, v, side=side))
        return has & (codes < cut) if op in ("<", "<=") else has & (codes >= cut)
    if k == "bool":
        if col.bools is None or op not in ("==", "!="):
            return np.zeros(n, dtype=bool)
        return col.bool_mask & f(col.bools, v)
    out = np.zeros(n, dtype=bool)
    if k in ("list", "dict") and col.obj is not None and op in ("==", "!="):
        target = list(v) if k == "list" else v
        for i in np.flatnonzero(col.obj_mask):
            x = col.obj[i]
            if kind(x) == k:
                out[i] = f(x, target)
    return out


def _compare_cols(a: Column, op: str, b: Column) -> np.ndarray:
    n = a.n
    f = _OPS[op]
    out = np.zeros(n, dtype=bool)
    if a.num is not None and b.num is not None:
        with np.errstate(invalid="ignore"):
            out |= f(a.num, b.num) & a.num_mask & b.num_mask
    if a.codes is not None and b.codes is not None:
        idx = np.flatnonzero((a.codes >= 0) & (b.codes >= 0))
        if len(idx):
            out[idx] = f(a.cats[a.codes[idx]], b.cats[b.codes[idx]]).astype(bool)
    if op in ("==", "!="):
        if a.bools is not None and b.bools is not None:
            out |= a.bool_mask & b.bool_mask & f(a.bools, b.bools)
        if op == "==" and a.none_mask is not None and b.none_mask is not None:
            out |= a.none_mask & b.none_mask
        if a.obj is not None and b.obj is not None:
            for i in np.flatnonzero(a.obj_mask & b.obj_mask):
                x, y = a.obj[i], b.obj[i]
                if kind(x) == kind(y):
                    out[i] = f(x, y)
    return out


# -- membership ------------------------------------------------------------------------
def member(a: Any, b: Any, n: int, negate: bool) -> np.ndarray:
    """``a in b`` (or ``a not in b``): False wherever either side is missing."""
    a, b = as_column(a, n), as_column(b, n)
    if isinstance(b, Lit):
        if kind(b.value) not in ("list", "str", "dict"):
            return np.zeros(n, dtype=bool)
        if isinstance(a, Lit):
            r = py_member(a.value, b.value)
            return np.full(n, bool(r) != negate)
        hit = _in_literal(a, b.value)
        valid = a.present()
    elif isinstance(a, Lit):
        hit, valid = _lit_in_column(a.value, b)
    else:
        hit = np.zeros(n, dtype=bool)
        valid = np.zeros(n, dtype=bool)
        xs, ys = a.to_pylist(_NOPE), b.to_pylist(_NOPE)
        for i, (x, y) in enumerate(zip(xs, ys)):
            if x is _NOPE or y is _NOPE:
                continue
            r = py_member(x, y)
            if r is not None:
                valid[i], hit[i] = True, r
    return valid & ~hit if negate else hit


_NOPE = object()


def _in_literal(col: Column, container: Any) -> np.ndarray:
    n = col.n
    out = np.zeros(n, dtype=bool)
    if isinstance(container, str):  # substring of the literal
        if col.codes is not None:
            per_cat = np.array([c in container for c in col.cats] + [False], dtype=bool)
            out |= per_cat[col.codes]
        return out
    if isinstance(container, dict):
        container = list(container)
    items = list(container)
    nums = [v for v in items if kind(v) == "num"]
    if nums and col.num is not None:
        out |= col.num_mask & np.isin(col.num, np.asarray(nums, dtype=np.float64))
    strs = [v for v in items if type(v) is str]
    if strs and col.codes is not None:
        index = col.cat_index()
        codes = [index[s] for s in strs if s in index]
        if codes:
            out |= np.isin(col.codes, np.asarray(codes, dtype=np.int32))
    if col.bools is not None:
        for v in {v for v in items if type(v) is bool}:
            out |= col.bool_mask & (col.bools == v)
    if col.none_mask is not None and any(v is None for v in items):
        out |= col.none_mask
    lists = [element_key(v) for v in items if kind(v) == "list"]
    if lists and col.obj is not None:
        keys = set(lists)
        for i in np.flatnonzero(col.obj_mask):
            out[i] = element_key(col.obj[i]) in keys
    return out


def _lit_in_column(v: Any, col: Column) -> tuple[np.ndarray, np.ndarray]:
    """``literal in column``: substring for strings, element for lists, key for dicts."""
    n = col.n
    hit = np.zeros(n, dtype=bool)
    valid = np.zeros(n, dtype=bool)
    if col.codes is not None:
        valid |= col.codes >= 0
        if isinstance(v, str):
            per_cat = _per_cat(col, "contains", v)
            hit |= np.append(per_cat, False)[col.codes]
    if col.obj is not None:
        key = element_key(v)
        for i in np.flatnonzero(col.obj_mask):
            x = col.obj[i]
            if type(x) is dict:
                valid[i] = True
                hit[i] = isinstance(v, str) and v in x
            elif type(x) is list:
                valid[i] = True
        if key is not None:
            rows = col.elements().get(key)
            if rows is not None:
                hit[rows] = True
    return hit, valid


# -- string methods ----------------------------------------------------------------------
def _per_cat(col: Column, method: str, arg: Any) -> np.ndarray:
    """A method evaluated once per distinct string of ``col``."""
    cats = col.cats
    if len(cats) > _ARROW_THRESHOLD and method in ("startswith", "endswith", "contains") and isinstance(arg, str):
        import pyarrow.compute as pc

        fn = {"startswith": pc.starts_with, "endswith": pc.ends_with, "contains": pc.match_substring}[method]
        return fn(col.pa_cats(), pattern=arg).to_numpy(zero_copy_only=False).astype(bool)
    if method == "startswith":
        return np.fromiter((c.startswith(arg) for c in cats), dtype=bool, count=len(cats))
    if method == "endswith":
        return np.fromiter((c.endswith(arg) for c in cats), dtype=bool, count=len(cats))
    if method == "contains":
        return np.fromiter((arg in c for c in cats), dtype=bool, count=len(cats))
    if method == "matches":
        return np.fromiter((arg.search(c) is not None for c in cats), dtype=bool, count=len(cats))
    raise AssertionError(method)  # pragma: no cover - the compiler only lets known methods through


def py_method(method: str, value: Any, args: tuple) -> Any:
    if not isinstance(value, str):
        return None
    if method == "lower":
        return value.lower()
    if method == "upper":
        return value.upper()
    if method == "matches":
        return args[0].search(value) is not None
    if method == "contains":
        return args[0] in value
    return getattr(value, method)(args[0])


def call(method: str, target: Any, args: tuple, n: int) -> Any:
    """``target.method(*args)`` with literal (already checked) arguments."""
    target = as_column(target, n)
    if isinstance(target, Lit):
        r = py_method(method, target.value, args)
        if method in ("lower", "upper"):
            return Column(n) if r is None else Lit(r)
        return np.full(n, bool(r))
    if method in ("lower", "upper"):
        out = Column(n)
        if target.codes is not None and len(target.cats):
            mapped = np.array([getattr(c, method)() for c in target.cats], dtype=object)
            cats, inverse = np.unique(mapped, return_inverse=True)
            out.codes = np.where(target.codes >= 0, inverse[np.maximum(target.codes, 0)], -1).astype(np.int32)
            out.cats = cats.astype(object)
        return out
    if target.codes is None or not len(target.cats):
        return np.zeros(n, dtype=bool)
    per_cat = _per_cat(target, method, args[0])
    return np.append(per_cat, False)[target.codes]


# -- arithmetic --------------------------------------------------------------------------
def _numeric(x: Any) -> tuple[Any, Any] | None:
    if isinstance(x, Lit):
        return (x.value, True) if kind(x.value) == "num" else None
    if x.num is None:
        return None
    return x.num, x.num_mask


def arith(op: str, a: Any, b: Any, n: int) -> Any:
    a, b = as_column(a, n), as_column(b, n)
    if isinstance(a, Lit) and isinstance(b, Lit):
        r = _py_arith(op, a.value, b.value)
        return Column(n) if r is None else Lit(r)  # Column(n): every row missing
    out = Column(n)
    na, nb = _numeric(a), _numeric(b)
    if na is not None and nb is not None:
        (x, mx), (y, my) = na, nb
        with np.errstate(all="ignore"):
            if op == "+":
                r = np.add(x, y)
            elif op == "-":
                r = np.subtract(x, y)
            elif op == "*":
                r = np.multiply(x, y)
            elif op == "/":
                r = np.divide(x, y)
            else:
                r = np.mod(x, y)
        mask = np.broadcast_to(np.logical_and(mx, my), (n,)).copy()
        if op in ("/", "%"):
            mask &= np.broadcast_to(np.asarray(y) != 0, (n,))
        out.num = np.broadcast_to(np.asarray(r, dtype=np.float64), (n,)).copy()
        out.num_mask = mask
    if op == "+":
        _concat(out, a, b, n)
    return out


def _strings_of(x: Any, n: int) -> list | None:
    if isinstance(x, Lit):
        return [x.value] * n if isinstance(x.value, str) else None
    if x.codes is None:
        return None
    return [x.cats[c] if c >= 0 else None for c in x.codes.tolist()]


def _concat(out: Column, a: Any, b: Any, n: int) -> None:
    sa, sb = _strings_of(a, n), _strings_of(b, n)
    if sa is None or sb is None:
        return
    idx = [i for i in range(n) if sa[i] is not None and sb[i] is not None]
    if idx:
        out._set_strings(np.asarray(idx, dtype=np.int64), [sa[i] + sb[i] for i in idx])


def _py_arith(op: str, a: Any, b: Any) -> Any:
    if kind(a) == "num" and kind(b) == "num":
        try:
            return {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "%": operator.mod}[
                op
            ](a, b)
        except (ZeroDivisionError, OverflowError):
            return None
    if op == "+" and kind(a) == "str" and kind(b) == "str":
        return a + b
    return None


def negate(x: Any, n: int) -> Any:
    x = as_column(x, n)
    if isinstance(x, Lit):
        return Lit(-x.value) if kind(x.value) == "num" else Column(n)
    out = Column(n)
    if x.num is not None:
        out.num, out.num_mask = -x.num, x.num_mask
    return out


def compile_regex(pattern: str) -> Any:
    """A compiled pattern for ``.matches()``, on RE2: linear time in the text.

    Python's backtracking ``re`` hangs for ever on ``(a+)+$`` against a 30-character
    name, and raises OverflowError / RecursionError on some patterns; RE2 (google-re2)
    has neither problem. Its syntax is Python's minus backreferences and lookaround,
    which are reported as invalid patterns (re.error).
    """
    import re2

    options = re2.Options()
    options.log_errors = False      # errors are raised, not printed on stderr
    options.max_mem = 8 << 20       # a pattern needing more is an error, not a memory hog
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        message = exc.args[0] if exc.args else exc
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        raise re.error(str(message)) from None
    except (OverflowError, RecursionError, ValueError, TypeError) as exc:
        raise re.error(str(exc)) from None
