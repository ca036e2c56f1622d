"""Issue 11, part 2: the names users of Aim, MLflow, HydraFlow and the Experiment
Manager type from habit (items 8-11). One test per item, each failing on the main
of that day; item 8's slicing also proves it reads only the blocks it needs."""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import runstore
from runstore import InvalidValueError, Repo, Run


# -- 8. Aim -------------------------------------------------------------------------------------
def test_aim_names(repo, tmp_path):
    run = Run(repo=repo, experiment="aim")
    run["hparams"] = {"lr": 0.01, "layers": [4, 8]}
    run.track({"loss": 0.3, "acc": 0.9}, step=5, context={"subset": "train"})
    run.track(0.1, name="lr")
    assert run.hash == run.id
    assert run["hparams", "lr"] == 0.01 and run["hparams", "layers", 1] == 8
    assert ("hparams", "lr") in run and ("hparams", "nope") not in run
    with pytest.raises(InvalidValueError):  # all or nothing: a bad value stores none of them
        run.track({"loss": 0.2, "note": "text"}, step=6)
    assert [s.name for s in run.metrics()] == ["loss", "acc", "lr"]
    run.close()

    same = Repo.from_path(repo.path)
    resumed = Run(repo=same, run_hash=run.hash)
    assert resumed.sequence("acc", {"subset": "train"}).values.tolist() == [0.9]
    assert resumed.sequence("loss", {"subset": "train"}).steps.tolist() == [5]
    resumed.close()
    assert [r.id for r in same.iter_runs()] == [run.id]
    assert same.query_runs(f"run.hash == '{run.hash}'").ids == [run.id]
    assert same.query_runs(f"run.hash == '{run.hash}'").to_list("hash") == [run.id]
    assert {s.name for s in same.query_metrics("seq.name != 'lr'")} == {"loss", "acc"}


def test_sequence_slices_by_position_and_by_step(repo, small_blocks):
    run = Run(repo=repo)
    run.track_many(np.arange(23, dtype=float), name="x", steps=np.arange(0, 46, 2))
    seq = run.sequence("x")
    part = seq[10:20]
    assert part.values.tolist() == list(map(float, range(10, 20)))
    assert part.steps.tolist() == list(range(20, 40, 2))
    assert seq[-3:].values.tolist() == [20.0, 21.0, 22.0]
    assert seq[::7].values.tolist() == [0.0, 7.0, 14.0, 21.0]
    assert seq[5].value == 5.0 and seq[-1].step == 44
    assert seq[30:40].values.tolist() == []
    with pytest.raises(IndexError):
        seq[23]
    assert seq.range(9, 15).steps.tolist() == [10, 12, 14]
    assert seq.range(None, 3).values.tolist() == [0.0, 1.0]
    assert seq.range(40).values.tolist() == [20.0, 21.0, 22.0]
    assert seq.range(100, 200).values.tolist() == []
    # steps out of order: still right (every block is read and masked)
    run.track_many(np.array([1.5, 2.5]), name="y", steps=[7, 3])
    assert run.sequence("y").range(0, 5).values.tolist() == [2.5]
    run.close()
    view = repo.query_sequences("seq.name == 'x'")[0]  # a view from a query works the same
    assert view[10:12].values.tolist() == [10.0, 11.0]
    assert view.range(20, 24).values.tolist() == [10.0, 11.0]


class _CountingTxn:
    """Wraps an LMDB read transaction and counts the gets of block records."""

    def __init__(self, txn, db, counter):
        self._txn, self._db, self._counter = txn, db, counter

    def __enter__(self):
        self._txn.__enter__()
        return self

    def __exit__(self, *exc):
        return self._txn.__exit__(*exc)

    def get(self, key, db=None):
        if db is self._db:
            self._counter.append(bytes(key))
        return self._txn.get(key, db=db)

    def cursor(self, db=None):
        if db is self._db:
            self._counter.append("cursor")  # a scan: counted, so a full read cannot hide
        return self._txn.cursor(db=db)


def test_slices_read_only_the_blocks_they_need(repo, small_blocks, monkeypatch):
    n = 5 * 2000  # 2000 blocks of 5 points
    with Run(repo=repo) as run:
        run.track_many(np.arange(n, dtype=float), name="big")
    env = repo._env
    gets: list = []
    real_read = env.read
    monkeypatch.setattr(env, "read", lambda buffers=False: _CountingTxn(real_read(buffers), env.dbs["blocks"], gets))
    seq = repo.get_run(run.id).sequence("big")
    assert seq[5000:5010].values.tolist() == list(map(float, range(5000, 5010)))
    assert len(gets) == 2 and "cursor" not in gets  # points 5000..5009: blocks 1000 and 1001
    gets.clear()
    assert seq.range(7003, 7008).values.tolist() == list(map(float, range(7003, 7008)))
    # a binary search over 2000 blocks: at most ~log2(2000) + 2 block reads, no scan
    assert 0 < len(gets) <= 14 and "cursor" not in gets, len(gets)
    gets.clear()
    seq.values  # the full read, for comparison, scans
    # ... after the read-ahead probe (storage/prefetch.py): block MIN_BLOCKS - 1 and block 0
    # looked up, a cursor to the last block
    assert gets[-1] == "cursor" and len(gets) == 4 and gets.count("cursor") == 2, gets


# -- 9. MLflow ------------------------------------------------------------------------------------
def test_mlflow_names(tmp_path, monkeypatch, caplog):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    runstore.set_tracking_uri(tmp_path / "mlruns")
    try:
        runstore.set_experiment("mnist")
        with runstore.start_run(run_name="baseline") as run:
            runstore.log_params({"lr": 0.01})
            runstore.log_metrics({"acc": 0.5}, step=0)
            runstore.log_metrics({"acc": 0.75}, step=1)
            runstore.log_dict({"a": 1}, "config.json")
            runstore.log_text("hello", "notes.txt")
            fig, ax = plt.subplots()
            ax.plot([1, 2, 3])
            runstore.log_figure(fig, "curve.png")
            plt.close(fig)
            with pytest.raises(InvalidValueError, match="dict"):
                runstore.log_metrics([("acc", 1.0)])
        assert run.name == "baseline" and run.experiment == "mnist"
        assert run.repo.path == (tmp_path / "mlruns").resolve()
        arts = {a["name"]: Path(a["path"]) for a in run.artifacts}
        assert json.loads(arts["config.json"].read_text()) == {"a": 1}
        assert arts["notes.txt"].read_text() == "hello"
        assert arts["curve.png"].read_bytes()[:4] == b"\x89PNG"

        exp = runstore.get_experiment_by_name("mnist")
        assert exp is not None and exp.name == "mnist" and exp.run_count == 1
        assert runstore.get_experiment_by_name("nope") is None
        frame = runstore.search_runs(filter_string="run.lr < 0.1", output_format="pandas")
        assert frame["run_id"].tolist() == [run.id]
        assert frame["metrics.acc"].tolist() == [0.75] and frame["params.lr"].tolist() == [0.01]
        assert frame["status"].tolist() == ["FINISHED"]
        assert len(runstore.search_runs(filter_string="run.lr > 0.1")) == 0

        with caplog.at_level(logging.WARNING, logger="runstore"):
            runstore.log_metric("stray", 1.0)
        started = runstore.active_run()
        runstore.end_run()
        assert started.id in caplog.text and "mlruns" in caplog.text
    finally:
        runstore.set_tracking_uri(None)
        runstore.fluent._defaults["experiment"] = None


def test_mlflow_manager_from_seed_002(repo, caplog):
    manager = runstore.MLflowManager(experiment="seed", repo=repo)
    assert isinstance(manager.logger, logging.Logger)
    with caplog.at_level(logging.WARNING):
        manager.log_metrics({"loss": 1.0})  # no active run: a warning, nothing stored
    assert "no active run" in caplog.text and len(repo) == 0
    with manager.start_run(run_name="outer") as outer:
        manager.log_params({"lr": 0.1})
        manager.log_metrics({"loss": 0.5}, step=3)
        with manager.start_run(run_name="inner", nested=True) as inner:
            manager.log_metrics({"loss": 0.25})
        manager.end_run()
    assert runstore.active_run() is None
    stored = repo.get_run(outer.id)
    assert stored.name == "outer" and stored.experiment == "seed" and stored.params == {"lr": 0.1}
    assert stored.sequence("loss").steps.tolist() == [3] and stored.status == "finished"
    assert repo.get_run(inner.id).parent == outer.id
    with pytest.raises(RuntimeError), manager.start_run(run_name="boom") as failed:
        raise RuntimeError("x")
    assert repo.get_run(failed.id).status == "failed"


# -- 10. HydraFlow --------------------------------------------------------------------------------
@dataclasses.dataclass
class Model:
    hidden: int = 8


@dataclasses.dataclass
class Config:
    lr: float = 0.1
    model: Model = dataclasses.field(default_factory=Model)


def _grid(repo):
    runs = []
    for i, (lr, hidden) in enumerate([(0.1, 8), (0.1, 16), (0.01, 8), (0.01, 16)]):
        with Run(repo=repo, name=f"r{i}") as run:
            run["lr"] = lr
            run["model"] = {"hidden": hidden}
            if i < 2:
                run["extra"] = i
            run.track(float(i), name="loss")
        runs.append(run)
    return runs


def test_hydraflow_names(repo):
    from runstore.analysis.collections import RunCollection

    _grid(repo)
    runs = repo.query()
    uniq = runs.unique("lr")
    assert isinstance(uniq, np.ndarray) and uniq.tolist() == [0.01, 0.1]
    a, b = runs[:1], runs[2:]
    assert RunCollection.concat(a, b).to_list("name") == ["r0", "r2", "r3"]
    assert runs.map(lambda run, k: run.get(k), "model.hidden") == [8, 16, 8, 16]
    assert runs.sample(2, seed=0).to_list("name") == runs.sample(2, seed=0).to_list("name")
    assert len(runs.sample(2, seed=1)) == 2
    assert sorted(runs.shuffle(seed=3).to_list("name")) == ["r0", "r1", "r2", "r3"]
    series = runs.to_series("lr")
    assert series.name == "lr" and series.to_list() == [0.1, 0.1, 0.01, 0.01]
    mask = runs.to_numpy("loss.last") >= 2
    assert runs.filter(mask).to_list("name") == ["r2", "r3"]
    frame = runs.to_frame("name", ("extra", -1))
    assert frame["extra"].to_list() == [0, 1, -1, -1]
    frame = runs.to_frame("name", "extra", defaults={"extra": lambda run: -len(run.name)})
    assert frame["extra"].to_list() == [0, 1, -2, -2]
    table = runs.group_by("lr").agg("name", best=lambda g: min(g.to_list("loss.last")))
    assert table["lr"].to_list() == [0.1, 0.01] and table["best"].to_list() == [0.0, 2.0]
    assert table["name"].to_list() == [["r0", "r1"], ["r2", "r3"]]
    run = runs[0]
    assert run.get("run_id") == run.id and run.get("run_dir") == repo.path / "artifacts" / run.id
    assert runs.to_list("run_dir")[1] == repo.path / "artifacts" / runs[1].id
    assert run.info.run_id == run.id and run.info.run_dir == run.get("run_dir")
    typed = runs.typed(Config)
    assert typed[0].cfg.model.hidden == 8


@pytest.mark.slow
def test_typed_collections_type_check_with_mypy(tmp_path, repo):
    """``runs.typed(Config)`` is a ``RunCollection[Config]``: mypy sees ``run.cfg`` as Config."""
    pytest.importorskip("mypy")
    src = Path(runstore.__file__).resolve().parents[1]
    good = tmp_path / "good.py"
    good.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from runstore import Repo
        from runstore.collections import RunCollection

        @dataclass
        class Config:
            lr: float = 0.1

        runs = Repo("r").query().typed(Config)
        checked: RunCollection[Config] = runs
        for run in runs:
            lr: float = run.cfg.lr
            ident: str = run.id
        first: Config = runs.first().cfg
        part: RunCollection[Config] = runs.filter(lr=0.1)[0:2]
        untyped = RunCollection([])
        anything: int = untyped[0].cfg
        reveal_type(runs[0].cfg)
    '''))
    bad = tmp_path / "bad.py"
    bad.write_text(good.read_text() + "\nwrong: int = runs[0].cfg\nnope = runs[0].cfg.missing\n")
    env = {**os.environ, "MYPYPATH": str(src)}

    def mypy(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-error-summary",
             "--cache-dir", str(tmp_path / ".mypy_cache"), "--python-version", "3.10", str(path)],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
        )

    ok = mypy(good)
    assert 'Revealed type is "good.Config"' in ok.stdout, ok.stdout + ok.stderr
    assert "error" not in ok.stdout, ok.stdout
    ko = mypy(bad)
    assert 'Incompatible types in assignment (expression has type "Config", variable has type "int")' in ko.stdout
    assert '"Config" has no attribute "missing"' in ko.stdout


# -- 11. The Experiment Manager --------------------------------------------------------------------
class Metric(enum.Enum):
    TRAIN_LOSS = "train_loss"
    VAL_ACC = "val_acc"


class Code(enum.Enum):
    EPOCH_TIME = 3


def test_enum_metric_names_and_completed_status(repo):
    run = Run(repo=repo)
    run.track(0.5, name=Metric.TRAIN_LOSS)
    run.track(0.4, name=Metric.TRAIN_LOSS)
    run.log_metrics({Metric.VAL_ACC: 0.9, Code.EPOCH_TIME: 1.5})
    run.track_many([1.0, 2.0], name=Metric.VAL_ACC, context={"subset": "test"})
    assert run.sequence(Metric.TRAIN_LOSS).values.tolist() == [0.5, 0.4]
    run.close("completed")
    stored = repo.get_run(run.id)
    assert stored.status == "finished"
    assert sorted(n for n, _ in stored.sequences()) == ["EPOCH_TIME", "train_loss", "val_acc", "val_acc"]
    assert stored.sequence("val_acc").values.tolist() == [0.9]
    assert stored.sequence(Metric.VAL_ACC, {"subset": "test"}).values.tolist() == [1.0, 2.0]
