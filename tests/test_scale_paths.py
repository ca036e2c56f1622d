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


def _runs(repo, n):
    ids = []
    for i in range(n):
        with Run(repo=repo, name=f"r{i}", system_metrics=False, capture_env=False) as run:
            run["hparams"] = {"lr": 0.1 * (i + 1)}
            ids.append(run.id)
    return ids


def test_iterating_a_selection_leaves_nothing_for_the_cyclic_gc(tmp_path):
    import gc

    repo = Repo(tmp_path / "r")
    _runs(repo, 30)
    grown = []
    for i in range(5):
        sel = repo.query(f"run.hparams.lr > {i}e-9")  # a new selection: no view made yet
        gc.collect()
        before = gc.get_count()[0]
        for run in sel:
            run.name, run["hparams.lr"]
        grown.append(gc.get_count()[0] - before)
    # the count of GC-tracked objects alive since the last collection: a view kept per run
    # would add 30 each time (and 100,000 views made the GC walk them all, 2-3x the loop)
    assert min(grown) < 5, grown


def test_edits_through_a_view_are_seen_by_the_next_view_of_the_selection(tmp_path):
    repo = Repo(tmp_path / "r")
    ids = _runs(repo, 3)
    sel = repo.query("")
    for run in sel:
        run.name = "renamed-" + run.name
        run["hparams"] = {"lr": 1.0}
        run["extra"] = 2
        run.add_tag("seen")
    again = {run.id: run for run in sel}
    assert sorted(again) == sorted(ids)
    for rid in ids:
        run = again[rid]
        assert run.name.startswith("renamed-r") and run.tags == ["seen"]
        assert run["hparams.lr"] == 1.0 and run["extra"] == 2
        del run["extra"]
    assert all("extra" not in run.params for run in sel)
    stored = Repo(tmp_path / "r").get_run(ids[0])
    assert stored.name == "renamed-r0" and stored["hparams.lr"] == 1.0 and "extra" not in stored.params
