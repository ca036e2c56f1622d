"""The vectorised flush of many small sequences (tracking/batch_flush.py, issue 22,
target 6): the same blocks and summaries as the per-sequence path, through block
boundaries, transaction budgets, failed transactions and resumed runs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from runstore import Repo, Run
from runstore.errors import InvalidValueError, StorageFullError
from runstore.storage import blocks as _blocks
from runstore.storage import env as _env
from runstore.storage import records as _rec
from runstore.storage.keys import run_key
from runstore.tracking import batch_flush as _batch
from runstore.tracking import run as _run
from runstore.tracking import pending as _pending
from runstore.tracking import sequence as _sequence


@pytest.fixture
def clock(monkeypatch):
    """track()'s clock made a counter: two runs given the same calls get the same
    timestamps (microseconds apart, with a pause now and then: delta exceptions)."""
    ticks = [itertools.count()]

    def now() -> float:
        i = next(ticks[0])
        return 1.7e9 + i * 3e-6 + (i // 97) * 0.01

    def reset() -> None:
        ticks[0] = itertools.count()

    monkeypatch.setattr(_run, "_time", now)
    monkeypatch.setattr(_sequence, "_time", now)
    monkeypatch.setattr(_pending, "_time", now)  # track_many's timestamp
    return reset


def _workload(run: Run, rounds: int, names: int, seed: int, flush=None) -> dict:
    """Round-robin track() calls of every kind the batch takes (default and given
    steps, epochs, NaN/inf values, a rejected call), a track_many and a resumed
    sequence's points the per-sequence path takes; returns the expected points."""
    rng = np.random.default_rng(seed)
    model: dict = {}
    for r in range(rounds):
        for j in range(names):
            name = f"m{j}"
            steps, values, epochs = model.setdefault(name, ([], [], []))
            for _ in range(int(rng.integers(0, 4))):
                kind = j % 5
                value = float(rng.standard_normal()) if kind else [np.nan, np.inf, 1.0][r % 3]
                step = None if kind in (0, 1) or (kind == 2 and r % 2) else (steps[-1] + 2 if steps else 3)
                if kind == 4 and r == 3 and steps:
                    step = steps[-1] - 1  # backwards: the sequence's steps are no longer sorted
                epoch = r // 2 if kind == 3 else None
                run.track(value, name=name, step=step, epoch=epoch)
                steps.append(step if step is not None else (steps[-1] + 1 if steps else 0))
                values.append(value)
                epochs.append(np.nan if epoch is None else float(epoch))
            if j == 4 and r == 1:
                with pytest.raises(InvalidValueError):
                    run.track("not a number", name=name)
        if r == 2:  # columns into one sequence: the per-sequence path for it, this flush
            steps, values, epochs = model["m7"]
            run.track_many(np.arange(6.0), name="m7")
            start = steps[-1] + 1 if steps else 0
            steps.extend(range(start, start + 6))
            values.extend(np.arange(6.0).tolist())
            epochs.extend([np.nan] * 6)
        (flush or run.flush)()
    return model


def _check_points(repo: Repo, run_id: str, model: dict) -> None:
    run = repo.get_run(run_id)
    for name, (steps, values, epochs) in model.items():
        if not steps:
            continue
        seq = run.sequence(name)
        assert seq.steps.tolist() == steps, name
        np.testing.assert_array_equal(seq.values, np.array(values))
        np.testing.assert_array_equal(seq.epochs, np.array(epochs))
        assert np.all(np.diff(seq.timestamps) >= 0)  # (track_many: one timestamp)
        assert seq.count == len(steps) and seq.last_step == steps[-1] and seq.first_step == steps[0]
        finite = [v for v in values if v == v]
        assert seq.min == (min(finite) if finite else None) and seq.max == (max(finite) if finite else None)
        assert (seq.last == values[-1]) or (seq.last != seq.last and values[-1] != values[-1])
    assert repo.check() == []


def _raw_blocks(repo: Repo, run_id: str) -> dict:
    env = repo._env
    prefix = run_key(run_id)
    with env.lmdb.begin(db=env.dbs["blocks"]) as txn:
        return {bytes(k): bytes(v) for k, v in txn.cursor() if bytes(k).startswith(prefix)}


def _runs_two_ways(tmp_path, monkeypatch, clock, rounds: int, names: int, seed: int) -> tuple:
    """The workload written by the per-sequence path and by the batch, same clock."""
    calls = []
    real = _batch._prepare_chunk
    monkeypatch.setattr(_batch, "_prepare_chunk", lambda *a: (calls.append(len(a[3])), real(*a))[1])
    out = []
    for label, min_batch in (("per-sequence", 10**9), ("batch", _batch.MIN_BATCH)):
        monkeypatch.setattr(_batch, "MIN_BATCH", min_batch)
        clock()
        repo = Repo(tmp_path / label, flush_interval=3600)
        run = Run(repo=repo, system_metrics=False, capture_env=False)
        model = _workload(run, rounds, names, seed)
        run.close()
        out.append((repo, run.id, model))
    assert calls, "the batch path never ran"
    return out, calls


def test_batch_writes_the_blocks_the_per_sequence_path_writes(tmp_path, monkeypatch, clock):
    (one, many), calls = _runs_two_ways(tmp_path, monkeypatch, clock, rounds=6, names=40, seed=1)
    a, b = _raw_blocks(*one[:2]), _raw_blocks(*many[:2])
    assert len(a) >= 40 and list(a.values()) == list(b.values())
    ra, rb = one[0].get_run(one[1]), many[0].get_run(many[1])
    for name in one[2]:
        if one[2][name][0]:
            sa, sb = ra.sequence(name), rb.sequence(name)
            assert repr(sa.summary) == repr(sb.summary), name
    records = []
    for repo in (one[0], many[0]):
        with repo._env.lmdb.begin(db=repo._env.dbs["seqs"]) as txn:
            records.append([repr(_rec.unpack(v)) for _, v in txn.cursor()])
    assert records[0] == records[1]
    assert "'sorted_steps': False" in "".join(records[1]) and "'sorted_steps': True" in "".join(records[1])
    _check_points(*many)


def test_blocks_fill_and_budgets_split_transactions(tmp_path, monkeypatch, clock, small_blocks):
    """Blocks of 5 points: tails fill (the per-sequence path takes a sequence whose
    points overflow its block, the batch takes it back next flush); a budget of a few
    blocks per transaction leaves the rest for the next one."""
    monkeypatch.setattr(_sequence, "TXN_BYTES", 400)
    per_txn: list = []
    real_write, real_put = _env.Environment.write, _rec.put_blocks

    def write(self, work):
        def counted(txn):
            per_txn.append([0, 0])
            return work(txn)
        return real_write(self, counted)

    def put_blocks(env, txn, items):
        for *_, data in items:
            per_txn[-1][0] += len(data)
            per_txn[-1][1] = max(per_txn[-1][1], len(data))
        return real_put(env, txn, items)

    monkeypatch.setattr(_env.Environment, "write", write)
    monkeypatch.setattr(_rec, "put_blocks", put_blocks)
    (one, many), calls = _runs_two_ways(tmp_path, monkeypatch, clock, rounds=8, names=24, seed=2)
    a, b = _raw_blocks(*one[:2]), _raw_blocks(*many[:2])
    assert len(a) == len(b) > 24 * 2
    for x, y in zip(a.values(), b.values()):
        # (the clock differs: each transaction reads it once more for the lease's heartbeat)
        assert [c.tobytes() for c in _blocks.decode(x)[:3]] == [c.tobytes() for c in _blocks.decode(y)[:3]]
        assert _blocks.encode(*_blocks.decode(y)) == y
    assert max(total - biggest for total, biggest in per_txn) < 400  # the budget, plus one block
    assert sum(1 for total, _ in per_txn if total > 0) > 16  # (8 flushes x 2 runs: some were split)
    _check_points(*one)
    _check_points(*many)


def test_a_failed_transaction_changes_nothing(tmp_path, monkeypatch, clock):
    """The batch grows open blocks that share their buffers with the committed ones:
    a transaction that fails after growing them leaves the committed tails as they
    were, and the next flush writes everything exactly."""
    repo = Repo(tmp_path / "r", flush_interval=3600)
    run = Run(repo=repo, system_metrics=False, capture_env=False)
    names = [f"m{j}" for j in range(30)]
    expected = {name: [] for name in names}

    def track(value: float) -> None:
        for j, name in enumerate(names):
            run.track(value + j, name=name, epoch=1 if j % 2 else None)
            expected[name].append(value + j)

    for v in (1.0, 2.0, 3.0):
        track(v)
    run.flush()
    track(4.0)
    track(5.0)
    real = _env.Environment.write

    def failing_write(self, work):
        def failing(txn):
            work(txn)  # the blocks are grown and put, then the transaction aborts
            raise StorageFullError("the disk is full (test)")
        return real(self, failing)

    monkeypatch.setattr(_env.Environment, "write", failing_write)
    with pytest.raises(StorageFullError):
        run.flush()
    monkeypatch.setattr(_env.Environment, "write", real)
    assert {rec["count"] for _, _, rec in repo._scan_sequences()} == {3}
    track(6.0)
    run.flush()
    track(7.0)
    run.close()
    stored = repo.get_run(run.id)
    for j, name in enumerate(names):
        seq = stored.sequence(name)
        assert seq.values.tolist() == expected[name]
        assert seq.steps.tolist() == list(range(7))
        assert np.isnan(seq.epochs).all() == (j % 2 == 0)
    assert repo.check() == []
    for raw in _raw_blocks(repo, run.id).values():
        assert _blocks.encode(*_blocks.decode(raw)) == raw


def test_a_resumed_run_continues_its_tails(tmp_path, monkeypatch, clock):
    repo = Repo(tmp_path / "r", flush_interval=3600)
    run = Run(repo=repo, system_metrics=False, capture_env=False)
    for step in range(3):
        for j in range(20):
            run.track(float(j + step), name=f"m{j}")
        run.flush()
    run.close()
    run = Run(repo=repo, run_id=run.id, system_metrics=False, capture_env=False)
    for _ in range(2):  # the first flush reads each tail (per-sequence path), the second is the batch's
        for j in range(20):
            run.track(float(j), name=f"m{j}")
        run.flush()
    run.close()
    stored = repo.get_run(run.id)
    for j in range(20):
        seq = stored.sequence(f"m{j}")
        assert seq.steps.tolist() == list(range(5))
        assert seq.values.tolist() == [float(j), float(j + 1), float(j + 2), float(j), float(j)]
    assert repo.check() == []
    for raw in _raw_blocks(repo, run.id).values():
        assert _blocks.encode(*_blocks.decode(raw)) == raw
