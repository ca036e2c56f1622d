"""Query text -> AST.

The grammar lives in ``grammar.lark`` (LALR); ``lalr.py`` parses with the tables lark
computed from it (``_lalr_tables.py``, written by ``python -m runstore.query.gen_parser``,
which says why: a fresh process's first query imports no lark). ``_ToAst`` turns the
parse tree into the small immutable node classes below;
nothing here evaluates anything, and user text is never handed to ``eval``.

Errors carry 1-based ``line``/``column`` and a message that repeats the query
line with a caret under the problem, because a query usually arrives from a
command line or a notebook cell where the user cannot see a stack trace's
context.
"""

from __future__ import annotations

import ast as _pyast
import sys
from operator import itemgetter
from typing import Any

from . import lalr as _lalr
from .lalr import Token, Tree, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from ..errors import QueryNameError, QuerySyntaxError

ROOTS = ("run", "seq", "metric")
# Deeper expressions are refused: evaluation recurses once per level.
MAX_DEPTH = 200

# -- AST ------------------------------------------------------------------------
Pos = tuple  # (line, column), both 1-based


def _eq(self: tuple, other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _ne(self: tuple, other: object) -> bool:
    return not _eq(self, other)


def _hash(self: tuple) -> int:
    return hash((type(self), tuple.__hash__(self)))


def _repr(self: tuple) -> str:
    return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in zip(self._fields, self))})"


def _getnewargs(self: tuple) -> tuple:  # pickle and copy rebuild the node from its fields
    return tuple(self)


def _replace(self: tuple, **changes: Any) -> tuple:
    return type(self)(**{**dict(zip(self._fields, self)), **changes})


def _bind(cls: type, args: tuple, kw: dict) -> tuple:
    """The fields of ``cls(*args, **kw)`` in order, defaults filled in, or TypeError."""
    names, defaults = cls._fields, cls._defaults
    if len(args) > len(names):
        raise TypeError(f"{cls.__name__} takes {len(names)} fields, got {len(args)}")
    values = list(args) + [_MISSING] * (len(names) - len(args))
    for k, v in kw.items():
        if k not in names:
            raise TypeError(f"{cls.__name__} has no field {k!r}")
        i = names.index(k)
        if values[i] is not _MISSING:
            raise TypeError(f"{cls.__name__} got field {k!r} twice")
        values[i] = v
    first_default = len(names) - len(defaults)
    for i, v in enumerate(values):
        if v is _MISSING:
            if i < first_default:
                raise TypeError(f"{cls.__name__} is missing field {names[i]!r}")
            values[i] = defaults[i - first_default]
    return tuple(values)


_MISSING = object()


def node_class(name: str, fields: str, defaults: tuple = (), doc: str | None = None) -> type:
    """An immutable value class (AST nodes here, plan nodes in compiler.py and
    evaluate.py, keys in runstore.analysis.keys): a tuple with named fields, equal
    only to instances of its own class (as a frozen dataclass is). Neither
    dataclasses (creating the classes a first query needs took ~5 ms of a fresh
    process's first query) nor ``namedtuple`` (~35 µs a class, its generated
    ``__new__`` compiled by ``exec``): ``type`` with a shared ``__new__`` costs ~5 µs."""
    names = tuple(fields.replace(",", " ").split())
    width = len(names)
    module = sys._getframe(1).f_globals.get("__name__", __name__)  # as namedtuple: pickle finds it there

    def __new__(cls: type, *args: Any, **kw: Any) -> tuple:
        return tuple.__new__(cls, args if not kw and len(args) == width else _bind(cls, args, kw))

    ns: dict[str, Any] = {
        "__slots__": (), "__new__": __new__, "__eq__": _eq, "__ne__": _ne, "__hash__": _hash,
        "__repr__": _repr, "__getnewargs__": _getnewargs, "_replace": _replace, "_fields": names,
        "_defaults": tuple(defaults), "__match_args__": names, "__module__": module,
        "__doc__": doc or f"{name}({', '.join(names)})",
    }
    for i, field in enumerate(names):
        ns[field] = property(itemgetter(i), doc=f"field {i}: {field}")
    return type(name, (tuple,), ns)


_AT = ((1, 1),)
Const = node_class("Const", "value pos", _AT)
Ref = node_class("Ref", "root path pos", _AT,
            "``run.<path>`` or ``seq.<path>`` before name resolution (``metric`` is stored as ``seq``).")
Call = node_class("Call", "target method args pos", _AT)
# ops: "==", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not"
Compare = node_class("Compare", "operands ops pos", _AT)
BoolOp = node_class("BoolOp", "op items")  # op: "and" | "or"
Not = node_class("Not", "item")
Arith = node_class("Arith", "op left right pos", _AT)  # op: + - * / %
Neg = node_class("Neg", "item pos", _AT)


def pos_of(node: Any) -> Pos:
    if isinstance(node, (BoolOp,)):
        return pos_of(node.items[0])
    if isinstance(node, Not):
        return pos_of(node.item)
    return getattr(node, "pos", (1, 1))


# -- errors -----------------------------------------------------------------------
def caret_message(text: str, line: int, column: int, message: str) -> str:
    """``message`` followed by the query line and a caret under ``column``."""
    lines = text.splitlines() or [""]
    src = lines[min(max(line, 1), len(lines)) - 1]
    # Long lines: show a window around the column so the caret stays readable.
    start = max(0, column - 1 - 60)
    shown = src[start : start + 100]
    caret = " " * (column - 1 - start) + "^"
    where = f"line {line}, column {column}" if len(lines) > 1 else f"column {column}"
    return f"{message} at {where}:\n    {shown}\n    {caret}"


class SizedCache:
    """An LRU cache of query -> result bounded by the total length of the queries kept.

    A count bound alone kept 441 MB for 150 distinct 1 MB queries; plans grow with
    their text, so bounding the text bounds the memory.
    """

    def __init__(self, max_chars: int = 1 << 20, max_entries: int = 512) -> None:
        import collections
        import threading

        self._items: "collections.OrderedDict[str, Any]" = collections.OrderedDict()
        self._chars = 0
        self._max_chars, self._max_entries = max_chars, max_entries
        self._lock = threading.Lock()

    def get(self, text: str, compute: Any) -> Any:
        with self._lock:
            if text in self._items:
                self._items.move_to_end(text)
                return self._items[text]
        value = compute(text)
        if len(text) > self._max_chars // 8:
            return value  # one huge query is not worth evicting many small ones
        with self._lock:
            if text not in self._items:
                self._items[text] = value
                self._chars += len(text)
                while self._chars > self._max_chars or len(self._items) > self._max_entries:
                    old, _ = self._items.popitem(last=False)
                    self._chars -= len(old)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._chars = 0


_parse_cache = SizedCache()


def syntax_error(text: str, pos: Pos, message: str, cls: type = QuerySyntaxError) -> QuerySyntaxError:
    line, column = pos
    return cls(caret_message(text, line, column, message), line=line, column=column, query=text)


def suggest(word: str, choices: Any) -> str:
    from difflib import get_close_matches  # only for an error's suggestions
    close = get_close_matches(word, list(choices), n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(close) + "?"
    return "expected one of: " + ", ".join(sorted(choices))


# Names a new user writes bare that live under ``run`` (MLflow's ``params.lr``).
_RUN_WORDS = ("params", "hparams", "config", "cfg", "metrics", "tags", "name", "status", "experiment",
              "id", "hash", "created_at", "ended_at", "duration", "description", "parent", "archived")


def unknown_name_message(word: str) -> str:
    """A bare word: a run field written without ``run.``, a string left unquoted, or a typo."""
    from difflib import get_close_matches  # only for an error's suggestions
    close = get_close_matches(word, list(ROOTS), n=3, cutoff=0.6)
    if close:
        return f"unknown name {word!r}: did you mean {' or '.join(close)}?"
    if word in _RUN_WORDS or word.startswith(("param", "hparam")):
        return (f"unknown name {word!r}: params and run attributes are reached through run, "
                f"e.g. run.{word}... (write run.params.lr for the param lr)")
    return (f"unknown name {word!r}: a query starts from run or seq (or metric); to compare with "
            f"the text {word!r}, quote it: '{word}' (e.g. run.status == 'finished')")


_TOKEN_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "DOT": "'.'",
    "EQ": "'=='",
    "NE": "'!='",
    "LT": "'<'",
    "LE": "'<='",
    "GT": "'>'",
    "GE": "'>='",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "PERCENT": "'%'",
    "AND": "'and'",
    "OR": "'or'",
    "NOT": "'not'",
    "IN": "'in'",
    "IS": "'is'",
    "TRUE": "True",
    "FALSE": "False",
    "NONE": "None",
}


def _describe_expected(expected: Any) -> str:
    expected = {t for t in expected if not t.startswith("$")}
    if {"NAME", "NUMBER", "STRING"} <= expected:
        return " (expected a value or a name such as run.name)"
    words = sorted({_TOKEN_WORDS.get(t, t.lower()) for t in expected})
    if not words:
        return ""
    if len(words) > 8:
        return " (expected an operator, 'and', 'or' or a closing bracket)"
    return " (expected " + ", ".join(words) + ")"


def _end_pos(text: str) -> Pos:
    lines = text.rstrip().splitlines() or [""]
    return (len(lines), len(lines[-1]) + 1)


def _convert_parse_error(text: str, err: UnexpectedInput) -> QuerySyntaxError:
    line = getattr(err, "line", 1) or 1
    column = getattr(err, "column", 1) or 1
    if line < 1 or column < 1:  # lark uses -1 for "at the end"
        line, column = _end_pos(text)
    if isinstance(err, UnexpectedCharacters):
        char = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        if char == "=":
            msg = "unexpected '=' (use '==' to compare)"
        elif char in "'\"":
            msg = "unterminated string"
        else:
            msg = f"unexpected character {char!r}"
    elif isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            line, column = _end_pos(text)
            msg = "unexpected end of query" + _describe_expected(err.expected)
        else:
            msg = f"unexpected {tok.value!r}" + _describe_expected(err.expected)
    else:  # pragma: no cover - every UnexpectedInput subclass is handled above
        msg = "invalid query"
    return syntax_error(text, (line, column), msg)


# -- parse tree -> AST --------------------------------------------------------------
class _CompileError(Exception):
    """Raised while the tree becomes an AST; parse() turns it into the error it names."""

    def __init__(self, pos: Pos, message: str, cls: type = QuerySyntaxError) -> None:
        super().__init__(message)
        self.pos, self.message, self.cls = pos, message, cls


def _tpos(tok: Token) -> Pos:
    return (tok.line or 1, tok.column or 1)


def _arith_fold(op: str, left: Any, right: Any) -> Any:
    """Fold arithmetic between two literals so that ``-1`` or ``2 * 3`` are constants."""
    a, b = left.value, right.value
    num = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return None
    try:
        if isinstance(a, num) and isinstance(b, num):
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if op == "/":
                return a / b
            if op == "%":
                return a % b
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            return a + b
    except (ZeroDivisionError, OverflowError):
        return None
    return None


class _ToAst:
    """Parse tree -> AST: each tree node is passed, its children already converted, to
    the method named like the node (its grammar rule or alias)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def transform(self, node: Any) -> Any:
        if type(node) is not Tree:
            return node  # a token, or None for an absent optional part
        return getattr(self, node.data)(*[self.transform(child) for child in node.children])

    # boolean structure
    def or_(self, *items):
        return BoolOp("or", items)

    def and_(self, *items):
        return BoolOp("and", items)

    def not_(self, a):
        return Not(a)

    def compare(self, first, *rest):
        operands, ops = [first], []
        for i in range(0, len(rest), 2):
            ops.append(rest[i])
            operands.append(rest[i + 1])
        return Compare(tuple(operands), tuple(ops), pos_of(first))

    def comp_op(self, tok):
        return str(tok)

    def op_in(self):
        return "in"

    def op_not_in(self):
        return "not in"

    def op_is(self):
        return "is"

    def op_is_not(self):
        return "is not"

    # arithmetic
    def _arith(self, op, a, b):
        if isinstance(a, Const) and isinstance(b, Const):
            folded = _arith_fold(op, a, b)
            if folded is not None:
                return Const(folded, a.pos)
        return Arith(op, a, b, pos_of(a))

    def add(self, a, b):
        return self._arith("+", a, b)

    def sub(self, a, b):
        return self._arith("-", a, b)

    def mul(self, a, b):
        return self._arith("*", a, b)

    def div(self, a, b):
        return self._arith("/", a, b)

    def mod(self, a, b):
        return self._arith("%", a, b)

    def neg(self, a):
        if isinstance(a, Const) and isinstance(a.value, (int, float)) and not isinstance(a.value, bool):
            return Const(-a.value, a.pos)
        return Neg(a, pos_of(a))

    def pos(self, a):
        return a

    # names, attributes, calls
    def name(self, tok):
        word = str(tok)
        if word not in ROOTS:
            raise _CompileError(_tpos(tok), unknown_name_message(word), QueryNameError)
        return Ref("seq" if word == "metric" else word, (), _tpos(tok))

    def attr(self, target, tok):
        if not isinstance(target, Ref):
            raise _CompileError(_tpos(tok), f"'.{tok}' can only follow a name such as run or seq")
        return Ref(target.root, target.path + (str(tok),), target.pos)

    def call(self, target, tok, args=None):
        return Call(target, str(tok), tuple(args or ()), _tpos(tok))

    def args(self, *items):
        return [i for i in items if i is not None]

    def getitem(self, target, key):
        if not isinstance(target, Ref) or not isinstance(key, Const):
            raise _CompileError(
                pos_of(key), "indexing works on names with a literal key, e.g. run.hparams['lr'] or run.hparams.layers[0]"
            )
        value = key.value
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise _CompileError(key.pos, f"an index must be a string or an integer, got {value!r}")
        return Ref(target.root, target.path + (value,), target.pos)

    # literals
    def number(self, tok):
        text = str(tok)
        try:
            value: Any = int(text)
        except ValueError:
            value = float(text)
        else:
            if not -(1 << 63) <= value < (1 << 64):
                # Beyond int64/uint64 no column holds it exactly: compare as a float
                # (inf past float64), never an OverflowError at evaluation.
                value = float(text)
        return Const(value, _tpos(tok))

    def string(self, tok):
        text = str(tok)
        if text.isascii() and "\\" not in text and "\0" not in text:
            # nothing to unescape: the text between the quotes (literal_eval compiles, ~0.1 ms)
            return Const(text[1:-1], _tpos(tok))
        try:
            value = _pyast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise _CompileError(_tpos(tok), f"invalid string literal ({exc.msg if hasattr(exc, 'msg') else exc})")
        if not isinstance(value, str):  # pragma: no cover - the STRING terminal only matches quoted text
            raise _CompileError(_tpos(tok), "invalid string literal")
        return Const(value, _tpos(tok))

    def true(self, tok):
        return Const(True, _tpos(tok))

    def false(self, tok):
        return Const(False, _tpos(tok))

    def none(self, tok):
        return Const(None, _tpos(tok))

    def items(self, *items):
        return [i for i in items if i is not None]

    def _sequence(self, items, pos):
        items = list(items or [])
        for item in items:
            if not isinstance(item, Const):
                raise _CompileError(pos_of(item), "list and tuple elements must be literals")
        return Const([i.value for i in items], pos)

    def list_(self, items=None):
        return self._sequence(items, pos_of(items[0]) if items else (1, 1))

    def empty_tuple(self):
        return Const([])

    def tuple_(self, first, items=None):
        return self._sequence([first] + list(items or []), pos_of(first))


def parse(text: str) -> Any:
    """The AST of ``text`` (cached, see :func:`_parse`)."""
    return _parse_cache.get(text, _parse)


def _parse(text: str) -> Any:
    """The AST of ``text``; raises QuerySyntaxError / QueryNameError."""
    try:
        tree = _lalr.parse(text)
    except UnexpectedInput as err:
        raise _convert_parse_error(text, err) from None
    try:
        return _ToAst(text).transform(tree)
    except RecursionError:
        raise syntax_error(text, (1, 1), f"the query is nested too deeply (at most {MAX_DEPTH} levels)") from None
    except _CompileError as err:
        raise syntax_error(text, err.pos, err.message, err.cls) from None
