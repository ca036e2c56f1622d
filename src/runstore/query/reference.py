"""A per-row evaluator of query plans: slow on purpose, obvious on purpose.

This is what Aim does for every query (a Python expression per run).  runstore
never uses it to answer queries; it exists as the oracle the vectorised
evaluator is tested against (tests/test_query.py checks both agree on random
queries) and as the baseline the benchmarks report their ratio against.  It
shares only the scalar rules (``py_compare``, ``py_member``, ``_py_arith``) with
the vectorised code, so the column tricks (sorted categories, masks, element
indexes, broadcasting run rows onto sequence rows) are what gets checked.
"""

from __future__ import annotations

import time
from typing import Any

from . import evaluate as ev
from .vectors import MISSING
from .tables import walk
from .compiler import Field, Method, Plan
from .parser import Arith, BoolOp, Compare, Const, Neg, Not

def _attr(run_id: str, record: dict, name: str) -> Any:
    if name == "id":
        return run_id
    if name == "duration":  # like Run.duration: to now while running
        ended = record.get("ended_at")
        if ended is None:
            return time.time() - record["created_at"] if record.get("status") == "running" else MISSING
        return ended - record["created_at"]
    if name == "tags":
        return list(record.get("tags") or [])
    if name == "archived":
        return bool(record.get("archived"))
    value = record.get(name)
    if value is None and name in ("created_at", "ended_at", "pid"):
        return MISSING
    return value


def _field(f: Field, run: tuple, seq: dict | None) -> Any:
    run_id, record, params = run
    if f.level == "run":
        if f.source == "env":
            return walk(record.get("env") or {}, f.path)
        return _attr(run_id, record, f.name) if f.source == "attr" else walk(params or {}, f.path)
    if seq is None:
        return MISSING
    if f.source == "context":
        return walk(seq.get("context") or {}, f.path)
    if f.name == "type":
        return seq.get("type") or "float"
    value = seq.get(f.name)
    return MISSING if value is None and f.source == "summary" else value


def _truth(v: Any) -> bool:
    return v is not MISSING and bool(v)


def value(node: Any, run: tuple, seq: dict | None) -> Any:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Field):
        return _field(node, run, seq)
    if isinstance(node, BoolOp):
        results = (_truth(value(i, run, seq)) for i in node.items)
        return all(results) if node.op == "and" else any(results)
    if isinstance(node, Not):
        return not _truth(value(node.item, run, seq))
    if isinstance(node, Compare):
        return _compare(node, run, seq)
    if isinstance(node, Arith):
        a, b = value(node.left, run, seq), value(node.right, run, seq)
        if a is MISSING or b is MISSING:
            return MISSING
        r = ev._py_arith(node.op, a, b)
        return MISSING if r is None else r
    if isinstance(node, Neg):
        a = value(node.item, run, seq)
        return -a if ev.kind(a) == "num" else MISSING
    if isinstance(node, Method):
        a = value(node.target, run, seq)
        if not isinstance(a, str):
            return MISSING if node.method in ("lower", "upper") else False
        return ev.py_method(node.method, a, node.args)
    raise AssertionError(node)  # pragma: no cover


def _compare(node: Compare, run: tuple, seq: dict | None) -> bool:
    values = [value(o, run, seq) for o in node.operands]
    for i, op in enumerate(node.ops):
        a, b = values[i], values[i + 1]
        left_lit = isinstance(node.operands[i], Const)
        right_lit = isinstance(node.operands[i + 1], Const)
        if op in ("is", "is not"):
            target = node.operands[i + 1].value
            if target is None:
                r = a is MISSING or a is None
            else:
                r = a is target
            if op == "is not":
                r = not r
        elif op in ("in", "not in"):
            if a is MISSING or b is MISSING:
                r = False
            else:
                hit = ev.py_member(a, b)
                r = False if hit is None else (hit if op == "in" else not hit)
        elif (right_lit and b is None) or (left_lit and a is None):
            other = a if right_lit and b is None else b
            missing_or_none = other is MISSING or other is None
            r = missing_or_none if op == "==" else (not missing_or_none if op == "!=" else False)
        elif a is MISSING or b is MISSING:
            r = False
        else:
            r = ev.py_compare(op, a, b)
        if not r:
            return False
    return True


def run_matches(plan: Plan, runs: list, seqs: list) -> list[bool]:
    """For each run of ``runs`` ((id, record, params) tuples, as ``repo._scan_runs()``
    returns), does the plan match?  ``seqs`` is ``repo._scan_sequences()``."""
    if not plan.uses_seq:
        return [_truth(value(plan.node, run, None)) for run in runs]
    by_run: dict = {}
    for run_id, _, summary in seqs:
        by_run.setdefault(run_id, []).append(summary)
    out = []
    for run in runs:
        rows = by_run.get(run[0]) or [None]
        out.append(any(_truth(value(plan.node, run, s)) for s in rows))
    return out


def seq_matches(plan: Plan, runs: list, seqs: list) -> list[bool]:
    """For each sequence of ``seqs``, does the plan match?"""
    by_id = {r[0]: r for r in runs}
    return [
        run_id in by_id and _truth(value(plan.node, by_id[run_id], summary)) for run_id, _, summary in seqs
    ]
