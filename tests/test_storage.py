"""Storage: map growth, a full disk, integrity checks, compaction (issue 2)."""

import errno
import subprocess
import sys

import lmdb
import numpy as np
import pytest

from runstore import Repo, Run
from runstore.storage import blocks, keys
from runstore.storage import records as rec
from runstore.errors import RepositoryError, StorageFullError


def test_map_grows_automatically(tmp_path):
    repo = Repo(tmp_path / "repo", map_size=256 * 1024)
    run = Run(repo=repo)
    run.track_many(np.random.default_rng(0).random(200_000), name="x")  # ~3.2 MB > 256 KiB
    run.close()
    assert repo._env.lmdb.info()["map_size"] > 256 * 1024
    assert repo.get_run(run.id).sequence("x").count == 200_000
    assert repo.check() == []


def test_full_disk_keeps_pending_points_and_loses_nothing_committed(repo):
    run = Run(repo=repo)
    run.track(1.0, name="x")
    run.flush()
    run.track(2.0, name="x")
    real_begin = repo._env.lmdb.begin

    class FullDisk:
        def __init__(self, txn):
            self.txn = txn

        def __getattr__(self, name):
            return getattr(self.txn, name)

        def commit(self):
            self.txn.abort()
            raise lmdb.Error("mdb_txn_commit: No space left on device", errno.ENOSPC)

    def begin(*a, **kw):
        txn = real_begin(*a, **kw)
        return FullDisk(txn) if kw.get("write") else txn

    env = repo._env
    original = env.lmdb
    proxy = type("Proxy", (), {"__getattr__": lambda self, n: getattr(original, n), "begin": staticmethod(begin)})()
    env.lmdb = proxy
    try:
        with pytest.raises(StorageFullError, match="disk .* is full") as info:
            run.flush()
        assert isinstance(info.value, OSError)
        run.track(3.0, name="x")
        with pytest.raises(StorageFullError):
            run.close()
        assert not run.closed  # close failed: the run stays open, nothing is dropped
    finally:
        env.lmdb = original
    # committed data intact (a view reads storage; the live run would flush first)
    assert Run._view(repo, run.id).sequence("x").values.tolist() == [1.0]
    run.close()  # space is back: the pending points are written
    assert repo.get_run(run.id).sequence("x").values.tolist() == [1.0, 2.0, 3.0]
    assert repo.get_run(run.id).status == "finished"
    assert repo.check() == []


def test_check_finds_problems(repo, small_blocks):
    run = Run(repo=repo)
    run.track_many(np.arange(12.0), name="x")
    run.close()
    assert repo.check() == []
    env = repo._env
    rk = keys.run_key(run.id)
    # 1. a summary that disagrees with the blocks
    with env.lmdb.begin(write=True) as txn:
        (_, sid, summary), = rec.scan_sequences(env, txn, run.id)
        summary["max"] = 99.0
        rec.put_sequence(env, txn, run.id, sid, summary)
    assert any("max" in p for p in repo.check())
    # 2. a block that does not decode, 3. an orphan sequence
    with env.lmdb.begin(write=True) as txn:
        txn.put(keys.block_key(rk, sid, 1), b"garbage", db=env.dbs["blocks"])
        txn.put(keys.seq_key(bytes(12), 0), rec.pack({"name": "x", "context": {}, "count": 0}), db=env.dbs["seqs"])
    problems = repo.check()
    assert any("does not decode" in p for p in problems)
    assert any("belongs to no run" in p for p in problems)


def test_not_a_repository(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RepositoryError, match="not a runstore repository"):
        Repo(tmp_path / "empty", create=False)
    with pytest.raises(RepositoryError):
        Repo(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


def test_compact_reclaims_space(repo):
    for _ in range(3):
        run = Run(repo=repo)
        run.track_many(np.random.default_rng(0).random(300_000), name="x", steps=np.arange(0, 600_000, 2))
        run.close()
    keep = run.id
    for r in repo.runs()[:2]:
        repo.delete_run(r.id)
    before, after = repo.compact()
    assert after < before * 0.6
    assert repo.check() == []
    assert repo.get_run(keep).sequence("x").count == 300_000
    run = Run(repo=repo)  # still writable after the swap
    run.track(1.0, name="y")
    run.close()
    assert len(repo) == 2


def test_compact_refuses_while_another_process_has_it_open(repo, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c",
                             f"import time; from runstore import Repo; Repo({str(repo.path)!r}); print('ok', flush=True); time.sleep(30)"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ok"
        with pytest.raises(RepositoryError, match="open in another process"):
            repo.compact()
    finally:
        proc.kill()
        proc.wait()
    repo.compact()  # and works once it is alone


def test_tail_block_is_rewritten_until_full(repo, small_blocks):
    run = Run(repo=repo)
    for i in range(13):
        run.track(float(i), name="x")
        run.flush()
    env = repo._env
    with env.read() as txn:
        (_, sid, summary), = rec.scan_sequences(env, txn, run.id)
        found = [(no, len(blocks.decode(raw)[1])) for no, raw in rec.iter_blocks(env, txn, run.id, sid)]
    assert found == [(0, 5), (1, 5), (2, 3)] and summary["blocks"] == 3
    run.close()


def test_bytes_per_point_of_regular_steps(repo):
    run = Run(repo=repo)
    run.track_many(np.random.default_rng(0).random(100_000), name="x")
    run.close()
    with repo._env.read() as txn:
        size = sum(len(raw) for _, raw in rec.iter_blocks(repo._env, txn, run.id, 0))
    assert size < 100_000 * 8.1  # steps 0..n-1, no epochs, one timestamp: values only


def test_flush_reentered_on_the_same_thread_is_refused(repo):
    """A SIGTERM handler runs on the main thread between bytecodes; if that thread
    is mid-flush, a nested flush must not open a second LMDB write transaction."""
    from runstore.errors import RunstoreError

    run = Run(repo=repo)
    run.track(1.0, name="x")
    seen = []
    real_write = repo._env.write

    def write(work):
        try:
            run.close("killed")  # what the SIGTERM handler would do
        except RunstoreError as exc:
            seen.append(str(exc))
        return real_write(work)

    repo._env.write = write
    try:
        run.flush()
    finally:
        del repo._env.write
    assert seen and "in progress" in seen[0]
    run.close()
    assert repo.get_run(run.id).sequence("x").values.tolist() == [1.0]
    assert repo.get_run(run.id).status == "finished"
