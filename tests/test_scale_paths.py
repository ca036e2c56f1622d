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


def test_run_sequences_reads_names_and_contexts_of_records_in_any_field_order(tmp_path):
    from runstore.storage import records as rec

    repo = Repo(tmp_path / "r")
    with Run(repo=repo, system_metrics=False) as run:
        for i in range(30):
            run.track(float(i), name=f"m{i % 10}", context={"k": i % 3} if i % 2 else None)
    want = [(s.name, s.context) for s in repo.get_run(run.id)._stored_sequences()]
    assert repo.get_run(run.id).sequences() == want and len(want) > 10
    env = repo._env
    # Another writer's layout: context before name, fields before both, nested values.
    with env.read() as txn:
        records = rec.scan_sequences(env, txn, run.id)

    def reorder(txn):
        for j, (_, seq_id, s) in enumerate(records):
            fields = {k: v for k, v in s.items() if k not in ("name", "context")}
            if j % 3 == 0:
                s = {**fields, "context": s["context"], "extra": {"a": [1, {"b": 2}]}, "name": s["name"]}
            elif j % 3 == 1:
                s = {"context": s["context"], "name": s["name"], **fields}
            rec.put_sequence(env, txn, run.id, seq_id, s)
    env.write(reorder)
    assert Repo(tmp_path / "r").get_run(run.id).sequences() == want
