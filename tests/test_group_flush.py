"""Many live runs in one process (issue 20, item 14): the flush thread writes every
due run of a repository in ONE write transaction, closing at exit too, and one
run's trouble (a sequence that cannot be encoded, a deleted run) stays its own.
"""

import subprocess
import sys
import time

import pytest

from runstore import Repo, Run, RunNotFoundError, RunstoreError
from runstore.tracking import lifecycle as _lifecycle
from runstore.storage import env as _env
from runstore.storage import records as _rec
from runstore.tracking.sequence import Sequence


def _count_writes(monkeypatch, env):
    """Write transactions on ``env`` only: runs other tests left open in this process
    (other repositories) are flushed by the same thread and must not count."""
    calls = []
    real = _env.Environment.write

    def write(self, work):
        if self is env:
            calls.append(time.monotonic())
        return real(self, work)

    monkeypatch.setattr(_env.Environment, "write", write)
    return calls


def _stored_count(repo):
    env = repo._env
    with env.read() as txn:
        return txn.stat(env.dbs["seqs"])["entries"]


def test_the_flush_thread_commits_many_runs_in_one_transaction(tmp_path, monkeypatch):
    repo = Repo(tmp_path / "repo", flush_interval=0.5)
    runs = [Run(repo=repo) for _ in range(300)]
    calls = _count_writes(monkeypatch, repo._env)
    for i, run in enumerate(runs):
        run.track(float(i), name="loss")
    deadline = time.monotonic() + 60
    while _stored_count(repo) < 300 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _stored_count(repo) == 300
    # 300 runs, one value each: one transaction (two if the runs' first flushes fell
    # either side of the thread's wake-up), never one per run.
    assert 1 <= len(calls) <= 3, len(calls)
    assert [r.sequence("loss").last for r in runs[:3]] == [0.0, 1.0, 2.0]
    for run in runs:
        run.close()
    assert repo.check() == []


def test_one_bad_sequence_or_deleted_run_does_not_hold_back_the_others(tmp_path, monkeypatch):
    repo = Repo(tmp_path / "repo", flush_interval=3600)
    good, poisoned, deleted = Run(repo=repo), Run(repo=repo), Run(repo=repo)
    for run in (good, poisoned, deleted):
        run.track(1.0, name="loss")
    poisoned.track(2.0, name="bad")
    real = Sequence._prepare

    def prepare(self, env, txn, *args):
        if self.name == "bad":
            raise ValueError("cannot encode")
        return real(self, env, txn, *args)

    monkeypatch.setattr(Sequence, "_prepare", prepare)
    env = repo._env
    env.write(lambda txn: _rec.delete_run(env, txn, deleted.id))  # as another process would
    calls = _count_writes(monkeypatch, repo._env)
    with pytest.warns(RuntimeWarning):
        _lifecycle.flush_runs([good, poisoned, deleted])
    assert len(calls) == 2  # the group, then the group again with each sequence isolated
    stored = {(rid, rec["name"]): rec["count"] for rid, _, rec in repo._scan_sequences()}
    assert stored == {(good.id, "loss"): 1, (poisoned.id, "loss"): 1}  # 'bad' isolated, nothing orphaned
    with pytest.raises(RunstoreError, match="'bad'"):
        poisoned.flush()  # its points are kept in memory and reported
    assert deleted.closed and isinstance(deleted._flush_error, RunNotFoundError)
    with pytest.raises(RunNotFoundError, match="was deleted"):
        deleted.track(3.0, name="loss")
    monkeypatch.setattr(Sequence, "_prepare", real)
    poisoned.close()
    assert poisoned.sequence("bad").count == 1  # written once encoding works again
    good.close()
    assert repo.check() == []


def test_exit_closes_every_live_run_in_one_transaction(tmp_path):
    path = tmp_path / "repo"
    script = f"""
import atexit
from runstore import Repo, Run
from runstore.storage import env as _env
calls = []
real = _env.Environment.write
def write(self, work):
    calls.append(1)
    return real(self, work)
atexit.register(lambda: print("commits at exit", len(calls), flush=True))  # runs after runstore's
repo = Repo({str(path)!r}, flush_interval=3600)
runs = [Run(repo=repo) for _ in range(200)]
for i, run in enumerate(runs):
    run.track(float(i), name="loss")
_env.Environment.write = write
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "commits at exit 1" in out.stdout, out.stdout
    repo = Repo(path)
    runs = repo.runs()
    assert len(runs) == 200 and {r.status for r in runs} == {"finished"}
    assert sorted(r.sequence("loss").last for r in runs) == [float(i) for i in range(200)]
    assert repo.check() == []
