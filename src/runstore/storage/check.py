"""``Repo.check()``: an integrity report, in the spirit of diskcache's ``Cache.check``."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from . import blocks as _blocks
from . import objblocks as _ob
from .env import Environment
from .files import stale_compact_dirs
from .keys import block_no_of, run_id_of, seq_id_of
from .records import unpack


class Report(list):
    """The problems found (a list of strings, empty when clean), plus ``notes``:
    things worth knowing that are not damage, such as blobs no block references
    any more (``reclaimable_bytes`` of them; ``runstore compact`` drops them)."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []
        self.reclaimable_bytes = 0


def check(env: Environment) -> Report:
    """Every problem found, one entry each; never raises on damaged data.

    A page LMDB cannot read, a record that does not decode or a block of the
    wrong shape becomes an entry, so that ``runstore check`` can print them all.
    """
    problems = Report()
    for stale in stale_compact_dirs(env.path):
        problems.append(f"{stale.name}: left by an interrupted compact; `runstore compact` removes it")
    try:
        _check(env, problems)
    except Exception as exc:  # LMDB corruption, a damaged page: reported, never raised
        problems.append(f"the repository could not be read to the end: {type(exc).__name__}: {exc}")
    return problems


def _check(env: Environment, problems: Report) -> None:
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
        refs: dict[bytes, str] = {}  # blob key -> the first sequence referencing it
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
                if summary.get("type", "float") == "float":
                    _check_sequence(summary, rid, blocks.get((rid, sid), []), problems, env.format)
                else:
                    _check_objects(summary, rid, blocks.get((rid, sid), []), problems, refs)
            except Exception as exc:
                problems.append(f"{where}: cannot be verified: {type(exc).__name__}: {exc}")
        for rid, sid in blocks.keys() - seen:
            problems.append(f"blocks of run {rid} sequence {sid} belong to no sequence")
        _check_blobs(env, txn, refs, problems)


def _decoded_blocks(where: str, summary: dict, blocks: list, decode: Callable[[bytes], Any],
                    length: Callable[[Any], int], capacity: int,
                    problems: list[str]) -> list:
    """The decoded blocks of one sequence (numeric or object), after checking their
    layout: numbered 0..n-1, as many as the summary says, all full but the last."""
    numbers = [no for no, _ in blocks]
    parts = []
    for no, data in blocks:
        try:
            parts.append(decode(data))
        except Exception as exc:
            problems.append(f"{where}: block {no} does not decode: {exc}")
    if numbers != list(range(len(numbers))):
        problems.append(f"{where}: block numbers are not 0..{len(numbers) - 1}: {numbers[:10]}")
    if summary.get("blocks") != len(numbers):
        problems.append(f"{where}: summary says {summary.get('blocks')} blocks, found {len(numbers)}")
    if any(length(part) != capacity for part in parts[:-1]):
        problems.append(f"{where}: a block other than the last is not full")
    return parts


def _check_objects(summary: dict, rid: str, blocks: list, problems: list[str], refs: dict) -> None:
    """An object sequence: blocks decode, are full but the last, agree with the
    summary (count, first/last step), and name their blobs (collected in ``refs``)."""
    where = f"run {rid} {summary.get('type')} sequence {summary.get('name')!r} {summary.get('context') or ''}".rstrip()
    parts = _decoded_blocks(where, summary, blocks, _ob.decode, lambda part: len(part[3]), _ob.CAPACITY, problems)
    steps, _, _, items = _ob.concat(parts)
    if summary.get("count") != len(items):
        problems.append(f"{where}: summary count {summary.get('count')} but blocks hold {len(items)} points")
    elif items:
        for k, v in (("first_step", int(steps[0])), ("last_step", int(steps[-1]))):
            if summary.get(k) != v:
                problems.append(f"{where}: summary {k}={summary.get(k)!r} but blocks give {v!r}")
    for key in _ob.referenced(items):
        refs.setdefault(key, where)


def _check_blobs(env: Environment, txn, refs: dict, problems: Report) -> None:
    """Every referenced blob exists and hashes to its key; unreferenced blobs
    (left by delete_run) are reclaimable space, reported as a note."""
    db = _ob.blobs_db(env, txn)
    orphans = 0
    if db is not None:
        for key, raw in txn.cursor(db=db):
            key = bytes(key)
            where = refs.pop(key, None)
            if where is None:
                orphans += 1
                problems.reclaimable_bytes += len(raw)
            elif _ob.blob_key(raw) != key:
                problems.append(f"{where}: blob {key.hex()[:16]}... is damaged (its bytes do not match its hash)")
    for key, where in refs.items():
        problems.append(f"{where}: references blob {key.hex()[:16]}..., which is missing")
    if orphans:
        problems.notes.append(
            f"{orphans} blob{'s' if orphans != 1 else ''} ({problems.reclaimable_bytes} bytes) referenced by no "
            "sequence (left by deleted runs): reclaimable space, not damage; `runstore compact` drops them"
        )


def _check_sequence(summary: dict, rid: str, blocks: list, problems: list[str], repo_format: int) -> None:
    where = f"run {rid} sequence {summary.get('name')!r} {summary.get('context') or ''}".rstrip()
    newer = [no for no, raw in blocks if len(raw) and raw[0] == _blocks.FORMAT_2]
    if newer and repo_format < _blocks.REPOSITORY_FORMAT_2:
        # Such blocks are written with the format mark in one transaction: an older
        # runstore would open this repository and fail on them.
        problems.append(f"{where}: blocks {newer[:10]} are of block format {_blocks.FORMAT_2} but the repository "
                        f"is marked format {repo_format} (< {_blocks.REPOSITORY_FORMAT_2})")
    parts = _decoded_blocks(where, summary, blocks, _blocks.decode, lambda part: len(part[1]), _blocks.CAPACITY,
                            problems)
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
