"""track_many queues its columns as given (issue 22, target 5): one copy of the
values, no (n, 4) rows; track() rows and track_many columns of one sequence keep
their order and default steps across the flush that writes them together."""

import tracemalloc

import numpy as np

from runstore import Repo, Run


def test_track_and_track_many_mixed_in_one_flush(tmp_path):
    repo = Repo(tmp_path / "r")
    run = Run(repo=repo, flush_interval=3600, system_metrics=False, capture_env=False)
    run.track(1.0, name="m")  # step 0
    run.track_many([2.0, 3.0], name="m")  # 1, 2
    run.track(4.0, name="m", step=10, epoch=1)
    run.track_many(np.array([5.0, 6.0]), name="m", steps=np.array([20, 21]), epochs=[2, 3],
                   timestamps=[100.0, 101.0])
    run.track_many([7.0], name="m")  # 22
    run.track_many([8.0, 9.0], name="m", steps=[30.0, 31.0])  # float steps, integral
    run.track(10.0, name="m")  # 32
    run.close()
    cols = Repo(tmp_path / "r").get_run(run.id).sequence("m").numpy()
    assert cols["values"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert cols["steps"].tolist() == [0, 1, 2, 10, 20, 21, 22, 30, 31, 32]
    ep = cols["epochs"]
    assert np.isnan(ep[[0, 1, 2, 6, 7, 8, 9]]).all() and ep[[3, 4, 5]].tolist() == [1.0, 2.0, 3.0]
    assert cols["timestamps"][[4, 5]].tolist() == [100.0, 101.0]
    assert (cols["timestamps"][[0, 1, 2, 3, 6, 7, 8, 9]] > 1e9).all()


def test_default_steps_continue_across_flushes_and_blocks(tmp_path):
    repo = Repo(tmp_path / "r")
    run = Run(repo=repo, flush_interval=3600, system_metrics=False, capture_env=False)
    run.track_many(np.arange(5000.0), name="x")
    run.flush()
    run.track(-1.0, name="x")
    run.track_many(np.arange(3000.0), name="x")
    run.close()
    seq = Repo(tmp_path / "r").get_run(run.id).sequence("x")
    cols = seq.numpy()
    assert cols["steps"].tolist() == list(range(8001))
    assert cols["values"].tolist() == list(np.arange(5000.0)) + [-1.0] + list(np.arange(3000.0))
    assert seq.summary["last_step"] == 8000 and seq.summary["count"] == 8001


def test_the_caller_may_reuse_its_arrays_before_the_flush(tmp_path):
    repo = Repo(tmp_path / "r")
    run = Run(repo=repo, flush_interval=3600, system_metrics=False, capture_env=False)
    values, steps = np.array([1.0, 2.0, 3.0]), np.array([5, 6, 7])
    run.track_many(values, name="x", steps=steps)
    values[:] = 0.0
    steps[:] = 0
    run.close()
    cols = Repo(tmp_path / "r").get_run(run.id).sequence("x").numpy()
    assert cols["values"].tolist() == [1.0, 2.0, 3.0] and cols["steps"].tolist() == [5, 6, 7]


def test_queued_points_cost_one_copy_of_the_values(tmp_path):
    # The rows track_many used to queue were 32 bytes a point (4x the values); the
    # columns are the values' copy plus nothing per point for default steps/epochs/time.
    repo = Repo(tmp_path / "r")
    run = Run(repo=repo, flush_interval=3600, system_metrics=False, capture_env=False)
    values = np.random.default_rng(0).random(500_000)
    tracemalloc.start()
    try:
        run.track_many(values, name="x")
        queued, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert queued < 1.5 * values.nbytes, queued
    run.close()
    assert Repo(tmp_path / "r").get_run(run.id).sequence("x").count == 500_000
