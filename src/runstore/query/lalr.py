"""The query language's lexer and LALR(1) parser: a driver for the tables lark
computed from ``grammar.lark`` (``_lalr_tables.py``, written by
``python -m runstore.query.gen_parser``, which says why lark is not imported at run
time).

It builds the trees lark builds for the grammar and raises the errors lark raises,
with the same positions and expected-token sets (tests/test_query_parser_generated.py
compares the two on a corpus and on random token strings): the lexer tries the
terminals in lark's order at each position, the parser shifts and reduces on the
tables, and each reduction keeps, inlines or pads the children the way lark's tree
builder does for that rule.
"""

from __future__ import annotations

from typing import Any, Iterator

from . import _lalr_tables as _t

_IGNORE = frozenset(_t.IGNORE)


class Token(str):
    """A token: its text, with ``type``, ``line`` and ``column`` (1-based) like lark's."""

    __slots__ = ("type", "line", "column", "pos_in_stream")

    def __new__(cls, type_: str, value: str, pos: int = 0, line: int = 1, column: int = 1) -> "Token":
        self = super().__new__(cls, value)
        self.type, self.pos_in_stream, self.line, self.column = type_, pos, line, column
        return self

    @property
    def value(self) -> str:
        return str(self)


class Tree:
    """A parse-tree node: ``data`` (the rule's or alias's name) and ``children``."""

    __slots__ = ("data", "children")

    def __init__(self, data: str, children: list) -> None:
        self.data, self.children = data, children

    def __repr__(self) -> str:
        return f"Tree({self.data!r}, {self.children!r})"


class UnexpectedInput(Exception):
    """A syntax error at ``line``/``column`` (1-based); see the two subclasses."""

    line = column = pos_in_stream = 0


class UnexpectedCharacters(UnexpectedInput):
    """No terminal matches the text at ``pos_in_stream``; ``allowed``: every terminal."""

    def __init__(self, text: str, pos: int, line: int, column: int) -> None:
        super().__init__(f"no terminal matches {text[pos:pos + 1]!r} at line {line} column {column}")
        self.pos_in_stream, self.line, self.column = pos, line, column
        self.allowed = set(_t.ALLOWED)


class UnexpectedToken(UnexpectedInput):
    """``token`` cannot come next (``$END``: the text ended); ``expected``: the terminals that could."""

    def __init__(self, token: Token, expected: set) -> None:
        super().__init__(f"unexpected {token.type} {str(token)!r}; expected one of {sorted(expected)}")
        self.token, self.expected = token, expected
        self.line, self.column, self.pos_in_stream = token.line, token.column, token.pos_in_stream


# The lexer scans by hand what the generated alternation ``_t.PATTERN`` matches
# (lark's terminals, tried in lark's order): compiling that regex was ~1 ms of a
# fresh process's first query, more than the parse. tests/test_query_parser_generated.py
# checks that the two scan every text alike and name the same terminals.
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_REST = _NAME_START | frozenset("0123456789")  # ASCII only, as the pattern's classes
_KEYWORDS = {"and": "AND", "or": "OR", "not": "NOT", "in": "IN", "is": "IS",
             "True": "TRUE", "False": "FALSE", "None": "NONE"}
_WS = frozenset(" \t\x0c\r\n")
_TWO = {"==": "EQ", ">=": "GE", "<=": "LE", "!=": "NE"}
_ONE = {",": "COMMA", ".": "DOT", ">": "GT", "(": "LPAR", "[": "LSQB", "<": "LT", "-": "MINUS",
        "%": "PERCENT", "+": "PLUS", ")": "RPAR", "]": "RSQB", "/": "SLASH", "*": "STAR"}
TERMINALS = frozenset(("NAME", "STRING", "NUMBER", "WS", *_KEYWORDS.values(), *_TWO.values(), *_ONE.values()))


def _digits(text: str, i: int, end: int) -> int:
    """The end of the run of decimal digits at ``i`` (the pattern's ``\\d``: any Unicode Nd)."""
    while i < end and text[i].isdecimal():
        i += 1
    return i


def scan(text: str, pos: int) -> tuple[str, int] | None:
    """(terminal, end) of the token at ``pos``, as ``re.match(_t.PATTERN, text, pos)``
    gives them, or None when no terminal matches."""
    end = len(text)
    c = text[pos]
    if c in _NAME_START:  # NAME, unless the whole word is a keyword (its own terminal)
        i = pos + 1
        while i < end and text[i] in _NAME_REST:
            i += 1
        return _KEYWORDS.get(text[pos:i], "NAME"), i
    if c == "'" or c == '"':  # ([^q\\\n]|\\.)* between quotes, on one line
        i = pos + 1
        while i < end:
            ch = text[i]
            if ch == c:
                return "STRING", i + 1
            if ch == "\n":
                return None
            if ch == "\\":
                if i + 1 >= end or text[i + 1] == "\n":
                    return None
                i += 2
            else:
                i += 1
        return None
    if c.isdecimal() or (c == "." and pos + 1 < end and text[pos + 1].isdecimal()):
        i = _digits(text, pos, end)  # \d+\.\d* | \.\d+ | \d+
        if i < end and text[i] == ".":
            i = _digits(text, i + 1, end)
        j = i + 1  # ([eE][+-]?\d+)?
        if i < end and text[i] in "eE":
            if j < end and text[j] in "+-":
                j += 1
            k = _digits(text, j, end)
            if k > j:
                i = k
        return "NUMBER", i
    if c in _WS:
        i = pos + 1
        while i < end and text[i] in _WS:
            i += 1
        return "WS", i
    kind = _TWO.get(text[pos:pos + 2])
    if kind is not None:
        return kind, pos + 2
    kind = _ONE.get(c)
    return (kind, pos + 1) if kind is not None else None


def tokens(text: str) -> Iterator[Token]:
    """The tokens of ``text`` (whitespace dropped), lazily: a parse error before a bad
    character is reported first, as lark's lexer-parser pipeline does."""
    pos, line, line_start, end = 0, 1, 0, len(text)
    while pos < end:
        found = scan(text, pos)
        if found is None:
            raise UnexpectedCharacters(text, pos, line, pos - line_start + 1)
        kind, stop = found
        value = text[pos:stop]
        if kind not in _IGNORE:
            yield Token(kind, value, pos, line, pos - line_start + 1)
        newlines = value.count("\n")
        if newlines:
            line += newlines
            line_start = pos + value.rindex("\n") + 1
        pos = stop


def _reduce(rule: tuple, children: list) -> Any:
    _origin, _size, name, single, include, append_none = rule
    if include is not None:
        kept: list = []
        for i, inline, nones in include:
            if nones:
                kept += [None] * nones
            if inline:
                kept += children[i].children
            else:
                kept.append(children[i])
        if append_none:
            kept += [None] * append_none
        children = kept
    if single and len(children) == 1:
        return children[0]
    return Tree(name, children)


def parse(text: str) -> Any:
    """The parse tree of ``text``; raises UnexpectedCharacters / UnexpectedToken."""
    states, rules, end_state = _t.STATES, _t.RULES, _t.END
    state_stack, value_stack = [_t.START], []
    last = None

    def feed(token: Token, is_end: bool = False) -> Any:
        while True:
            actions = states[state_stack[-1]]
            try:
                action, arg = actions[token.type]
            except KeyError:
                raise UnexpectedToken(token, {s for s in actions if s.isupper()}) from None
            if action == 0:  # shift
                state_stack.append(arg)
                value_stack.append(token)
                return None
            rule = rules[arg]
            size = rule[1]
            if size:
                children = value_stack[-size:]
                del state_stack[-size:]
                del value_stack[-size:]
            else:
                children = []
            value = _reduce(rule, children)
            state_stack.append(states[state_stack[-1]][rule[0]][1])
            value_stack.append(value)
            if is_end and state_stack[-1] == end_state:
                return value_stack[-1]

    for last in tokens(text):
        feed(last)
    # the end marker takes the last token's position (lark's Token.new_borrow_pos)
    end = Token("$END", "", last.pos_in_stream, last.line, last.column) if last is not None else Token("$END", "")
    return feed(end, True)
