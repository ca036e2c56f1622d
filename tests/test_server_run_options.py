"""A run tracked through `runstore server` gets what a local run gets (issue 16):
every Run(...) keyword, the environment in its record, system/* curves, console.log."""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import numpy as np
import pytest

from runstore import Repo, Run
from runstore.errors import ConfigError
from runstore.server.client import RemoteRun
from runstore.tracking import system_metrics as sm
from server_proc import ServerProcess


@pytest.fixture(autouse=True)
def spool_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "runstore" / "spool"


@pytest.fixture
def server(tmp_path):
    with ServerProcess(tmp_path / "served") as proc:
        yield proc


def test_remote_run_takes_every_run_keyword():
    # Run(repo="grpc://...") is a RemoteRun: a keyword Run gains must be taken there too
    def shape(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    assert shape(RemoteRun.__init__) == shape(Run.__init__)


def _wait_for_samples(run, n, timeout=30.0):  # generous: two shared cores
    watch = sm._watched[id(run)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and watch.samples < n:
        time.sleep(0.05)
    assert watch.samples >= n


def test_environment_system_metrics_and_console_through_the_server(server, spool_home, monkeypatch):
    monkeypatch.delenv("RUNSTORE_SYSTEM_METRICS", raising=False)
    monkeypatch.delenv("RUNSTORE_CAPTURE_ENV", raising=False)
    with pytest.raises(ConfigError, match="system_metrics"):
        Run(repo=server.url, system_metrics="often")  # refused before anything is sent
    run = Run(repo=server.url, experiment="remote", system_metrics=0.1, capture_output=True)
    assert isinstance(run, RemoteRun)
    print("epoch 0: loss 0.5")
    run.track(0.5, name="loss")
    _wait_for_samples(run, 3)
    print("done")
    run.close()
    assert not list((spool_home).rglob("*.log"))  # the local copy of the console went with the upload

    local = Repo(server.repo_path, readonly=True)
    assert len(local.runs()) == 1  # the refused Run(...) created nothing
    stored = local.get_run(run.id)
    env = stored.env  # captured on the client, sent in the create op
    assert env["python"]["version"].count(".") == 2 and env["host"]["hostname"] == run.hostname
    assert local.query(f"run.env.python.version == {env['python']['version']!r}")[0].id == run.id
    names = {name for name, _ in stored.sequences()}
    assert {"loss", "system/cpu_percent", "system/process_rss_mib"} <= names
    rss = stored.sequence("system/process_rss_mib")
    assert len(rss) >= 3 and np.all(np.diff(rss.steps) > 0) and all(10 < v < 100_000 for v in rss.values)
    [console] = [a for a in stored.artifacts if a["name"] == "console.log"]
    assert console["kind"] == "console"
    text = Path(console["path"]).read_text()
    assert "epoch 0: loss 0.5\n" in text and "done\n" in text
    assert Path(console["path"]).is_relative_to(server.repo_path)


def test_backdated_remote_run_and_no_options(server, monkeypatch):
    monkeypatch.delenv("RUNSTORE_SYSTEM_METRICS", raising=False)
    run = Run(repo=server.url, created_at=1_600_000_000.0, force=True)  # an import: no env, no sampling
    assert id(run) not in sm._watched
    run.close()
    stored = Repo(server.repo_path, readonly=True).get_run(run.id)
    assert stored.created_at == 1_600_000_000.0 and stored.env == {}


def test_xgboost_callback_on_a_grpc_repository(server, monkeypatch):
    import xgboost as xgb

    from runstore.integrations.xgboost import RunstoreCallback

    monkeypatch.delenv("RUNSTORE_CAPTURE_ENV", raising=False)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4))
    y = x[:, 0] + rng.normal(scale=0.1, size=120)
    dtrain, dval = xgb.DMatrix(x[:90], y[:90]), xgb.DMatrix(x[90:], y[90:])
    cb = RunstoreCallback(repo=server.url, experiment="xgb", system_metrics=0.05, capture_output=True)
    xgb.train({"max_depth": 2, "nthread": 1}, dtrain, 5, evals=[(dtrain, "train"), (dval, "validation")],
              callbacks=[cb], verbose_eval=True)  # xgboost prints its eval lines: the console capture sees them

    stored = Repo(server.repo_path, readonly=True).get_run(cb.run_id)
    assert stored.status == "finished" and stored.experiment == "xgb"
    assert list(stored.sequence("rmse", {"subset": "val"}).steps) == [0, 1, 2, 3, 4]
    assert "python" in stored.env
    [console] = [a for a in stored.artifacts if a["name"] == "console.log"]
    assert "[4]\ttrain-rmse:" in Path(console["path"]).read_text()


def test_optuna_callback_on_a_grpc_repository(server, tmp_path, monkeypatch):
    # the callback passes system_metrics=False to every Run(...): a TypeError for a remote run before
    import optuna

    from runstore.integrations.optuna import RunstoreCallback, runstore_journal_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="local repository"):  # a file journal needs the directory
        runstore_journal_storage(server.url)
    cb = RunstoreCallback(repo=server.url, experiment="opt")
    study = optuna.create_study(study_name="s")
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=3, callbacks=[cb])
    runs = {r.name: r for r in Repo(server.repo_path, readonly=True).runs()}
    assert sorted(runs) == ["s", "trial-0", "trial-1", "trial-2"]
    assert {runs[f"trial-{i}"].parent for i in range(3)} == {runs["s"].id}
    assert runs["trial-1"].params["value"] == pytest.approx(study.trials[1].value)
    assert not (tmp_path / "grpc:").exists()  # the study lock is not made under the URL as a path
    # the study run's `best`, written through a view after each trial, is on the server at once
    assert runs["s"].params["best"][0]["number"] == study.best_trial.number


def test_a_view_write_is_on_the_server_when_it_returns(server):
    # as a local view's write is stored at once (Optuna's callback updates its study run this way)
    run = Run(repo=server.url, system_metrics=False, capture_env=False)
    run.close()
    view = Repo(server.url).get_run(run.id)
    view["best"] = {"number": 3}
    view.add_tag("searched")
    stored = Repo(server.repo_path, readonly=True).get_run(run.id)
    assert stored.params["best"] == {"number": 3} and stored.tags == ["searched"]
