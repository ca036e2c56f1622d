"""Writer leases (issue 20, item 4): one writing process per run.

Real processes: a child (tests/lease_child.py) holds a run and tracks into it
while this process, the CLI or a second child tries to resume or delete it.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runstore import Repo, Run, RunLockedError, RunNotFoundError
from runstore.tracking import lease as _lease
from runstore.storage import records as _rec

CHILD = str(Path(__file__).with_name("lease_child.py"))
INTERVAL = 0.1


def _start_writer(path, run_id, min_stale=_lease.MIN_STALE):
    proc = subprocess.Popen([sys.executable, CHILD, str(path), run_id, str(INTERVAL), str(min_stale)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    assert line[:1] == ["ready"], proc.stderr.read()
    return proc


def _stopped(proc, timeout=30):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 7, (out, err)
    return out


def _new_run(path):
    run = Run(repo=Repo(path, flush_interval=INTERVAL), name="shared")
    run.track(0.0, name="loss")
    run.close()
    return run.id


def _assert_contiguous(repo, run_id):
    steps = repo.get_run(run_id).sequence("loss").steps
    np.testing.assert_array_equal(steps, np.arange(len(steps)))  # no point replaced, none twice
    return len(steps)


def test_second_process_gets_run_locked_error_until_the_writer_dies(tmp_path):
    path = tmp_path / "repo"
    run_id = _new_run(path)
    writer = _start_writer(path, run_id)
    try:
        time.sleep(3 * INTERVAL)
        with pytest.raises(RunLockedError) as err:
            Run(repo=Repo(path), run_id=run_id)
        text = str(err.value)
        assert f"process {writer.pid} on host {socket.gethostname()}" in text
        assert "force=True" in text and run_id in text
        # A third process (not a test artefact of this one) is refused the same way.
        other = subprocess.run(
            [sys.executable, "-c", f"from runstore import Repo, Run\nRun(repo=Repo({str(path)!r}), run_id={run_id!r})"],
            capture_output=True, text=True, timeout=60)
        assert other.returncode == 1 and "RunLockedError" in other.stderr and str(writer.pid) in other.stderr
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    # The holder died without a word: its pid is gone, so the lease is free.
    repo = Repo(path)
    before = _assert_contiguous(repo, run_id)
    assert before > 1
    resumed = Run(repo=repo, run_id=run_id)
    resumed.track(2.0, name="loss")
    resumed.close()
    assert _assert_contiguous(repo, run_id) == before + 1
    assert repo.check() == []


def test_force_takes_over_and_the_old_writer_stops(tmp_path):
    path = tmp_path / "repo"
    run_id = _new_run(path)
    writer = _start_writer(path, run_id)
    time.sleep(3 * INTERVAL)
    repo = Repo(path, flush_interval=INTERVAL)
    taker = Run(repo=repo, run_id=run_id, force=True)
    out = _stopped(writer)  # its next flush finds the lease is no longer its own
    assert "stopped RunLockedError" in out and f"process {os.getpid()}" in out and "taken over" in out
    for _ in range(5):
        taker.track(3.0, name="loss")
    taker.close()
    n = _assert_contiguous(repo, run_id)
    values = repo.get_run(run_id).sequence("loss").values
    assert values[-5:].tolist() == [3.0] * 5 and (values[1:-5] == 1.0).all() and n > 6
    assert repo.get_run(run_id).status == "finished"
    assert repo.check() == []


@pytest.mark.slow
def test_a_writer_without_heartbeat_is_taken_over_after_its_stale_time(tmp_path):
    path = tmp_path / "repo"
    run_id = _new_run(path)
    writer = _start_writer(path, run_id, min_stale=1.0)  # stale after 1 s without a heartbeat
    try:
        time.sleep(3 * INTERVAL)
        writer.send_signal(signal.SIGUSR1)  # alive, but it writes nothing any more
        assert writer.stdout.readline().strip() == "frozen"
        stopped_at = time.monotonic()
        with pytest.raises(RunLockedError, match="1 s"):
            Run(repo=Repo(path), run_id=run_id)
        time.sleep(max(0.0, 1.5 - (time.monotonic() - stopped_at)))
        taker = Run(repo=Repo(path, flush_interval=INTERVAL), run_id=run_id)  # no force needed
    finally:
        writer.send_signal(signal.SIGUSR2)
    assert "taken over" in _stopped(writer)
    taker.track(5.0, name="loss")
    taker.close()
    _assert_contiguous(Repo(path), run_id)
    assert Repo(path).check() == []


def test_same_process_resume_returns_the_open_run(tmp_path):
    repo = Repo(tmp_path / "repo")
    run = Run(repo=repo, name="a")
    run.track(1.0, name="loss")
    assert Run(repo=repo, run_id=run.id) is run  # a notebook cell run twice
    again = Run(repo=str(tmp_path / "repo"), run_id=run.id.upper(), name="b", tags=["t"])
    assert again is run and run.name == "b" and run.tags == ["t"]
    again.track(2.0, name="loss")
    run.close()
    fresh = Run(repo=repo, run_id=run.id)  # closed: a new writer
    assert fresh is not run and fresh.sequence("loss").count == 2
    fresh.close()
    with repo._env.read() as txn:
        assert _rec.get_lease(repo._env, txn, run.id) is None  # close releases the lease


def test_heartbeat_is_written_while_idle(tmp_path, monkeypatch):
    monkeypatch.setattr(_lease, "MIN_STALE", 0.4)  # beat every 0.1 s while idle
    repo = Repo(tmp_path / "repo", flush_interval=0.05)
    run = Run(repo=repo)
    env = repo._env

    def beat():
        with env.read() as txn:
            return _rec.get_lease(env, txn, run.id)["beat"]

    first = beat()
    deadline = time.monotonic() + 20
    while beat() == first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert beat() > first
    run.close()


def test_delete_refuses_a_live_writer_and_force_stops_it(tmp_path):
    path = tmp_path / "repo"
    run_id = _new_run(path)
    (path / "artifacts" / run_id).mkdir(parents=True)
    writer = _start_writer(path, run_id)
    time.sleep(3 * INTERVAL)
    repo = Repo(path)
    with pytest.raises(RunLockedError, match="force=True"):
        repo.delete_run(run_id)
    cli = [sys.executable, "-m", "runstore", "--repo", str(path), "rm", "-y"]
    refused = subprocess.run(cli + [run_id], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "--force" in refused.stderr and str(writer.pid) in refused.stderr
    assert run_id in repo
    done = subprocess.run(cli + ["--force", run_id], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = _stopped(writer)
    assert "stopped RunNotFoundError" in out and "was deleted" in out
    assert run_id not in repo and not (path / "artifacts" / run_id).exists()
    # The stopped writer wrote no orphan sequence after the deletion.
    assert [row for row in repo._scan_sequences() if row[0] == run_id] == []
    assert repo.check() == []


def test_a_deleted_run_stops_its_writer_in_process(tmp_path):
    repo = Repo(tmp_path / "repo")
    run = Run(repo=repo)
    run.track(1.0, name="loss")
    run.flush()
    env = repo._env
    env.write(lambda txn: _rec.delete_run(env, txn, run.id))  # as another process would
    run.track(2.0, name="loss")
    with pytest.warns(RuntimeWarning, match="was deleted"), pytest.raises(RunNotFoundError, match="was deleted"):
        run.flush()
    with pytest.raises(RunNotFoundError, match="was deleted"):
        run.track(3.0, name="loss")
    assert repo._scan_sequences() == [] and repo.check() == []
