"""repo.sql / runstore sql: DuckDB over the repository's Arrow views (issue 19)."""

from __future__ import annotations

import json
import random
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from runstore import Repo, Run, SQLError
from runstore.cli import cli


def _random_repo(repo: Repo, seed: int) -> list[str]:
    """A few runs with nested params of every type, several contexts, epochs or not."""
    rng = random.Random(seed)
    ids = []
    for i in range(rng.randint(2, 6)):
        run = Run(repo=repo, experiment=rng.choice(["a", "b"]), name=f"r{i}")
        run["hparams"] = {"lr": rng.random(), "layers": rng.randint(1, 5), "opt": rng.choice(["adam", "sgd"]),
                          "flag": rng.random() < 0.5, "sizes": [rng.randint(1, 9) for _ in range(2)],
                          "none": None}
        if rng.random() < 0.5:
            run["kind"] = "repeat"
        for name in rng.sample(["loss", "acc", "lr"], rng.randint(1, 3)):
            for ctx in rng.sample([None, {"subset": "train"}, {"subset": "val", "k": 1}], rng.randint(1, 2)):
                n = rng.randint(1, 40)
                with_epoch = rng.random() < 0.5
                steps = np.cumsum(np.array([rng.randint(1, 3) for _ in range(n)]))
                values = np.array([rng.gauss(0, 1) for _ in range(n)])
                epochs = (steps // 4) if with_epoch else None
                run.track_many(values, name=name, steps=steps, epochs=epochs, context=ctx)
        run.close(rng.choice(["finished", "failed"]))
        ids.append(run.id)
    return ids


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_tables_equal_the_python_api(repo, seed):
    _random_repo(repo, seed)
    runs = {r.id: r for r in repo.runs()}

    got = {row["run_id"]: row for row in repo.sql("SELECT * FROM runs")}
    assert set(got) == set(runs)
    for run_id, run in runs.items():
        assert got[run_id]["status"] == run.status
        assert got[run_id]["experiment"] == run.experiment
        assert got[run_id]["name"] == run.name
        assert got[run_id]["kind"] == run.params.get("kind")
        assert got[run_id]["created_at"].timestamp() == pytest.approx(run.created_at, abs=1e-5)

    # params: every leaf, in its typed column
    for run_id, run in runs.items():
        rows = repo.sql("SELECT key, type, value_int, value_float, value_str, value_bool, value_json "
                        "FROM params WHERE run_id = ?", [run_id])
        leaves = {r["key"]: r for r in rows}
        hp = run.params["hparams"]
        assert leaves["hparams.lr"]["value_float"] == hp["lr"]
        assert leaves["hparams.layers"]["value_int"] == hp["layers"] and leaves["hparams.layers"]["type"] == "int"
        assert leaves["hparams.opt"]["value_str"] == hp["opt"]
        assert leaves["hparams.flag"]["value_bool"] is hp["flag"]
        assert json.loads(leaves["hparams.sizes"]["value_json"]) == hp["sizes"]
        assert leaves["hparams.none"]["type"] == "null"

    # sequences: the summaries of run.metrics
    for run_id, run in runs.items():
        expected = {(s.name, json.dumps(s.context, sort_keys=True, separators=(",", ":"))): s for s in run.metrics()}
        rows = repo.sql("SELECT name, context, count, last, min, max, last_step FROM sequences WHERE run_id = ?",
                        [run_id])
        assert {(r["name"], r["context"]) for r in rows} == set(expected)
        for r in rows:
            s = expected[r["name"], r["context"]]
            assert (r["count"], r["last_step"]) == (s.count, s.last_step)
            assert (r["last"], r["min"], r["max"]) == (s.last, s.min, s.max)

    # points: every point of every sequence, step for step
    for run_id, run in runs.items():
        for s in run.metrics():
            ctx = json.dumps(s.context, sort_keys=True, separators=(",", ":"))
            res = repo.sql("SELECT step, value, epoch FROM points WHERE run_id = $1 AND name = $2 "
                           "AND context = $3 ORDER BY step", [run_id, s.name, ctx])
            np.testing.assert_array_equal(res.column("step"), s.steps)
            np.testing.assert_array_equal(res.column("value"), s.values)
            epochs = np.array([np.nan if e is None else e for e in res.to_arrow().column("epoch").to_pylist()])
            np.testing.assert_array_equal(epochs, s.epochs)

    total = repo.sql("SELECT count(*) AS n FROM points").rows()[0][0]
    assert total == sum(s.count for r in runs.values() for s in r.metrics())


def test_aggregates_match_numpy(repo):
    _random_repo(repo, 7)
    res = repo.sql("SELECT run_id, name, context, avg(value) AS mean, max(step) AS last_step "
                   "FROM points GROUP BY ALL")
    for row in res:
        run = repo.get_run(row["run_id"])
        seq = run.sequence(row["name"], json.loads(row["context"]) or None)
        assert row["mean"] == pytest.approx(float(np.mean(seq.values)))
        assert row["last_step"] == seq.last_step


def test_point_filters_read_only_the_sequences_they_reach(repo, monkeypatch):
    for i in range(6):
        with Run(repo=repo, experiment="e", name=f"r{i}") as run:
            for name in ("loss", "acc", "lr"):
                run.track_many(np.arange(100.0), name=name, context={"subset": "train"})
    target = repo.runs()[3].id
    read: list = []
    original = repo._read_sequences

    def counting(keys):
        read.extend(keys)
        return original(keys)

    monkeypatch.setattr(repo, "_read_sequences", counting)
    res = repo.sql("SELECT step, value FROM points WHERE run_id = ? AND name = 'loss' ORDER BY step", [target])
    assert len(res) == 100
    assert {rid for rid, _ in read} == {target}
    assert len(set(read)) == 1  # one sequence, out of 18

    read.clear()
    res = repo.sql("SELECT name, count(*) FROM points WHERE run_id = ? GROUP BY name", [target])
    assert len(res) == 3 and {rid for rid, _ in read} == {target}

    read.clear()
    repo.sql("SELECT count(*) FROM points WHERE context->>'subset' = 'val'")  # not pushed down: reads all
    assert len(set(read)) == 18


def test_new_data_is_seen_and_nothing_is_written(tmp_path):
    repo = Repo(tmp_path / "r")
    with Run(repo=repo, experiment="e") as run:
        run.track(1.0, name="x")
    assert repo.sql("SELECT count(*) FROM points").rows() == [(1,)]
    with Run(repo=repo, experiment="e") as run:
        run.track(2.0, name="x")
        run.track(3.0, name="x")
    assert repo.sql("SELECT count(*) FROM points").rows() == [(3,)]

    data = tmp_path / "r" / "data.mdb"
    before = (data.stat().st_mtime_ns, data.stat().st_size)
    ro = Repo(tmp_path / "r", readonly=True)
    assert ro.sql("SELECT sum(value) FROM points").rows() == [(6.0,)]
    assert (data.stat().st_mtime_ns, data.stat().st_size) == before


def test_conversions_and_terminal_table(repo):
    with Run(repo=repo, experiment="e", name="one") as run:
        run["hparams"] = {"lr": 0.5}
        run.track_many([1.0, 2.0, 3.0], name="loss")
    res = repo.sql("SELECT runs.name, value FROM points JOIN runs USING (run_id) ORDER BY value")
    assert res.columns == ["name", "value"]
    assert res.to_pandas()["value"].tolist() == [1.0, 2.0, 3.0]
    assert res.to_polars()["value"].to_list() == [1.0, 2.0, 3.0]
    assert res.to_arrow().num_rows == 3
    text = str(res)
    assert "name" in text and "one" in text and "3" in text
    assert repo.sql("SELECT 1 AS x WHERE false").rows() == []


def test_errors_name_the_problem(repo):
    with pytest.raises(SQLError, match="nope.*\n.*tables: runs, params"):
        repo.sql("SELECT * FROM nope")
    with pytest.raises(SQLError, match="needs the text of a query"):
        repo.sql("   ")
    with pytest.raises(SQLError, match="Parser Error|syntax"):
        repo.sql("SELEC 1")


def test_missing_duckdb_is_a_clear_error(repo, monkeypatch):
    monkeypatch.setitem(sys.modules, "duckdb", None)
    with pytest.raises(ImportError, match=r"runstore\[sql\]"):
        repo.sql("SELECT 1")


def test_cli_sql(tmp_path):
    path = tmp_path / "r"
    repo = Repo(path)
    with Run(repo=repo, experiment="e", name="alpha") as run:
        run.track_many([0.5, 0.25], name="loss")
    runner = CliRunner()
    out = runner.invoke(cli, ["--repo", str(path), "sql", "SELECT name, status FROM runs"])
    assert out.exit_code == 0, out.output
    assert "alpha" in out.output and "finished" in out.output and "1 row" in out.output
    out = runner.invoke(cli, ["--repo", str(path), "sql", "-f", "csv", "SELECT step, value FROM points ORDER BY step"])
    assert out.exit_code == 0 and out.output.splitlines() == ["step,value", "0,0.5", "1,0.25"]
    out = runner.invoke(cli, ["--repo", str(path), "sql", "-f", "json", "SELECT max(value) AS m FROM points"])
    assert json.loads(out.output) == [{"m": 0.5}]
    out = runner.invoke(cli, ["--repo", str(path), "sql", "--tables"])
    assert out.exit_code == 0 and "points (table): run_id, name, context, step, epoch, timestamp, value" in out.output
    out = runner.invoke(cli, ["--repo", str(path), "sql", "SELECT * FROM nope"])
    assert out.exit_code == 1 and out.output.startswith("Error: ") and "nope" in out.output
    out = runner.invoke(cli, ["--repo", str(path), "sql"])
    assert out.exit_code == 2


def test_hierarchy_views_exist_on_an_empty_repository(repo):
    for view in ("experiments", "trials", "trial_runs", "epochs", "results"):
        assert len(repo.sql(f"SELECT * FROM {view}")) == 0


def test_a_live_run_is_seen_without_rebuilding_the_points_dataset(repo, monkeypatch):
    from runstore.analysis import sql_tables as _sql_tables

    built = []
    original = _sql_tables.points_dataset
    monkeypatch.setattr(_sql_tables, "points_dataset", lambda *a, **k: (built.append(1), original(*a, **k))[1])
    run = Run(repo=repo, experiment="live")
    run.track_many(np.arange(10.0), name="loss")
    run.flush()
    assert repo.sql("SELECT count(*), max(value) FROM points").rows() == [(10, 9.0)]
    run.track_many(np.arange(10.0, 15.0), name="loss")  # the same sequence grows
    run.flush()
    assert repo.sql("SELECT count(*), max(value) FROM points").rows() == [(15, 14.0)]
    assert repo.sql("SELECT count, last FROM sequences").rows() == [(15, 14.0)]
    assert len(built) == 1  # new points: no new dataset, the fragment is made again from the blocks
    run.track(1.0, name="acc")  # a new sequence: a new dataset
    run.close()
    assert sorted(repo.sql("SELECT DISTINCT name FROM points").column("name")) == ["acc", "loss"]
    assert len(built) == 2
