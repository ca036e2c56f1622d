"""``Repo.check()``: an integrity report, in the spirit of diskcache's ``Cache.check``."""

from __future__ import annotations

import math

import numpy as np

from . import blocks as _blocks
from .env import Environment, stale_compact_dirs
from .keys import block_no_of, run_id_of, seq_id_of
from .records import unpack


def check(env: Environment) -> list[str]:
    """Every problem found, one entry each; never raises on damaged data.

    A page LMDB cannot read, a record that does not decode or a block of the
    wrong shape becomes an entry, so that ``runstore check`` can print them all.
    """
    problems: list[str] = []
    for stale in stale_compact_dirs(env.path):
        problems.append(f"{stale.name}: left by an interrupted compact; `runstore compact` removes it")
    try:
        _check(env, problems)
    except Exception as exc:  # LMDB corruption, a damaged page: reported, never raised
        problems.append(f"the repository could not be read to the end: {type(exc).__name__}: {exc}")
    return problems


def _check(env: Environment, problems: list[str]) -> None:
    with env.read(buffers=True) as txn:
        runs = set()
        for key, raw in txn.cursor(db=env.dbs["runs"]):
            rid = run_id_of(key)
            runs.add(rid)
            try:
                rec = unpack(raw)
                for field in ("status", "created_at", "experiment", "tags"):
                    if field not in rec:
                        problems.append(f"run {rid}: record has no {field!r}")
            except Exception as exc:
                problems.append(f"run {rid}: record does not decode: {exc}")
        for key, raw in txn.cursor(db=env.dbs["params"]):
            rid = run_id_of(key)
            if rid not in runs:
                problems.append(f"params of run {rid} belong to no run")
            try:
                unpack(raw)
            except Exception as exc:
                problems.append(f"params of run {rid} do not decode: {exc}")

        # Group block keys by (run, seq) in one pass over the blocks database.
        blocks: dict[tuple[str, int], list[tuple[int, bytes]]] = {}
        for key, raw in txn.cursor(db=env.dbs["blocks"]):
            blocks.setdefault((run_id_of(key), seq_id_of(key)), []).append((block_no_of(key), raw))

        seen = set()
        for key, raw in txn.cursor(db=env.dbs["seqs"]):
            rid, sid = run_id_of(key), seq_id_of(key)
            seen.add((rid, sid))
            where = f"run {rid} sequence {sid}"
            if rid not in runs:
                problems.append(f"{where} belongs to no run")
            try:
                summary = unpack(raw)
            except Exception as exc:
                problems.append(f"{where}: record does not decode: {exc}")
                continue
            if not isinstance(summary, dict):
                problems.append(f"{where}: record is not a mapping")
                continue
            try:
                _check_sequence(summary, rid, blocks.get((rid, sid), []), problems)
            except Exception as exc:
                problems.append(f"{where}: cannot be verified: {type(exc).__name__}: {exc}")
        for rid, sid in blocks.keys() - seen:
            problems.append(f"blocks of run {rid} sequence {sid} belong to no sequence")


def _check_sequence(summary: dict, rid: str, blocks: list, problems: list[str]) -> None:
        where = f"run {rid} sequence {summary.get('name')!r} {summary.get('context') or ''}".rstrip()
        parts = []
        numbers = []
        for no, data in blocks:
            numbers.append(no)
            try:
                parts.append(_blocks.decode(data))
            except Exception as exc:
                problems.append(f"{where}: block {no} does not decode: {exc}")
        if numbers != list(range(len(numbers))):
            problems.append(f"{where}: block numbers are not 0..{len(numbers) - 1}: {numbers[:10]}")
        if summary.get("blocks") != len(numbers):
            problems.append(f"{where}: summary says {summary.get('blocks')} blocks, found {len(numbers)}")
        if any(len(p[1]) != _blocks.CAPACITY for p in parts[:-1]):
            problems.append(f"{where}: a block other than the last is not full")
        steps, values, _, _ = _blocks.concat(parts)
        problems.extend(_check_summary(where, summary, steps, values))


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def _check_summary(where: str, s: dict, steps: np.ndarray, values: np.ndarray) -> list[str]:
    n = len(values)
    if s.get("count") != n:
        return [f"{where}: summary count {s.get('count')} but blocks hold {n} points"]
    if n == 0:
        return []
    finite = values[~np.isnan(values)]
    expected = {
        "first_step": int(steps[0]),
        "last_step": int(steps[-1]),
        "last": float(values[-1]),
        "min": float(finite.min()) if len(finite) else None,
        "max": float(finite.max()) if len(finite) else None,
    }
    return [
        f"{where}: summary {k}={s.get(k)!r} but blocks give {v!r}"
        for k, v in expected.items()
        if not _same(s.get(k), v)
    ]
