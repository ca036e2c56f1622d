"""Zeroed room past the data in data.mdb (storage/room.py; issue 22, target 3): a
commit's fdatasync then allocates no blocks and changes no file size."""

import errno
import os

import numpy as np

from runstore import Repo, Run
from runstore.storage import room as _room


def _used(repo) -> int:
    """The bytes of data.mdb LMDB uses (its last committed page)."""
    env = repo._env.lmdb
    return (env.info()["last_pgno"] + 1) * env.stat()["psize"]


def _fill(repo, runs=3, points=100_000):
    for i in range(runs):
        with Run(repo, system_metrics=False, capture_env=False) as run:
            run.track_many(np.arange(points, dtype=np.float64) + i, name="x")


def test_a_writer_keeps_zeroed_room_past_the_data_and_reads_are_unchanged(tmp_path):
    path = tmp_path / "r"
    repo = Repo(path)
    _fill(repo)
    Run(repo, system_metrics=False, capture_env=False).close()  # a transaction begins past 1 MiB of data
    used, size = _used(repo), (path / "data.mdb").stat().st_size
    assert used >= 1 << 20
    assert size >= used + _room._room(used) // 2, (used, size)
    with open(path / "data.mdb", "rb") as f:
        f.seek(used)
        assert f.read() == bytes(size - used)  # zeros, and only past the pages in use
    # The data is intact, in this process and in a fresh one reading the file.
    fresh = Repo(path, readonly=True)
    runs = [r for r in fresh.runs() if r.sequences()]
    assert [r.sequence("x").values[[0, -1]].tolist() for r in runs] == [[i, 99_999 + i] for i in range(3)]
    assert fresh.check() == []


def test_a_small_repository_gets_no_room(tmp_path):
    path = tmp_path / "r"
    repo = Repo(path)
    for _ in range(5):
        with Run(repo, system_metrics=False, capture_env=False) as run:
            run.track(1.0, name="loss")
    assert (path / "data.mdb").stat().st_size == _used(repo)  # no zeros for a tiny repository


def test_a_full_disk_while_making_room_fails_no_commit(tmp_path, monkeypatch):
    path = tmp_path / "r"
    repo = Repo(path)
    _fill(repo, runs=2)

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_room.os, "pwrite", full)
    with Run(repo, system_metrics=False, capture_env=False) as run:
        run.track_many(np.ones(1000), name="y")
    assert (path / "data.mdb").stat().st_size == _used(repo)  # LMDB grew the file itself
    monkeypatch.undo()
    assert repo.runs()[-1].sequence("y").values.sum() == 1000
    assert Repo(path, readonly=True).check() == []


def test_compact_then_write_keeps_room_in_the_new_file(tmp_path):
    path = tmp_path / "r"
    repo = Repo(path)
    _fill(repo, runs=4)
    repo.delete_run(repo.runs()[0].id)
    inode = os.stat(path / "data.mdb").st_ino
    repo.compact()
    assert os.stat(path / "data.mdb").st_ino != inode
    _fill(repo, runs=1, points=10)
    used, size = _used(repo), (path / "data.mdb").stat().st_size
    assert size >= used + _room._room(used) // 2
    assert len(Repo(path, readonly=True).runs()) == len(repo.runs())
