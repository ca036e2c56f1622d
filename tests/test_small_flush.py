"""The one-block paths of ``Sequence._prepare`` (issue 22, target 3): a flush whose
points fit the sequence's current block, and a new sequence's single ``track_many``
(``blocks.encode_range``), write the same blocks and sequence records as the
block-by-block loop, whatever the mix of calls, block size, budget or resume."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

from runstore import Repo, Run
from runstore.storage import blocks as _blocks
from runstore.storage import records as _rec
from runstore.tracking import run as _run
from runstore.tracking import pending as _pending
from runstore.tracking import sequence as _sequence


@pytest.fixture
def clock(monkeypatch):
    """The clock made a counter, so two runs given the same calls get the same timestamps.
    This thread's only: the flush thread's heartbeats for runs other tests left open
    must not take ticks (the two workloads would be stamped differently)."""
    ticks = [itertools.count()]
    me = threading.get_ident()

    def now() -> float:
        if threading.get_ident() != me:
            return time.time()
        i = next(ticks[0])
        return 1.7e9 + i * 3e-6 + (i // 13) * 0.01

    monkeypatch.setattr(_run, "_time", now)
    monkeypatch.setattr(_sequence, "_time", now)
    monkeypatch.setattr(_pending, "_time", now)  # track_many's timestamp
    return lambda: ticks.__setitem__(0, itertools.count())


def _workload(repo: Repo, seed: int, resume: bool) -> str:
    """A few sequences, each given random calls of every kind between flushes."""
    rng = np.random.default_rng(seed)
    run = Run(repo=repo, system_metrics=False, capture_env=False)
    rid = run.id
    for r in range(6):
        if resume and r == 3:
            run.close()
            run = Run(repo=repo, run_id=rid, system_metrics=False)
        for j in range(int(rng.integers(1, 4))):
            name = f"m{j}"
            kind = int(rng.integers(0, 8))
            n = int(rng.integers(1, 9))
            values = rng.standard_normal(n)
            if kind == 1:
                values[:] = np.nan
            elif kind == 2:
                values[0] = np.inf
            if kind in (0, 1, 2):
                run.track_many(values, name=name)
            elif kind == 3:
                run.track_many(values, name=name, steps=np.arange(n) * 3 + 100 * r)
            elif kind == 4:
                run.track_many(values, name=name, epochs=np.full(n, r), timestamps=1.6e9 + np.arange(n))
            elif kind == 5:
                for v in values:
                    run.track(float(v), name=name)
            elif kind == 6:
                for i, v in enumerate(values):
                    run.track(float(v), name=name, step=(1 << 60) + i if i % 2 else None, epoch=r)
            else:
                run.track(float(values[0]), name=name, step=int(rng.integers(0, 50)))
                run.track_many(values, name=name)
        if r % 2:  # a sequence written by one flush only (a short run's)
            run.track_many(rng.standard_normal(int(rng.integers(2, 9))), name=f"once{r}")
        if rng.random() < 0.7:
            run.flush()
    run.close()
    return rid


def _stored(repo: Repo) -> tuple:
    env = repo._env
    with env.lmdb.begin() as txn:
        blocks = [bytes(v) for _, v in txn.cursor(db=env.dbs["blocks"])]
        seqs = [repr(_rec.unpack(v)) for _, v in txn.cursor(db=env.dbs["seqs"])]
    return blocks, seqs


@pytest.mark.parametrize("capacity, budget", [(_blocks.CAPACITY, None), (5, None), (5, 150)])
def test_one_block_paths_write_what_the_block_loop_writes(tmp_path, monkeypatch, clock, capacity, budget):
    monkeypatch.setattr(_blocks, "CAPACITY", capacity)
    if budget is not None:
        monkeypatch.setattr(_sequence, "TXN_BYTES", budget)
    taken = []
    real = _sequence.Sequence._prepare_fresh
    monkeypatch.setattr(_sequence.Sequence, "_prepare_fresh", lambda *a: (taken.append(1), real(*a))[1])
    for seed in range(12):
        out = []
        for one_block in (False, True):
            monkeypatch.setattr(_sequence, "ONE_BLOCK", one_block)
            clock()
            repo = Repo(tmp_path / f"{seed}-{one_block}", flush_interval=3600)
            rid = _workload(repo, seed, resume=seed % 3 == 0)
            out.append(_stored(repo))
            assert repo.check() == []
            assert repo.get_run(rid).status == "finished"
        assert out[0][0] and out[0] == out[1], seed
    assert taken  # the fresh path ran


def test_encode_range_is_encode(tmp_path):
    rng = np.random.default_rng(3)
    for start, n, epoch, t in [(0, 1, np.nan, 1.7e9), (7, 10, np.nan, 0.0), (-5, 3, 2.0, -0.0), (0, 4096, 1.0, 1.0),
                               ((1 << 63) - 4, 4, np.nan, 5.0), (-(1 << 63), 2, np.nan, 5.0),
                               (0, 3, -np.nan, 1.0), (0, 3, np.inf, np.inf)]:
        values = rng.standard_normal(n)
        expect = _blocks.encode(np.arange(n, dtype=np.int64) + np.int64(start), values, np.full(n, epoch),
                                np.full(n, t))
        assert _blocks.encode_range(start, values, epoch, t) == expect, (start, n, epoch, t)
    assert _blocks.encode_range(0, np.ones(3), np.nan, np.nan) is None  # encode keeps NaN times raw
    assert _blocks.encode_range((1 << 63) - 2, np.ones(3), np.nan, 1.0) is None  # steps would wrap
