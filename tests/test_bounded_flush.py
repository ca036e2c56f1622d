"""Bounded flushes (issue 22, target 8): a flush puts at most ``TXN_BYTES`` of blocks
(plus one block) per write transaction, so a flush of 100 M points is a series of bounded commits
(it was one transaction holding the whole flush's dirty pages), each a consistent
prefix of the points, with the closing record change in the last one."""

import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from runstore import Repo, Run, RunClosedError
from runstore.errors import StorageFullError
from runstore.storage import env as _env
from runstore.storage import records as _rec
from runstore.tracking import lifecycle as _lifecycle
from runstore.tracking import sequence as _sequence


def _count_transactions(monkeypatch) -> list:
    """[blocks, bytes of blocks, largest block] put by each write transaction, in order."""
    per_txn: list = []
    real_write, real_put = _env.Environment.write, _rec.put_blocks

    def write(self, work):
        def counted(txn):
            per_txn.append([0, 0, 0])
            return work(txn)
        return real_write(self, counted)

    def put_blocks(env, txn, items):
        for *_, data in items:
            per_txn[-1][0] += 1
            per_txn[-1][1] += len(data)
            per_txn[-1][2] = max(per_txn[-1][2], len(data))
        return real_put(env, txn, items)

    monkeypatch.setattr(_env.Environment, "write", write)
    monkeypatch.setattr(_rec, "put_blocks", put_blocks)
    return per_txn


def test_points_round_trip_exactly_across_blocks_transactions_and_flushes(tmp_path, small_blocks, monkeypatch):
    """Default steps continue across calls, flushes and transactions; given steps,
    epochs and timestamps are kept exactly, whichever way the points came (track_many
    columns, track() rows, steps beyond 2**53)."""
    monkeypatch.setattr(_sequence, "TXN_BYTES", 200)  # blocks of 5 points: a few per transaction
    repo = Repo(tmp_path / "r", flush_interval=3600)
    run = Run(repo=repo, system_metrics=False, capture_env=False)
    rng = np.random.default_rng(7)
    exp_steps, exp_vals, exp_eps, exp_ts = [], [], [], []
    last = -1

    def expect(vals, steps, eps, ts):
        nonlocal last
        exp_vals.extend(vals)
        exp_steps.extend(steps)
        exp_eps.extend(eps)
        exp_ts.extend(ts)
        last = steps[-1]

    per_txn = _count_transactions(monkeypatch)
    flushes = 0
    for round_ in range(6):
        vals = rng.random(23)
        run.track_many(vals, name="x")  # default steps, one timestamp
        seq = run._seqs["x", None]
        ts = seq._pending[-1].times[0:1][0]
        expect(list(vals), list(range(last + 1, last + 24)), [np.nan] * 23, [ts] * 23)
        vals[:] = -1.0  # the caller reuses its array: the queued points are a copy
        for _ in range(4):
            run.track(0.5, name="x")  # the hot buffer: default steps
            expect([0.5], [last + 1], [np.nan], [seq._buf[-1]])
        steps = np.arange(1000 * round_, 1000 * round_ + 17) * 3
        eps = rng.integers(0, 4, 17).astype(float)
        ts = 1.7e9 + rng.random(17)
        vals = rng.random(17)
        run.track_many(vals, name="x", steps=steps, epochs=eps, timestamps=ts)
        expect(list(vals), list(steps), list(eps), list(ts))
        run.track(0.25, name="x", step=2 ** 60 + round_, epoch=3)  # beyond 2**53: exact steps
        expect([0.25], [2 ** 60 + round_], [3.0], [seq._pending[-1][0][0, 3]])
        run.track(0.75, name="y")  # a second sequence shares each transaction's budget
        if round_ % 2:
            run.flush()
            flushes += 1
    run.flush()
    flushes += 1
    assert all(size - largest < 200 for _, size, largest in per_txn)  # TXN_BYTES, plus one block
    assert len(per_txn) > 2 * flushes  # so each flush took several
    stored = repo.get_run(run.id).sequence("x")
    got = stored.numpy()
    assert got["steps"].tolist() == exp_steps
    assert got["values"].tolist() == exp_vals
    np.testing.assert_array_equal(got["epochs"], np.array(exp_eps))
    np.testing.assert_array_equal(got["timestamps"], np.array(exp_ts))
    summary = stored.summary
    assert summary["count"] == len(exp_vals) and summary["last_step"] == exp_steps[-1]
    assert summary["min"] == min(exp_vals) and summary["max"] == max(exp_vals)
    assert stored._summary["sorted_steps"] is False  # the exact steps went back down
    assert repo.get_run(run.id).sequence("y").values.tolist() == [0.75] * 6
    run.close()
    assert repo.check() == []


def test_a_flush_of_many_small_sequences_is_one_transaction(tmp_path, monkeypatch):
    """The bound is in bytes: 600 metrics with a few points each (600 small tail
    blocks) are one commit, as the group flush promises (a bound of 512 blocks split
    a 10,000-metric flush into 20 fsync'd commits)."""
    repo = Repo(tmp_path / "r", flush_interval=3600)
    run = Run(repo=repo, system_metrics=False, capture_env=False)
    for step in range(3):
        for j in range(600):
            run.track(float(j), name=f"m{j}", step=step)
    per_txn = _count_transactions(monkeypatch)
    run.flush()
    assert [blocks for blocks, _, _ in per_txn] == [600]
    run.close()
    assert repo.get_run(run.id).sequence("m599").values.tolist() == [599.0] * 3


def test_close_marks_the_run_in_the_transaction_that_writes_its_last_block(tmp_path, small_blocks, monkeypatch):
    monkeypatch.setattr(_sequence, "TXN_BYTES", 1)  # one block per transaction
    repo = Repo(tmp_path / "r", flush_interval=3600)
    run = Run(repo=repo, system_metrics=False, capture_env=False)
    run.track_many(np.arange(47.0), name="x")  # 10 blocks: 10 transactions
    seen = []
    real = _env.Environment.write

    def write(self, work):
        result = real(self, work)
        with self.lmdb.begin() as txn:
            status = _rec.get_record(self, txn, run.id)["status"]
        seen.append((status, *[rec["count"] for _, _, rec in repo._scan_sequences()]))
        return result

    monkeypatch.setattr(_env.Environment, "write", write)
    run.close()
    assert seen == [("running", n) for n in range(5, 46, 5)] + [("finished", 47)]


def test_a_group_flush_shares_one_budget_per_transaction(tmp_path, small_blocks, monkeypatch):
    """The flush thread writes the due runs of a repository together: their blocks
    share each transaction's budget, and every run is complete at the end."""
    monkeypatch.setattr(_sequence, "TXN_BYTES", 300)
    repo = Repo(tmp_path / "r", flush_interval=3600)
    runs = [Run(repo=repo, system_metrics=False, capture_env=False) for _ in range(3)]
    for i, run in enumerate(runs):
        run.track_many(np.arange(10.0 * (i + 1)), name="x")  # 2, 4 and 6 blocks
        run.track(1.0, name="small")
    per_txn = _count_transactions(monkeypatch)
    _lifecycle.flush_runs(runs)
    assert len(per_txn) > 1 and all(size - largest < 300 for _, size, largest in per_txn)
    assert sum(blocks for blocks, _, _ in per_txn) == 2 + 4 + 6 + 3
    for i, run in enumerate(runs):
        assert run.sequence("x").values.tolist() == list(np.arange(10.0 * (i + 1)))
        assert not run._seqs["x", None]._pending
    per_txn.clear()
    for run in runs:
        run.track_many(np.arange(12.0), name="x")
    _lifecycle._write_group(repo._env, runs, "finished")  # as at interpreter exit
    assert all(run.closed for run in runs)
    for i, run in enumerate(runs):
        view = repo.get_run(run.id)
        assert view.status == "finished"
        assert view.sequence("x").values.tolist() == list(np.arange(10.0 * (i + 1))) + list(np.arange(12.0))
    assert repo.check() == []


def test_track_many_is_not_held_up_by_a_flush_in_progress(tmp_path, monkeypatch):
    """A flush busy writing blocks (held here at its first block) does not keep
    track_many waiting: the calls complete while it is still in progress, and their
    points go to the next flush, after the flushed ones."""
    repo = Repo(tmp_path / "r", flush_interval=3600)
    run = Run(repo=repo, system_metrics=False, capture_env=False)
    run.track_many(np.arange(100_000.0), name="x")
    writing, release = threading.Event(), threading.Event()
    real = _rec.put_blocks

    def slow(*args):
        writing.set()
        assert release.wait(60)
        return real(*args)

    monkeypatch.setattr(_rec, "put_blocks", slow)
    flusher = threading.Thread(target=run.flush)
    flusher.start()
    try:
        assert writing.wait(30)
        tracker = threading.Thread(target=lambda: [run.track_many(np.full(10_000, float(i)), name="x")
                                                   for i in range(20)] + [run.track_many([1.0], name="new")])
        tracker.start()
        tracker.join(30)
        done_while_flushing = not tracker.is_alive() and flusher.is_alive()
    finally:
        release.set()
        flusher.join(30)
    monkeypatch.setattr(_rec, "put_blocks", real)
    assert done_while_flushing
    assert [len(p) for p in run._seqs["x", None]._pending] == [10_000] * 20  # the next flush's
    run.close()
    vals = repo.get_run(run.id).sequence("x").numpy()
    assert vals["steps"].tolist() == list(range(300_000))
    assert vals["values"][:100_000].tolist() == list(np.arange(100_000.0))
    assert vals["values"][100_000:].tolist() == [float(i) for i in range(20) for _ in range(10_000)]
    assert repo.get_run(run.id).sequence("new").values.tolist() == [1.0]


def test_a_closing_run_refuses_track_many_instead_of_dropping_it(tmp_path):
    run = Run(repo=Repo(tmp_path / "r"), system_metrics=False, capture_env=False)
    run.track_many(np.arange(10.0), name="x")
    run._closing("finished")  # what close() does before taking the last points
    with pytest.raises(RunClosedError):
        run.track_many(np.arange(3.0), name="x")
    run._reopen_after_failed_close()  # the close did not commit: the run takes points again
    run.track_many(np.arange(3.0), name="x")
    run.close()
    assert run.repo.get_run(run.id).sequence("x").count == 13


def test_a_failed_close_leaves_the_run_open_with_its_points(tmp_path, small_blocks, monkeypatch):
    monkeypatch.setattr(_sequence, "TXN_BYTES", 1)
    repo = Repo(tmp_path / "r", flush_interval=3600)
    run = Run(repo=repo, system_metrics=False, capture_env=False)
    run.track_many(np.arange(30.0), name="x")  # 6 blocks: 6 transactions
    real = _env.Environment.write
    calls = []

    def write(self, work):
        calls.append(1)
        if len(calls) == 2:
            raise StorageFullError("the disk is full (test)")
        return real(self, work)

    monkeypatch.setattr(_env.Environment, "write", write)
    with pytest.raises(StorageFullError):
        run.close()
    monkeypatch.setattr(_env.Environment, "write", real)
    assert not run.closed
    run.track_many(np.arange(30.0, 33.0), name="x")  # accepted again
    run.close()
    view = repo.get_run(run.id)
    assert view.status == "finished" and view.sequence("x").values.tolist() == list(np.arange(33.0))


def test_a_full_disk_in_the_middle_of_a_flush_keeps_the_rest_pending(tmp_path, small_blocks, monkeypatch):
    monkeypatch.setattr(_sequence, "TXN_BYTES", 1)
    repo = Repo(tmp_path / "r", flush_interval=3600)
    run = Run(repo=repo, system_metrics=False, capture_env=False)
    run.track_many(np.arange(50.0), name="x")  # 10 blocks: 10 transactions
    real = _env.Environment.write
    calls = []

    def write(self, work):
        calls.append(1)
        if len(calls) == 3:
            raise StorageFullError("the disk is full (test)")
        return real(self, work)

    monkeypatch.setattr(_env.Environment, "write", write)
    with pytest.raises(StorageFullError):
        run.flush()
    # (read from storage: the live run's own handle would flush the rest first)
    assert [rec["count"] for _, _, rec in repo._scan_sequences()] == [10]  # two transactions committed
    assert repo.check() == []
    run.track_many(np.arange(50.0, 53.0), name="x")
    run.close()
    seq = repo.get_run(run.id).sequence("x")
    assert seq.values.tolist() == list(np.arange(53.0)) and seq.steps.tolist() == list(range(53))
    assert repo.check() == []


CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from runstore import Repo, Run
    from runstore.storage import records
    from runstore.tracking import sequence
    sequence.TXN_BYTES = 1  # a block per transaction
    run = Run(repo=Repo(sys.argv[1], flush_interval=3600), system_metrics=False, capture_env=False)
    run.track_many(np.arange(2_000_000.0), name="x")
    real, n = records.put_blocks, [0]
    def slow(*a):  # one call per transaction (of one block here)
        n[0] += 1
        if n[0] == 100:
            print("mid", flush=True)
        if n[0] >= 100:
            time.sleep(0.05)
        return real(*a)
    records.put_blocks = slow
    run.flush()
    print("done", flush=True)
""")


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_big_flush_leaves_a_consistent_prefix(tmp_path):
    path = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "mid"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    repo = Repo(path)
    assert repo.check() == []
    (run,) = repo.runs()
    seq = run.sequence("x")
    count = seq.count
    # whole transactions of whole blocks: the 99 committed before "mid", maybe a few more
    assert count % 4096 == 0 and 99 * 4096 <= count < 2_000_000
    vals = seq.numpy()
    assert vals["values"].tolist() == list(np.arange(float(count)))
    assert vals["steps"].tolist() == list(range(count))


def test_track_looks_for_an_overdue_flush_once_while_another_thread_is_flushing(tmp_path, monkeypatch):
    """A flush in progress (the run's lock held by the flush thread) is not a starved
    flush thread: track() tries to flush itself once, then waits an interval, instead
    of trying at every call until that flush ends (a 10,000-metric loop spent a
    quarter of its calls there)."""
    from runstore.tracking import run as _run

    run = Run(repo=Repo(tmp_path / "r", flush_interval=3600), system_metrics=False, capture_env=False)
    calls = []
    real = _run.Run._flush_overdue

    def overdue(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(_run.Run, "_flush_overdue", overdue)
    run.track(-1.0, name="x")  # the sequence exists (a new one takes the run's lock)
    held, release = threading.Event(), threading.Event()

    def flushing():  # stands in for the flush thread in the middle of a long flush
        with run._lock:
            held.set()
            release.wait(30)

    other = threading.Thread(target=flushing)
    other.start()
    try:
        assert held.wait(30)
        run._due = 0.0  # the flush deadline has passed
        for i in range(1000):
            run.track(float(i), name="x")
    finally:
        release.set()
        other.join(30)
    assert len(calls) == 1
    run.close()
    assert run.repo.get_run(run.id).sequence("x").count == 1001


def test_track_yields_to_a_late_flush_in_progress_for_a_bounded_time(tmp_path, monkeypatch):
    """Since track_many no longer waits for a flush, nothing paused the training loop
    during one: against a loop that keeps the GIL, a flush of 0.1 s of points took
    0.1-0.6 s instead of 20-30 ms, and the next took longer still (test_crash lost
    points tracked 0.9 s before the kill). A flush in progress past an interval is
    late: track() then waits for it to end, at most FLUSH_YIELD, once per interval."""
    from runstore.tracking import run as _run

    run = Run(repo=Repo(tmp_path / "r", flush_interval=3600), system_metrics=False, capture_env=False)
    run.track(-1.0, name="x")
    held, release, ended = threading.Event(), threading.Event(), []

    def flushing(hold: float):  # stands in for the flush thread in a late flush
        with run._lock:
            held.set()
            release.wait(hold)
            ended.append(time.monotonic())

    for yield_s, hold, waits_for_the_end in ((30.0, 0.2, True), (0.05, 30.0, False)):
        monkeypatch.setattr(_run, "FLUSH_YIELD", yield_s)
        held.clear(), release.clear(), ended.clear()
        other = threading.Thread(target=flushing, args=(hold,))
        other.start()
        try:
            assert held.wait(30)
            run._due = 0.0  # that flush is late
            run.track(0.0, name="x")
            returned = time.monotonic()
            # the flush ended first (it ran while track() waited), or track() gave up
            # waiting while it still ran
            assert bool(ended) == waits_for_the_end and (not ended or ended[0] <= returned)
            assert run._due > time.time() + 3000  # looks again an interval later
        finally:
            release.set()
            other.join(30)
    run.close()
    assert run.repo.get_run(run.id).sequence("x").count == 3


def test_a_flush_is_late_past_an_interval_and_the_next_a_whole_interval_after_it_was_due(tmp_path, monkeypatch):
    run = Run(repo=Repo(tmp_path / "r", flush_interval=100), system_metrics=False, capture_env=False)
    run.track_many(np.arange(10.0), name="x")
    seen = []
    real = _rec.put_blocks
    monkeypatch.setattr(_rec, "put_blocks", lambda *a: (seen.append(run._due), real(*a))[1])
    start = time.time()
    run.flush()
    end = time.time()
    assert start + 100 <= seen[0] <= end + 100  # during the flush: its start + an interval
    assert start + 200 <= run._due <= end + 200  # after it: the next start + an interval
    run.close()
    assert run._due == float("inf")  # closed: track() never looks


def test_put_blocks_stores_any_order_marks_format_2_once_and_blobs_dedup(tmp_path, monkeypatch):
    """storage.records.put_blocks (one putmulti per flush): blocks of several sequences
    given out of key order land under their own keys; the repository is marked for
    format-2 blocks only when one is among them; put_blobs_many stores a payload once."""
    from runstore.storage import blocks as B
    from runstore.storage import objblocks as _ob
    from runstore.storage.keys import block_key, run_key

    repo = Repo(tmp_path / "r")
    env = repo._env
    marks = []
    real_mark = env.mark_format
    monkeypatch.setattr(env, "mark_format", lambda txn, fmt: (marks.append(fmt), real_mark(txn, fmt)))
    run = run_key("0" * 24)
    one = b"\x01" + bytes(40)  # first byte: the block format
    two = b"\x02" + bytes(50)
    items = [(run, 2, 0, one), (run, 1, 1, one + b"x"), (run, 1, 0, one + b"yy")]
    assert env.write(lambda txn: _rec.put_blocks(env, txn, items)) == 3 * len(one) + 3
    assert marks == []
    with env.read() as txn:
        got = {bytes(k): bytes(v) for k, v in txn.cursor(db=env.dbs["blocks"])}
    assert got == {block_key(run, s, b): d for _, s, b, d in items}
    env.format = B.REPOSITORY_FORMAT_2 - 1  # as a repository written before format 2
    env.write(lambda txn: _rec.put_blocks(env, txn, [(run, 3, 0, one), (run, 3, 1, two)]))
    assert marks == [B.REPOSITORY_FORMAT_2] and env.format == B.REPOSITORY_FORMAT_2
    assert env.write(lambda txn: _rec.put_blocks(env, txn, [])) == 0

    refs = env.write(lambda txn: _ob.put_blobs_many(env, txn, [{"png": b"a"}, {}, {"png": b"a", "th": b"b"}]))
    assert refs == [{"png": _ob.blob_key(b"a")}, {}, {"png": _ob.blob_key(b"a"), "th": _ob.blob_key(b"b")}]
    with env.read() as txn:
        assert _ob.get_blobs(env, txn, refs[2]) == {"png": b"a", "th": b"b"}
        assert sum(1 for _ in txn.cursor(db=env.dbs["blobs"])) == 2

