"""AST -> resolved plan -> boolean mask over a table.

Name resolution happens once per query text (the plan is cached), so repeated
queries only pay for the vectorised evaluation over cached columns:

- ``run.<attr>`` is a run attribute (id, name, experiment, tags, status,
  created_at, ended_at, duration, description, parent, archived, hostname,
  pid); any other ``run.<path>`` is a param; ``run.params.<path>`` is always a
  param (the way to reach a param whose top-level key is an attribute name);
- ``seq.name``, ``seq.context.<path>``, ``seq.type`` ("float", "image", ...) and the summaries ``seq.count``,
  ``first_step``, ``last_step``, ``last``, ``min``, ``max``; ``metric`` is the
  same as ``seq``.

In a run query, conditions on ``seq`` are evaluated per (run, sequence) pair and
a run is selected when at least one pair matches; see docs/query.md.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

import numpy as np

from ..errors import QueryNameError, QuerySyntaxError
from . import evaluate as ev
from .vectors import Column
from .tables import DATE_ATTRS, RUN_ATTRS, SEQ_FIELDS, RunTable, SeqTable
from .parser import (MAX_DEPTH, Arith, BoolOp, Call, Compare, Const, Neg, Not, Ref, SizedCache, node_class, parse,
                     pos_of, suggest, syntax_error)

METHODS = {
    # name: number of string arguments
    "startswith": 1,
    "endswith": 1,
    "contains": 1,
    "matches": 1,
    "lower": 0,
    "upper": 0,
}


# level: "run" | "seq"; source: "attr" | "param" | "env" | "summary" | "name" | "context"
Field = node_class("Field", "level source name path pos", ((1, 1),))
Method = node_class("Method", "target method args pos", ((1, 1),))
Plan = node_class("Plan", "node uses_seq text")


# -- resolution ------------------------------------------------------------------------------
class _Resolver:
    def __init__(self, text: str) -> None:
        self.text = text
        self.uses_seq = False

    def error(self, pos: tuple, message: str, cls: type = QuerySyntaxError) -> QuerySyntaxError:
        return syntax_error(self.text, pos, message, cls)

    def resolve(self, node: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise self.error(pos_of(node), f"the query is nested too deeply (at most {MAX_DEPTH} levels)")
        depth += 1
        if isinstance(node, Const):
            return node
        if isinstance(node, Ref):
            return self.ref(node)
        if isinstance(node, BoolOp):
            return BoolOp(node.op, tuple(self.resolve(i, depth) for i in node.items))
        if isinstance(node, Not):
            return Not(self.resolve(node.item, depth))
        if isinstance(node, Arith):
            return Arith(node.op, self.resolve(node.left, depth), self.resolve(node.right, depth), node.pos)
        if isinstance(node, Neg):
            return Neg(self.resolve(node.item, depth), node.pos)
        if isinstance(node, Call):
            return self.call(node, depth)
        if isinstance(node, Compare):
            return self.compare(node, depth)
        raise AssertionError(node)  # pragma: no cover

    def ref(self, ref: Ref) -> Field:
        path = ref.path
        if ref.root == "run":
            if not path:
                raise self.error(ref.pos, "'run' needs an attribute or a param, e.g. run.name or run.hparams.lr")
            head = path[0]
            if head == "params":
                return Field("run", "param", "params", path[1:], ref.pos)
            if head == "hash":  # Aim's name for the id
                head = "id"
            if head == "env":  # the captured environment: a tree in the run record
                return Field("run", "env", "env", path[1:], ref.pos)
            if head in RUN_ATTRS:
                if len(path) > 1:
                    raise self.error(
                        ref.pos,
                        f"run.{head} is a run attribute and has no field {path[1]!r}; "
                        f"for a param named {head!r} write run.params.{head}.{path[1]}",
                        QueryNameError,
                    )
                return Field("run", "attr", head, (), ref.pos)
            if not isinstance(head, str):
                raise self.error(ref.pos, "run[...] needs a string key")
            return Field("run", "param", head, path, ref.pos)
        self.uses_seq = True
        if not path:
            raise self.error(ref.pos, "'seq' needs a field, e.g. seq.name, seq.context.subset or seq.last")
        head = path[0]
        if head not in SEQ_FIELDS:
            raise self.error(ref.pos, f"sequences have no field {head!r}: {suggest(str(head), SEQ_FIELDS)}", QueryNameError)
        if head == "context":
            return Field("seq", "context", "context", path[1:], ref.pos)
        if len(path) > 1:
            raise self.error(ref.pos, f"seq.{head} has no field {path[1]!r}", QueryNameError)
        return Field("seq", "name" if head == "name" else "summary", head, (), ref.pos)

    def call(self, node: Call, depth: int) -> Method:
        if node.method not in METHODS:
            raise self.error(node.pos, f"unknown method {node.method!r}: {suggest(node.method, METHODS)}", QueryNameError)
        want = METHODS[node.method]
        if len(node.args) != want:
            s = "" if want == 1 else "s"
            raise self.error(node.pos, f".{node.method}() takes {want} argument{s}, got {len(node.args)}")
        args = []
        for arg in node.args:
            if not isinstance(arg, Const) or not isinstance(arg.value, str):
                raise self.error(pos_of(arg), f"the argument of .{node.method}() must be a string literal")
            if node.method == "matches":
                try:
                    args.append(ev.compile_regex(arg.value))
                except re.error as exc:
                    raise self.error(arg.pos, f"invalid regular expression for RE2 ({exc})") from None
            else:
                args.append(arg.value)
        return Method(self.resolve(node.target, depth), node.method, tuple(args), node.pos)

    def compare(self, node: Compare, depth: int) -> Compare:
        operands = [self.resolve(o, depth) for o in node.operands]
        for i, op in enumerate(node.ops):
            left, right = operands[i], operands[i + 1]
            if op in ("is", "is not"):
                if not isinstance(right, Const) or not any(right.value is c for c in (None, True, False)):
                    raise self.error(pos_of(right), f"'{op}' compares with None, True or False; use == or != for values")
            elif op not in ("in", "not in"):
                operands[i] = self.date(left, right)
                operands[i + 1] = self.date(right, left)
        return Compare(tuple(operands), node.ops, node.pos)

    def date(self, node: Any, other: Any) -> Any:
        """An ISO date string compared with created_at / ended_at becomes a timestamp."""
        if not (isinstance(node, Const) and isinstance(node.value, str)):
            return node
        if not (isinstance(other, Field) and other.source == "attr" and other.name in DATE_ATTRS):
            return node
        try:
            moment = _dt.datetime.fromisoformat(node.value)
            stamp = moment.timestamp()
        except (ValueError, OverflowError, OSError):
            raise self.error(
                node.pos, f"{node.value!r} is not an ISO date or time such as '2026-01-31' or '2026-01-31T14:00'"
            ) from None
        return Const(stamp, node.pos)


def compile_query(text: str) -> Plan:
    """Parse and resolve ``text`` once; raises QuerySyntaxError / QueryNameError."""
    return _plan_cache.get(text, _compile)


def _compile(text: str) -> Plan:
    try:
        resolver = _Resolver(text)
        node = resolver.resolve(parse(text))
    except QuerySyntaxError:
        raise
    except (OverflowError, RecursionError, ValueError, re.error) as exc:
        # The contract: any text gives a plan, QuerySyntaxError or QueryNameError.
        raise syntax_error(text, (1, 1), f"the query cannot be compiled ({type(exc).__name__}: {exc})") from None
    return Plan(node, resolver.uses_seq, text)


_plan_cache = SizedCache()


# -- evaluation -------------------------------------------------------------------------------
class Frame:
    """The columns a plan reads: run rows, or sequence rows with run columns broadcast."""

    def __init__(self, runs: RunTable, seqs: SeqTable | None = None) -> None:
        self.runs, self.seqs = runs, seqs
        self.n = seqs.n if seqs is not None else runs.n

    def column(self, f: Field) -> Column:
        runs, seqs = self.runs, self.seqs
        if f.level == "run":
            if f.source == "attr":
                getter = lambda: runs.attr(f.name)  # noqa: E731
            elif f.source == "env":
                getter = lambda: runs.env(f.path)  # noqa: E731
            else:
                getter = lambda: runs.param(f.path)  # noqa: E731
            return getter() if seqs is None else seqs.run_column(getter, (f.source, f.path, f.name))
        if f.source == "context":
            return seqs.column("context", f.path)
        return seqs.column(f.name)


def evaluate(node: Any, frame: Frame) -> Any:
    n = frame.n
    if isinstance(node, Const):
        return ev.Lit(node.value)
    if isinstance(node, Field):
        return frame.column(node)
    if isinstance(node, BoolOp):
        acc = ev.truth(evaluate(node.items[0], frame), n)
        for item in node.items[1:]:
            if node.op == "and":
                if not acc.any():  # short-circuit: nothing left to narrow
                    return acc
                acc = acc & ev.truth(evaluate(item, frame), n)
            else:
                if acc.all():
                    return acc
                acc = acc | ev.truth(evaluate(item, frame), n)
        return acc
    if isinstance(node, Not):
        return ~ev.truth(evaluate(node.item, frame), n)
    if isinstance(node, Compare):
        values = [evaluate(o, frame) for o in node.operands]
        acc = None
        for i, op in enumerate(node.ops):
            a, b = values[i], values[i + 1]
            if op in ("in", "not in"):
                r = ev.member(a, b, n, op == "not in")
            elif op in ("is", "is not"):
                r = ev.is_const(a, node.operands[i + 1].value, n)
                if op == "is not":
                    r = ~r
            else:
                r = ev.compare(op, a, b, n)
            acc = r if acc is None else acc & r
        return acc
    if isinstance(node, Arith):
        return ev.arith(node.op, evaluate(node.left, frame), evaluate(node.right, frame), n)
    if isinstance(node, Neg):
        return ev.negate(evaluate(node.item, frame), n)
    if isinstance(node, Method):
        return ev.call(node.method, evaluate(node.target, frame), node.args, n)
    raise AssertionError(node)  # pragma: no cover


def param_fields(node: Any) -> list[Field]:
    """Every ``run.<param path>`` the plan reads, in query order."""
    out: list[Field] = []

    def visit(n: Any) -> None:
        if isinstance(n, Field):
            if n.level == "run" and n.source == "param" and n.path:
                out.append(n)
        elif isinstance(n, BoolOp):
            for item in n.items:
                visit(item)
        elif isinstance(n, Compare):
            for item in n.operands:
                visit(item)
        elif isinstance(n, (Not, Neg)):
            visit(n.item)
        elif isinstance(n, Arith):
            visit(n.left)
            visit(n.right)
        elif isinstance(n, Method):
            visit(n.target)

    visit(node)
    return out


def _unknown_sequence_names(node: Any, seqs: SeqTable) -> list[str]:
    """String constants compared with ``==`` to ``seq.name`` that no sequence has."""
    names = seqs.base.column("name")
    known = names.cat_index() if names.codes is not None else {}
    out: list[str] = []

    def visit(n: Any) -> None:
        if isinstance(n, Compare):
            for i, op in enumerate(n.ops):
                pair = (n.operands[i], n.operands[i + 1])
                for field, const in (pair, pair[::-1]):
                    if (op == "==" and isinstance(field, Field) and field.level == "seq"
                            and field.source == "name" and isinstance(const, Const)
                            and isinstance(const.value, str) and const.value not in known
                            and const.value not in out):
                        out.append(const.value)
            for item in n.operands:
                visit(item)
        elif isinstance(n, BoolOp):
            for item in n.items:
                visit(item)
        elif isinstance(n, Not):
            visit(n.item)

    visit(node)
    return out


def _close_matches(word: str, known: list) -> list:
    from difflib import get_close_matches  # only when there is something to warn about

    return get_close_matches(word, known, n=3, cutoff=0.6)


def warn_unknown_params(plan: Plan, runs: RunTable, seqs: SeqTable | None = None) -> None:
    """A QueryWarning for every param path no run of the repository has: the query
    still runs (the term is empty), but a typo such as ``run.hparams.lrr`` is not silent."""
    import warnings

    from ..errors import QueryWarning

    if not runs.n:
        return
    seen: set[tuple] = set()
    for f in param_fields(plan.node):
        if f.path in seen or runs.has_param(f.path):
            continue
        seen.add(f.path)
        spelled = "run." + ("params." if f.name == "params" else "") + ".".join(map(str, f.path))
        known = [".".join(map(str, p)) for p in runs.param_paths()]
        # Prefixes count too: run.hparams (a dict) is a valid thing to compare or test.
        known += sorted({".".join(map(str, p[:i])) for p in runs.param_paths() for i in range(1, len(p))})
        close = _close_matches(".".join(map(str, f.path)), known)
        hint = f"; closest existing keys: {', '.join('run.' + c for c in close)}" if close else ""
        warnings.warn(
            QueryWarning(f"no run in the repository has the param {spelled} (its terms match nothing){hint}"),
            stacklevel=4,
        )
    if seqs is None or not plan.uses_seq or not seqs.n_real:
        return
    names = seqs.base.column("name")
    existing = list(names.cat_index()) if names.codes is not None else []
    for name in _unknown_sequence_names(plan.node, seqs):
        close = _close_matches(name, existing)
        hint = f"; closest sequence names: {', '.join(repr(c) for c in close)}" if close else ""
        warnings.warn(
            QueryWarning(f"no sequence in the repository is named {name!r} (seq.name == {name!r} matches nothing){hint}"),
            stacklevel=4,
        )


def run_mask(plan: Plan, runs: RunTable, seqs: SeqTable | None) -> np.ndarray:
    """Which rows of ``runs`` match; ``seqs`` is needed when the plan uses seq fields."""
    if not plan.uses_seq:
        return ev.truth(evaluate(plan.node, Frame(runs)), runs.n)
    hit = ev.truth(evaluate(plan.node, Frame(runs, seqs)), seqs.n)
    # A run matches when any of its (run, sequence) rows matches.
    return np.bincount(seqs.run_idx[hit], minlength=runs.n) > 0


def seq_mask(plan: Plan, runs: RunTable, seqs: SeqTable) -> np.ndarray:
    """Which real rows of ``seqs`` match (virtual rows never do)."""
    return ev.truth(evaluate(plan.node, Frame(runs, seqs)), seqs.n) & seqs.real
