"""The main decorator called from Python (train([...])): overrides, --config, sweeps,
skipping identical configs, resuming. Hydra runs underneath; tests/test_main_hydra.py
runs a real Hydra app (config groups, plugins) in subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from typing import List

import pytest
from omegaconf import DictConfig

from runstore import Repo
from runstore.errors import ConfigError
from runstore.experiment import main


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Hydra writes outputs/ and multirun/ into the working directory
    return Repo(tmp_path / "repo")


@dataclass
class Optim:
    name: str = "sgd"
    momentum: float = 0.9


@dataclass
class Config:
    lr: float = 1e-3
    epochs: int = 2
    seed: int = 0
    optim: Optim = field(default_factory=Optim)
    layers: List[int] = field(default_factory=lambda: [8, 8])
    tag: str = "lr=${lr}"


def make_train(calls, fail_when=None, **kwargs):
    kwargs.setdefault("experiment", "unit")

    @main(Config, **kwargs)
    def train(run, cfg):
        calls.append((run.id, cfg))
        for epoch in range(cfg.epochs):
            run.track(cfg.lr / (epoch + 1), name="loss", epoch=epoch)
        if fail_when is not None and fail_when(cfg):
            raise RuntimeError(f"failing for lr={cfg.lr}")

    return train


def argv(repo, *args):
    return [*args, "--repo", str(repo.path)]


# -- single runs -------------------------------------------------------------------------------------
def test_single_run_stores_the_resolved_config(repo):
    calls = []
    train = make_train(calls)
    runs = train(argv(repo, "lr=0.01", "epochs=3", "optim.name=adam"))
    assert len(runs) == 1 and len(calls) == 1
    run_id, cfg = calls[0]
    assert isinstance(cfg, Config) and isinstance(cfg.optim, Optim)  # typed, resolved
    assert cfg.lr == 0.01 and cfg.epochs == 3 and cfg.tag == "lr=0.01"
    stored = repo.get_run(run_id)
    assert stored.status == "finished"
    assert stored.experiment == "unit"
    assert stored.params["hparams"] == {
        "lr": 0.01, "epochs": 3, "seed": 0, "optim": {"name": "adam", "momentum": 0.9},
        "layers": [8, 8], "tag": "lr=0.01",
    }
    assert stored.sequence("loss").count == 3


def test_config_files_then_overrides(repo, tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("lr: 0.5\nepochs: 1\noptim:\n  momentum: 0.5\n")
    b = tmp_path / "b.yaml"
    b.write_text("lr: 0.25\n")
    calls = []
    make_train(calls)(argv(repo, "--config", str(a), "epochs=4", "--config", str(b)))
    _, cfg = calls[0]
    assert (cfg.lr, cfg.epochs, cfg.optim.momentum) == (0.25, 4, 0.5)


def test_params_key_and_defaults_from_the_decorator(repo, tmp_path):
    conf = tmp_path / "defaults.yaml"
    conf.write_text("epochs: 1\n")
    calls = []
    train = make_train(calls, params_key="config", config_files=[conf], name="baseline", tags=["t1"])
    [run] = train(argv(repo))
    stored = repo.get_run(run.id)
    assert stored.params["config"]["epochs"] == 1 and "hparams" not in stored.params
    assert stored.name == "baseline" and stored.tags == ["t1"]


def test_default_experiment_is_the_script_name(repo):
    @main(Config)
    def train(run, cfg):
        pass

    [run] = train(argv(repo))
    assert repo.get_run(run.id).experiment == "test_main"
    assert repo.get_run(run.id).name is None


def test_without_schema_the_function_gets_a_dictconfig(repo, tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("a: 1\nb: ${a}\n")
    seen = []

    @main(experiment="untyped")
    def train(run, cfg):
        seen.append(cfg)

    train(argv(repo, "--config", str(conf), "+c=x"))
    assert isinstance(seen[0], DictConfig) and seen[0].b == 1
    assert repo.runs()[0].params["hparams"] == {"a": 1, "b": 1, "c": "x"}


def test_failure_marks_failed_and_reraises(repo):
    train = make_train([], fail_when=lambda cfg: True)
    with pytest.raises(RuntimeError, match="failing"):
        train(argv(repo, "lr=0.2"))
    [run] = repo.runs()
    assert run.status == "failed"


def test_config_errors_raise_before_any_run(repo):
    train = make_train([])
    with pytest.raises(ConfigError, match="override lr=fast.*could not be converted to Float.*full_key: lr"):
        train(argv(repo, "lr=fast"))
    with pytest.raises(ConfigError, match="Ambiguous value for argument 'lr=0.1,0.2'.*--multirun"):
        train(argv(repo, "lr=0.1,0.2"))
    with pytest.raises(ConfigError, match="Could not override 'momentum'.*\\+momentum"):
        train(argv(repo, "momentum=0.1"))
    bad = repo.path.parent / "bad.yaml"
    bad.write_text("optim:\n  momentm: 0.5\n")
    with pytest.raises(ConfigError, match="bad.yaml: unknown field 'optim.momentm'"):
        train(argv(repo, "--config", str(bad)))
    assert len(repo) == 0


def test_print_config_runs_nothing(repo, capsys):
    out = make_train([])(argv(repo, "--print-config", "lr=0.5"))
    assert out == []
    printed = capsys.readouterr().out
    assert "lr: 0.5" in printed and "tag: lr=0.5" in printed
    assert len(repo) == 0


# -- skipping, rerunning, resuming -------------------------------------------------------------------
def test_identical_config_is_skipped(repo, tmp_path, capsys):
    calls = []
    train = make_train(calls)
    [first] = train(argv(repo, "lr=0.1"))
    conf = tmp_path / "same.yaml"
    conf.write_text("lr: 0.1\n")
    # the same resolved config reached another way is still the same config
    [again] = train(argv(repo, "--config", str(conf)))
    assert again.id == first.id
    assert len(calls) == 1 and len(repo) == 1
    assert "skipped" in capsys.readouterr().err
    # a different config, or the same config in another experiment, runs
    train(argv(repo, "lr=0.2"))
    train(argv(repo, "lr=0.1", "--experiment", "other"))
    assert len(calls) == 3 and len(repo) == 3


def test_rerun_finished_and_new_run(repo):
    calls = []
    train = make_train(calls)
    [first] = train(argv(repo, "lr=0.1"))
    [again] = train(argv(repo, "lr=0.1", "--rerun-finished"))
    assert again.id == first.id and len(calls) == 2
    stored = repo.get_run(first.id)
    assert stored.params["attempt"] == 2 and stored.status == "finished"
    [fresh] = train(argv(repo, "lr=0.1", "--new-run"))
    assert fresh.id != first.id and len(repo) == 2 and len(calls) == 3


def test_failed_run_is_resumed_as_a_new_attempt(repo):
    state = {"fail": True}
    calls = []
    train = make_train(calls, fail_when=lambda cfg: state["fail"])
    with pytest.raises(RuntimeError):
        train(argv(repo, "lr=0.3"))
    [failed] = repo.runs()
    assert failed.status == "failed" and failed.params["attempt"] == 1
    state["fail"] = False
    [resumed] = train(argv(repo, "lr=0.3"))
    assert resumed.id == failed.id and len(repo) == 1
    stored = repo.get_run(failed.id)
    assert stored.status == "finished" and stored.params["attempt"] == 2
    assert stored.sequence("loss").count == 4  # both attempts' points are kept


# -- sweeps --------------------------------------------------------------------------------------------
def test_multirun_runs_the_cartesian_product(repo):
    calls = []
    runs = make_train(calls)(argv(repo, "--multirun", "lr=0.1,0.01,0.001", "seed=1,2", "epochs=1"))
    assert len(runs) == 6 and len(repo) == 6
    combos = sorted((r.params["hparams"]["lr"], r.params["hparams"]["seed"]) for r in repo.runs())
    assert combos == sorted((lr, s) for lr in (0.1, 0.01, 0.001) for s in (1, 2))
    assert all(r.status == "finished" and r.params["hparams"]["epochs"] == 1 for r in repo.runs())
    assert {r.name for r in repo.runs()} >= {"lr=0.1 seed=1 epochs=1", "lr=0.001 seed=2 epochs=1"}
    # running the same sweep again skips all six
    again = make_train(calls)(argv(repo, "-m", "lr=0.1,0.01,0.001", "seed=1,2", "epochs=1"))
    assert [r.id for r in again] == [r.id for r in runs] and len(calls) == 6


def test_sweep_over_lists_and_a_failure_does_not_stop_the_sweep(repo):
    calls = []
    train = make_train(calls, fail_when=lambda cfg: cfg.layers == [4])
    with pytest.raises(RuntimeError, match="failing") as info:
        train(argv(repo, "--multirun", "layers=[4],[16,16],[]"))
    assert len(calls) == 3
    assert "1 of 3 jobs failed" in " ".join(info.value.__notes__)
    statuses = {tuple(r.params["hparams"]["layers"]): r.status for r in repo.runs()}
    assert statuses == {(4,): "failed", (16, 16): "finished", (): "finished"}


SCRIPT = """
import os, signal
from dataclasses import dataclass
from runstore.experiment import main

@dataclass
class Config:
    lr: float = 1e-3
    epochs: int = 3
    seed: int = 0

@main(Config, experiment="sweep")
def train(run, cfg):
    '''Train a toy model.'''
    for epoch in range(cfg.epochs):
        run.track(cfg.lr * (epoch + 1), name="loss", epoch=epoch, context={"subset": "train"})
        if os.environ.get("KILL_AT_EPOCH") == str(epoch):
            run.flush()
            os.kill(os.getpid(), signal.SIGKILL)

if __name__ == "__main__":
    train()
"""


def launch(tmp_path, *args, env_extra=None):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {k: v for k, v in os.environ.items() if k != "KILL_AT_EPOCH"}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path
    )


def test_command_line_sweep_in_a_subprocess(repo, tmp_path):
    proc = launch(tmp_path, "--multirun", "lr=0.1,0.01,0.001", "seed=1,2", "--repo", str(repo.path))
    assert proc.returncode == 0, proc.stderr
    runs = repo.runs()
    assert len(runs) == 6 and {r.experiment for r in runs} == {"sweep"}
    assert all(r.status == "finished" for r in runs)
    assert sorted((r.params["hparams"]["lr"], r.params["hparams"]["seed"]) for r in runs) == sorted(
        (lr, s) for lr in (0.1, 0.01, 0.001) for s in (1, 2)
    )
    assert all(r.sequence("loss", context={"subset": "train"}).count == 3 for r in runs)
    # Hydra's launcher names each job; runstore's lines name each run
    assert "#5 : lr=0.001 seed=2" in proc.stdout and proc.stderr.count(" finished after ") == 6
    again = launch(tmp_path, "-m", "lr=0.1,0.01,0.001", "seed=1,2", "--repo", str(repo.path))
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("skipped, finished run") == 6 and len(repo) == 6


def test_command_line_errors_are_messages_not_tracebacks(repo, tmp_path):
    proc = launch(tmp_path, "lr=fast", "--repo", str(repo.path))
    assert proc.returncode == 1  # Hydra's report of a bad override
    assert "Error merging override lr=fast" in proc.stderr and "full_key: lr" in proc.stderr
    assert "Traceback" not in proc.stderr
    helped = launch(tmp_path, "--help")
    assert helped.returncode == 0 and "train: Train a toy model." in helped.stdout and "lr: 0.001" in helped.stdout
    assert "--rerun-finished" in helped.stdout  # runstore's own options are listed too
    assert len(repo) == 0


def test_killed_run_is_resumed(repo, tmp_path):
    proc = launch(tmp_path, "lr=0.5", "--repo", str(repo.path), env_extra={"KILL_AT_EPOCH": "1"})
    assert proc.returncode == -signal.SIGKILL
    [dead] = repo.runs()
    assert dead.status == "running"  # SIGKILL left no chance to say otherwise
    proc = launch(tmp_path, "lr=0.5", "--repo", str(repo.path))
    assert proc.returncode == 0, proc.stderr
    assert "resuming run" in proc.stderr
    [run] = repo.runs()
    assert run.id == dead.id and run.status == "finished" and run.params["attempt"] == 2
