"""Incremental refresh of the summary columns (issue 22, target 1): columns of an
older version (in this process, or persisted in query-snapshot/) are patched with
the runs the storage's change index names, and answer as a full scan does."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from runstore import Repo, Run, Text
from runstore.query import snapshot
from runstore.query.tables import cache_for
from runstore.storage.env import SEQS_VERSION

from test_query_snapshot import _fresh


def _seq_rows(repo: Repo) -> list:
    """Every sequence summary the query layer answers with, in its order."""
    return [
        (s.run.id, s.name, repr(s.context), s.count, s.last, s.min, s.max, s.first_step, s.last_step)
        for s in repo.query_sequences("seq.type == 'float'")
    ] + [
        (s.run.id, s.name, s.type, s.count) for s in repo.query_sequences("seq.type != 'float'")
    ] + [sorted(s.run.id for s in repo.query_sequences("seq.last > 2 and seq.name == 'loss'"))]


def _scan(path: Path, monkeypatch) -> list:
    with monkeypatch.context() as m:
        m.setenv("RUNSTORE_QUERY_SNAPSHOT", "0")
        return _seq_rows(_fresh(path))


def _no_full_scan(monkeypatch) -> None:
    def refuse(self):
        raise AssertionError("scanned every sequence instead of refreshing")

    monkeypatch.setattr(Repo, "_iter_sequences", refuse)


def test_random_writes_deletes_and_tags_give_the_answers_of_a_full_scan(tmp_path, monkeypatch):
    rnd = random.Random(22)
    path = tmp_path / "r"
    live = Repo(path)
    ids: list = []
    for step in range(40):
        op = rnd.choice(["new", "track", "track", "delete_seq", "delete_run", "tag", "param"]) if ids else "new"
        if op == "new":
            with Run(repo=live, experiment="e") as run:
                run.track(rnd.random() * 4, name="loss")
                if rnd.random() < 0.5:
                    run.track_many([1.0, rnd.random() * 4], name="acc", context={"subset": rnd.choice("ab")})
                ids.append(run.id)
        else:
            rid = rnd.choice(ids)
            if op == "delete_run":
                live.delete_run(rid)
                ids.remove(rid)
            else:
                with Run(repo=live, run_id=rid) as run:
                    if op == "track" and rnd.random() < 0.3:  # an object sequence: its type is an extra
                        run.track(Text(f"note {step}"), name="notes")
                    elif op == "track":
                        run.track(rnd.random() * 4, name=rnd.choice(["loss", "acc", "new"]),
                                  context=rnd.choice([{}, {"subset": "a"}]))
                    elif op == "delete_seq":
                        names = run.sequences()
                        if names:
                            run.delete_sequence(*rnd.choice(names))
                    elif op == "tag":
                        run.add_tag(f"t{step}")
                    else:
                        run["lr"] = rnd.random()
        with monkeypatch.context() as m:
            if step:
                _no_full_scan(m)
            got = _seq_rows(live)  # this process's columns, patched since the first query
        snapshot.wait()
        env = live._env
        kept = env._query_cache  # shared by every Repo of the path: set aside while others look
        expected = _scan(path, monkeypatch)
        assert got == expected, (step, op)
        if step % 3 == 0 and step:
            # A fresh process with an older persisted half: patched, never a full scan.
            with monkeypatch.context() as m:
                _no_full_scan(m)
                assert _seq_rows(_fresh(path)) == expected, (step, op)
            snapshot.wait()
        env._query_cache = kept
    assert Repo(path).check() == []


def test_a_fresh_process_refreshes_an_older_snapshot_and_persists_it(tmp_path, monkeypatch):
    path = tmp_path / "r"
    repo = Repo(path)
    for i in range(5):
        with Run(repo=repo, experiment="e", name=f"r{i}") as run:
            run.track_many([float(i), i + 0.5], name="loss")
    _seq_rows(repo)
    snapshot.wait()
    old = sorted(p.name for p in (path / snapshot.DIRNAME).iterdir() if p.name.startswith("seqs-"))
    first = repo.query("run.name == 'r0'")[0]
    with Run(repo=repo, run_id=first.id) as run:
        run.track(9.0, name="loss")
    expected = _scan(path, monkeypatch)
    with monkeypatch.context() as m:
        _no_full_scan(m)
        again = _fresh(path)
        assert _seq_rows(again) == expected
        snapshot.wait()
    now = sorted(p.name for p in (path / snapshot.DIRNAME).iterdir() if p.name.startswith("seqs-"))
    assert now != old and len(now) == 1  # the refreshed half replaced the older one
    assert int(now[0].rsplit("-", 1)[1]) == Repo(path)._versions()[1]
    assert Repo(path).check() == []


def test_a_change_that_names_no_runs_makes_the_next_query_scan(tmp_path, monkeypatch):
    path = tmp_path / "r"
    repo = Repo(path)
    with Run(repo=repo, experiment="e") as run:
        run.track(1.0, name="loss")
    _seq_rows(repo)
    snapshot.wait()
    repo._env.write(lambda txn: repo._env.bump(txn, SEQS_VERSION))
    with monkeypatch.context() as m:
        _no_full_scan(m)
        with pytest.raises(AssertionError, match="scanned every sequence"):
            _seq_rows(_fresh(path))
    assert _seq_rows(_fresh(path)) == _scan(path, monkeypatch)


def test_a_write_by_an_older_runstore_is_never_missed(tmp_path, monkeypatch):
    """An older runstore bumps the counter and writes no index entry; a later write by
    this version names only its own run. Columns from before both are rebuilt."""
    import struct

    path = tmp_path / "r"
    repo = Repo(path)
    runs = []
    for i in range(3):
        with Run(repo=repo, experiment="e") as run:
            run.track(1.0, name="loss")
            runs.append(run.id)
    _seq_rows(repo)
    snapshot.wait()
    env = repo._env
    u64 = struct.Struct(">Q")

    def old_writer(txn):  # what a runstore before the index did: a record and a bare bump
        from runstore.storage import records

        records.put_sequence(env, txn, runs[0], 0, dict(records.scan_sequences(env, txn, runs[0])[0][2], last=42.0))
        v = u64.unpack(txn.get(SEQS_VERSION, db=env.dbs["meta"]))[0]
        txn.put(SEQS_VERSION, u64.pack(v + 1), db=env.dbs["meta"])

    env.write(old_writer)
    with Run(repo=repo, run_id=runs[1]) as run:
        run.track(2.0, name="loss")
    expected = _scan(path, monkeypatch)
    assert 42.0 in [row[4] for row in expected[:-1]]
    assert _seq_rows(_fresh(path)) == expected


def test_the_long_lived_cache_is_patched_not_rebuilt(tmp_path, monkeypatch):
    path = tmp_path / "r"
    repo = Repo(path)
    for i in range(4):
        with Run(repo=repo, experiment="e") as run:
            run.track(float(i), name="loss", context={"k": i})
    _seq_rows(repo)
    before = cache_for(repo)._base
    with Run(repo=repo, experiment="e") as run:
        run.track(7.0, name="loss", context={"k": "x"})
    with monkeypatch.context() as m:
        _no_full_scan(m)
        rows = _seq_rows(repo)
    assert cache_for(repo)._base is not before and cache_for(repo)._base.n == before.n + 1
    assert rows == _scan(path, monkeypatch)


# -- the run table (records and params) ---------------------------------------------------
def _run_rows(repo: Repo) -> tuple:
    """What the run columns answer, without Run objects (those read every record)."""
    table = repo.query("").to_arrow()  # every attribute and every param path, in order
    return (
        str(table.schema), table.to_pylist(),
        repo.query("run.lr > 0.5").ids,
        repo.query("'t3' in run.tags or run.opt.name == 'adam'").ids,
        repo.query("run.status == 'finished' and run.k >= 2").ids,
        [repr(v) for v in repo.query("").to_list("k", default=None)],  # 3 and 3.0 told apart
    )


def _no_run_scan(monkeypatch) -> None:
    def refuse(self):
        raise AssertionError("scanned every run instead of refreshing")

    monkeypatch.setattr(Repo, "_scan_runs", refuse)


def _runs_scan(path: Path, monkeypatch) -> tuple:
    with monkeypatch.context() as m:
        m.setenv("RUNSTORE_QUERY_SNAPSHOT", "0")
        return _run_rows(_fresh(path))


def test_run_records_and_params_refresh_like_a_full_scan(tmp_path, monkeypatch):
    rnd = random.Random(23)
    path = tmp_path / "r"
    live = Repo(path)
    ids: list = []

    def params() -> dict:
        out = {"lr": rnd.random(), "k": rnd.choice([1, 2, 3, 3.0, 2.5])}
        if rnd.random() < 0.5:
            out["opt"] = {"name": rnd.choice(["adam", "sgd"]), "beta": rnd.choice([0.9, 1])}
        if rnd.random() < 0.3:
            out[f"extra{rnd.randrange(3)}"] = rnd.choice(["x", 7, None, [1, 2]])
        return out

    for step in range(36):
        op = rnd.choice(["new", "new", "tag", "param", "param", "resume", "delete"]) if ids else "new"
        if op == "new":
            with Run(repo=live, experiment=rnd.choice("ab"), name=f"n{step}") as run:
                run.update_params(params())
                ids.append(run.id)
        elif op == "delete":
            rid = rnd.choice(ids)
            live.delete_run(rid)
            ids.remove(rid)
        else:
            with Run(repo=live, run_id=rnd.choice(ids)) as run:
                if op == "tag":
                    run.add_tag(f"t{rnd.randrange(5)}")
                elif op == "param":
                    key, value = rnd.choice(list(params().items()))
                    run[key] = value
        with monkeypatch.context() as m:
            if step:
                _no_run_scan(m)
            got = _run_rows(live)  # this process's run table, patched since the first query
        snapshot.wait()
        kept = live._env._query_cache
        expected = _runs_scan(path, monkeypatch)
        assert got == expected, (step, op)
        if step % 3 == 0 and step:
            with monkeypatch.context() as m:  # a fresh process with an older persisted runs half
                _no_run_scan(m)
                assert _run_rows(_fresh(path)) == expected, (step, op)
            snapshot.wait()
        live._env._query_cache = kept
    assert Repo(path).check() == []


def test_a_param_changing_shape_or_its_last_float_still_answers_as_a_scan(tmp_path, monkeypatch):
    """Cases the patched columns cannot tell alone: a path that is a leaf in one run and
    a dict in another (its order among the paths), and the only float of an int column
    changed to an int (3.0 vs 3): read from the records, never answered wrong."""
    path = tmp_path / "r"
    repo = Repo(path)
    made = []
    for i, (opt, k) in enumerate([({"lr": 1}, 1), (5, 2.0), ({"lr": 2}, 3)]):
        with Run(repo=repo, experiment="e", name=f"r{i}") as run:
            run["opt"], run["k"], run["z"] = opt, k, i
            made.append(run.id)
    _run_rows(repo)
    snapshot.wait()
    for rid, key, value in [(made[1], "k", 2), (made[0], "opt", 7), (made[1], "opt", {"lr": 3, "b": 1})]:
        with Run(repo=repo, run_id=rid) as run:
            run[key] = value
        expected = _runs_scan(path, monkeypatch)
        assert _run_rows(_fresh(path)) == expected, (key, value)
        snapshot.wait()
    assert Repo(path).check() == []


def test_a_run_write_that_names_no_runs_makes_the_next_query_scan(tmp_path, monkeypatch):
    from runstore.storage.env import RUNS_VERSION

    path = tmp_path / "r"
    repo = Repo(path)
    with Run(repo=repo, experiment="e") as run:
        run["lr"] = 0.1
    _run_rows(repo)
    snapshot.wait()
    repo._env.write(lambda txn: repo._env.bump(txn, RUNS_VERSION))  # as a runstore before the index did
    with monkeypatch.context() as m:
        _no_run_scan(m)
        with pytest.raises(AssertionError, match="scanned every run"):
            _run_rows(_fresh(path))
    assert _run_rows(_fresh(path)) == _runs_scan(path, monkeypatch)


def test_column_concat_equals_one_column_of_all_the_values():
    from runstore.query.vectors import MISSING, Column

    rnd = random.Random(5)
    values = [1, 2.5, 3.0, "a", "b", "zz", True, None, MISSING, [1, 2], {"x": 1}, 3, "c", 0, 2**70]
    for _ in range(2000):
        a = [rnd.choice(values) for _ in range(rnd.randrange(0, 6))]
        b = [rnd.choice(values) for _ in range(rnd.randrange(0, 6))]
        got, want = Column.concat(Column.from_values(a), Column.from_values(b)), Column.from_values(a + b)
        assert [repr(v) for v in got.to_pylist(MISSING)] == [repr(v) for v in want.to_pylist(MISSING)], (a, b)
        assert got.kinds() == want.kinds(), (a, b)
        if got.cats is not None:
            assert list(got.cats) == sorted(set(got.cats)), (a, b)
