"""One row buffer for a run with many sequences (tracking/rowbuf.py, issue 22,
target 6): every way of tracking keeps each sequence's points, in order, across the
switch, flushes, closing, resuming, object sequences and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from runstore import Image, InvalidValueError, Repo, Run, RunClosedError
from runstore.tracking import rowbuf as _rowbuf


@pytest.fixture
def shared_at(monkeypatch):
    monkeypatch.setattr(_rowbuf, "SHARED_AT", 4)
    return 4


def _run(tmp_path) -> tuple:
    repo = Repo(tmp_path / "r", flush_interval=3600)
    return repo, Run(repo=repo, system_metrics=False, capture_env=False)


def test_points_keep_their_order_through_the_switch_and_every_writer(tmp_path, shared_at):
    repo, run = _run(tmp_path)
    expected: dict = {}

    def track(name, value, step=None, via=None):
        (via or run.track)(value, name=name, step=step)
        steps = expected.setdefault(name, [])
        steps.append((step if step is not None else (steps[-1][0] + 1 if steps else 0), float(value)))

    handle = run.sequence("h")  # a handle made before the switch
    bound = run.track  # the method as bound before the switch
    old_bufs = {}
    for i in range(2):  # with h, 3 sequences: per-sequence buffers
        track(f"m{i}", i)
        old_bufs[f"m{i}"] = run._seqs[f"m{i}", None]._buf
    assert "track" not in run.__dict__ and run._rows is None
    track("m2", 2.0)  # the 4th sequence: the run switches to one buffer
    assert "track" in run.__dict__ and run._rows is not None
    # a thread that fetched a sequence's buffer just before the switch still appends there
    old_bufs["m0"].fromlist([99.0, float("nan"), float("nan"), 1.7e9])
    expected["m0"].append((1, 99.0))
    for step in range(1, 40):
        for i in range(6):
            track(f"m{i}", step * 10 + i)
        track("h", step, via=lambda v, name, step: handle.append(v, step=step))
        track("m1", -step, via=bound)  # default step, through the stale bound method
        if step == 7:
            run.flush()
        if step == 9:
            track("m2", 5.5, step=2**60)  # beyond 2**53: the exact slow path keeps its place
        if step == 11:
            run.track_many(np.array([1.0, 2.0]), name="m4")  # columns after rows: order kept
            expected["m4"] += [(expected["m4"][-1][0] + 1, 1.0), (expected["m4"][-1][0] + 2, 2.0)]
    run.close()
    stored = repo.get_run(run.id)
    for name, points in expected.items():
        seq = stored.sequence(name)
        assert seq.steps.tolist() == [s for s, _ in points], name
        assert seq.values.tolist() == [v for _, v in points], name
    assert repo.check() == []


def test_closed_stopped_and_bad_input(tmp_path, shared_at):
    repo, run = _run(tmp_path)
    for i in range(6):
        run.track(1.0, name=f"m{i}")
    with pytest.raises(InvalidValueError):
        run.track("not a number", name="m1")
    with pytest.raises(InvalidValueError):
        run.track(1.0, name="m1", epoch="x")
    run.track(Image(np.zeros((4, 4, 3), np.uint8)), name="img")
    with pytest.raises(InvalidValueError, match="holds image values"):
        run.track(2.0, name="img")  # a number into an image sequence: refused at once
    run.track(3.0, name="late")  # a new float sequence after the switch
    with pytest.raises(InvalidValueError, match="holds float values"):
        run.track(Image(np.zeros((4, 4, 3), np.uint8)), name="late")  # (its number is in the run's buffer)
    run.flush()
    run.close()
    assert "track" not in run.__dict__
    with pytest.raises(RunClosedError):
        run.track(1.0, name="m1")
    stored = repo.get_run(run.id)
    assert stored.sequence("m1").values.tolist() == [1.0]
    assert stored.sequence("late").values.tolist() == [3.0]
    assert stored.sequence("img").count == 1
    assert repo.check() == []


def test_a_resumed_run_with_many_sequences_shares_one_buffer(tmp_path, shared_at):
    repo, run = _run(tmp_path)
    for step in range(3):
        for i in range(10):
            run.track(float(i), name=f"m{i}", context={"k": i % 2})
    run.close()
    run = Run(repo=repo, run_id=run.id, system_metrics=False, capture_env=False)
    assert "track" in run.__dict__
    for i in range(10):
        run.track(float(-i), name=f"m{i}", context={"k": i % 2})
    run.close()
    stored = repo.get_run(run.id)
    for i in range(10):
        seq = stored.sequence(f"m{i}", context={"k": i % 2})
        assert seq.steps.tolist() == [0, 1, 2, 3] and seq.values.tolist() == [i, i, i, -i]


def test_track_many_among_a_shared_runs_rows_moves_no_rows_and_keeps_order(tmp_path, shared_at):
    """track_many into a sequence whose rows are in the run's one buffer waits there
    at its place (rowbuf.queue): no sequence's rows move at the call (taking them
    there sorted the whole buffer and gave every sequence a pending part per call: a
    1,000-name loop with a track_many per step ran 3.5x slower), and each sequence's
    points keep their order at the flush, whichever sequences had rows or items."""
    repo, run = _run(tmp_path)
    names = [f"m{i}" for i in range(6)]
    expected: dict = {name: [] for name in names + ["bulk", "alone"]}
    for step in range(30):
        for i, name in enumerate(names):
            run.track(float(step * 10 + i), name=name)
            expected[name].append(float(step * 10 + i))
        if step % 3 == 0:  # into a sequence with rows of its own in the buffer
            before = [len(run._seqs[n, None]._pending) for n in names]
            run.track_many(np.array([-1.0, -2.0]) - step, name="m1")
            expected["m1"] += [-1.0 - step, -2.0 - step]
            assert [len(run._seqs[n, None]._pending) for n in names] == before  # nothing moved
        run.track_many(np.array([float(step)]), name="bulk")  # a sequence fed by track_many only
        expected["bulk"].append(float(step))
        if step == 20:
            run.track_many(np.array([7.0, 8.0]), name="alone")
            run.track_many(np.array([9.0]), name="alone")
            expected["alone"] += [7.0, 8.0, 9.0]
        if step in (10, 25):
            run.flush()
    run.close()
    stored = repo.get_run(run.id)
    for name, values in expected.items():
        seq = stored.sequence(name)
        assert seq.values.tolist() == values, name
        assert seq.steps.tolist() == list(range(len(values))), name
    assert repo.check() == []
