"""Paths that must not grow quadratically with a run's sequences (issue 22)."""

from __future__ import annotations

import pytest

from runstore import Repo, Run, SequenceNotFoundError


def test_view_sequence_lookup_is_indexed_and_follows_new_data(tmp_path):
    repo = Repo(tmp_path / "r")
    run = Run(repo=repo)
    for i in range(50):
        run.track(float(i), name=f"m{i % 5}", context={"k": i // 5})
    run.flush()
    view = Run._view(repo, run.id)
    scans = []
    original = view._stored_sequences
    view._stored_sequences = lambda: scans.append(1) or original()
    for i in range(50):
        assert view.sequence(f"m{i % 5}", {"k": i // 5}).last == float(i)
    assert len(scans) == 1  # one scan for 50 lookups
    with pytest.raises(SequenceNotFoundError):
        view.sequence("m0", {"k": 99})
    before = len(scans)  # the error message listed the sequences: one more scan
    run.track(7.0, name="late")
    run.close()
    assert view.sequence("late").last == 7.0  # new data: the index is rebuilt
    assert len(scans) == before + 1
