"""Read-ahead hints for long sequence reads (storage/prefetch.py): given before the
blocks are fetched, only for reads of many blocks, never changing what is read."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from runstore import Repo, Run
from runstore.storage import blocks as _blocks
from runstore.storage import prefetch

N_BLOCKS = 12  # > prefetch.MIN_BLOCKS


@pytest.fixture()
def calls(monkeypatch):
    seen: list[tuple[int, int, int]] = []

    def fake(addr, length, advice):
        seen.append((addr, length, advice))
        return 0

    monkeypatch.setattr(prefetch, "_madvise", fake)
    monkeypatch.delenv("RUNSTORE_READAHEAD", raising=False)
    return seen


@pytest.fixture()
def repo(tmp_path):
    repo = Repo(tmp_path / "r", create=True)
    n = N_BLOCKS * _blocks.CAPACITY - 5
    with Run(repo=repo) as run:
        run.track_many(np.arange(n, dtype=np.float64), name="long")
        run.track_many(np.arange(10, dtype=np.float64), name="short")
    return repo


def test_full_read_of_a_long_sequence_is_hinted_first(repo, calls):
    seq = repo.runs()[0].sequence("long")
    values = seq.values
    assert np.array_equal(values, np.arange(len(values), dtype=np.float64))
    assert calls, "no read-ahead hint for a 12-block read"
    assert all(advice == prefetch._WILLNEED for _, _, advice in calls)
    assert calls[0][0] % mmap.PAGESIZE == 0
    # One contiguous range, in chunks, covering at least the blocks' bytes.
    for (a, n, _), (b, _, _) in zip(calls, calls[1:]):
        assert b == a + n
    covered = calls[-1][0] + calls[-1][1] - calls[0][0]
    assert covered >= N_BLOCKS * _blocks.CAPACITY * 8 * 0.9
    assert max(n for _, n, _ in calls) <= prefetch.CHUNK


def test_short_reads_and_small_ranges_give_no_hint(repo, calls):
    run = repo.runs()[0]
    assert len(run.sequence("short").values) == 10
    assert len(run.sequence("long").range(100, 1100).steps) == 1000
    assert len(run.sequence("long")[5000:6000].values) == 1000
    assert calls == []


def test_a_long_range_read_is_hinted(repo, calls):
    part = repo.runs()[0].sequence("long").range(0, 10 * _blocks.CAPACITY)
    assert np.array_equal(part.values, np.arange(10 * _blocks.CAPACITY, dtype=np.float64))
    assert calls


def test_readahead_can_be_turned_off(repo, calls, monkeypatch):
    monkeypatch.setenv("RUNSTORE_READAHEAD", "0")
    assert len(repo.runs()[0].sequence("long").values) == N_BLOCKS * _blocks.CAPACITY - 5
    assert calls == []


def test_far_apart_blocks_are_not_hinted(calls):
    buf = np.zeros(64 * mmap.PAGESIZE, np.uint8)
    mv = memoryview(buf)
    first, last = mv[:mmap.PAGESIZE], mv[60 * mmap.PAGESIZE:61 * mmap.PAGESIZE]
    # 8 blocks of one page each, spread over 61 pages: more than SLACK times the bytes.
    assert prefetch.hint_blocks(first, last, 8) is False
    assert prefetch.hint_blocks(first, mv[7 * mmap.PAGESIZE:8 * mmap.PAGESIZE], 8) is True
    assert prefetch.hint_blocks(bytes(first), bytes(last), 8) is False  # copies: nothing to hint
    assert prefetch.hint_blocks(first, last, 2) is False  # too few blocks


# -- run views are lean (issue 22 target 10; tracking/run.py Run._view) ----------------------
def test_run_views_allocate_only_what_they_hold(repo):
    view = list(repo.query(""))[0]  # a view made by a selection
    assert set(vars(view)) <= {"repo", "_id", "_record", "_params"}, vars(view)
    # shared defaults behave as before: read-only, no sequences of its own, a lock per view
    assert not view._writable and view._is_view
    lock = view._lock
    assert lock is view._lock and lock is not repo.runs()[0]._lock
    assert view.sequences() == [("long", {}), ("short", {})]
    view.close()  # a view has nothing to close: no-op, as before
    view.delete_sequence("short")
    assert repo.runs()[0].sequences() == [("long", {})]
    with pytest.raises(TypeError):
        view._seqs["x"] = 1  # the shared default cannot be filled by mistake
