"""Experiments: directory of YAML files, trials x repeats with seeds, parents and summaries, resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from runstore import Repo
from runstore.errors import ConfigError
from runstore.experiment import Experiment, Pipeline, RunStatus, Trial

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "repo")


FILES = {
    "env.yaml": "seed: 100\nprogress: false\n",
    "experiment.yaml": "name: toy\ndescription: a toy experiment\nsettings:\n  epochs: 3\n  scale: 1.0\n",
    "base.yaml": "settings:\n  scale: 2.0\n  offset: 0.5\n  label: s${scale}-h${hidden}\n",
    "trials.yaml": textwrap.dedent(
        """\
        - name: small
          repeat: 3
          settings:
            hidden: 4
        - name: large
          repeat: 3
          settings:
            hidden: 16
            offset: 1.5
        """
    ),
}


def make_dir(tmp_path, **changes):
    folder = tmp_path / "exp"
    folder.mkdir(exist_ok=True)
    for name, text in {**FILES, **changes}.items():
        if text is None:
            (folder / name).unlink(missing_ok=True)
        else:
            (folder / name).write_text(text)
    return folder


class Toy(Pipeline):
    """Deterministic given (settings, seed); records every execution in ``log``."""

    log: list = []
    hooks: dict = {}

    @Pipeline.run_step
    def run(self):
        Toy.log.append((self.tracker.params["trial"], self.tracker.params["repeat"], self.seed))
        hook = Toy.hooks.get((self.tracker.params["trial"], self.tracker.params["repeat"]))
        for epoch in self.epochs(self.config.epochs):
            self.run_epoch(epoch)
            if hook is not None:
                hook(epoch)
        self.run_metrics["score"] = self.config.hidden * self.config.scale + self.seed / 1000
        self.run_metrics["noise"] = float(self.rng.normal())

    @Pipeline.epoch_step
    def run_epoch(self, epoch):
        self.epoch_metrics["loss"] = self.config.offset / (epoch + 1)


@pytest.fixture(autouse=True)
def clean_toy():
    Toy.log = []
    Toy.hooks = {}
    yield


def children(repo, trial=None, archived=False):
    return [
        r for r in repo.runs()
        if r.params.get("kind") == "repeat" and r.archived == archived and (trial is None or r.params["trial"] == trial)
    ]


# -- loading ---------------------------------------------------------------------------------------------
def test_from_dir_merges_experiment_base_trial(tmp_path, repo):
    exp = Experiment.from_dir(make_dir(tmp_path), Toy, repo=repo)
    assert exp.name == "toy" and exp.description == "a toy experiment"
    small, large = exp.trials
    # experiment <- base <- trial; interpolations resolved after the merge
    assert small.settings == {"epochs": 3, "scale": 2.0, "offset": 0.5, "label": "s2.0-h4", "hidden": 4}
    assert large.settings["offset"] == 1.5 and large.settings["label"] == "s2.0-h16"
    assert small.seeds == (100, 101, 102) and large.seeds == (100, 101, 102)


def test_env_repo_is_relative_to_the_directory(tmp_path):
    folder = make_dir(tmp_path, **{"env.yaml": "repo: runs-here\nprogress: false\n"})
    exp = Experiment.from_dir(folder, Toy)
    exp.run()
    assert len(Repo(folder / "runs-here", create=False)) == 9  # + the experiment record


def test_optional_files_and_explicit_seeds(tmp_path, repo):
    trials = "- name: only\n  repeat: 2\n  seeds: [7, 3]\n  settings: {hidden: 1, epochs: 1, scale: 1, offset: 1}\n"
    folder = make_dir(tmp_path, **{"env.yaml": None, "base.yaml": None, "trials.yaml": trials})
    exp = Experiment.from_dir(folder, Toy, repo=repo)
    assert exp.trials[0].seeds == (7, 3)


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("trials.yaml", "- repeat: 2\n  settings: {}\n", r"trials\.yaml, trial 1.*'name'"),
        ("trials.yaml", "- name: a\n  repeat: lots\n", r"trials\.yaml, trial 1 \('a'\).*'repeat'"),
        ("trials.yaml", "- name: a\n  repeat: 2\n  seeds: [1, 1]\n  settings: {hidden: 1}\n", r"trial 1 \('a'\).*seeds"),
        ("trials.yaml", "- name: a\n  settings: {offset: 1}\n", r"'label'.*base\.yaml.*'hidden' not found"),
        ("trials.yaml", "- name: a\n  settings: {hidden: 1}\n- name: a\n  settings: {hidden: 2}\n", r"unique.*a"),
        ("trials.yaml", "name: a\n", r"trials\.yaml.*list"),
        ("trials.yaml", "- name: a\n  setings: {}\n", r"trials\.yaml, trial 1.*'setings'"),
        ("env.yaml", "seed: abc\n", r"env\.yaml.*'seed'"),
        ("env.yaml", "workspce: x\n", r"env\.yaml.*'workspce'"),  # workspace itself is the Experiment Manager's key
        ("experiment.yaml", "description: no name\n", r"experiment\.yaml.*'name'"),
        ("base.yaml", "settings: 3\n", r"base\.yaml.*'settings'"),
    ],
)
def test_file_errors_name_the_file_and_field(tmp_path, name, text, match):
    with pytest.raises(ConfigError, match=match):
        Experiment.from_dir(make_dir(tmp_path, **{name: text}), Toy)


@dataclass
class Settings:
    epochs: int = 1
    scale: float = 1.0
    offset: float = 0.0
    hidden: int = 1
    label: str = ""


def test_schema_validates_trial_settings(tmp_path, repo):
    bad = "- name: small\n  settings:\n    hidden: wide\n"
    with pytest.raises(ConfigError, match=r"trial 1 \('small'\) settings.*'hidden'"):
        Experiment.from_dir(make_dir(tmp_path, **{"trials.yaml": bad}), Toy, schema=Settings)
    exp = Experiment.from_dir(make_dir(tmp_path), Toy, schema=Settings, repo=repo)
    seen = []
    exp.pipeline_factory = lambda config, run, seed: seen.append(config) or Toy(config, run, seed)
    exp.trials = exp.trials[:1]
    exp.run()
    assert all(isinstance(c, Settings) and c.hidden == 4 for c in seen) and len(seen) == 3


# -- running ---------------------------------------------------------------------------------------------
def test_run_creates_the_hierarchy(tmp_path, repo):
    results = Experiment.from_dir(make_dir(tmp_path), Toy, repo=repo).run()
    assert [r.trial for r in results] == ["small", "large"]
    assert all(r.statuses == [RunStatus.COMPLETED] * 3 and r.executed == 3 for r in results)
    assert len(repo) == 9  # the experiment record + 2 parents + 2 x 3 repeats
    for result in results:
        parent = repo.get_run(result.parent_id)
        assert parent.params["kind"] == "trial" and parent.params["trial"] == result.trial
        assert parent.status == "finished" and parent.experiment == "toy" and parent.name == result.trial
        kids = children(repo, result.trial)
        assert sorted(k.params["repeat"] for k in kids) == [0, 1, 2]
        assert {k.parent for k in kids} == {parent.id}
        assert [k.id for k in sorted(kids, key=lambda k: k.params["repeat"])] == result.run_ids
        for kid in kids:
            assert kid.status == "finished" and kid.experiment == "toy"
            assert kid.params["hparams"] == parent.params["hparams"]
            assert kid.sequence("loss").epochs.tolist() == [0.0, 1.0, 2.0]
        # the parent's summary is mean and std of each final metric over the repeats
        for metric in ("score", "noise"):
            values = np.array([k.params["results"][metric] for k in kids])
            summary = parent.params["summary"][metric]
            assert summary["mean"] == pytest.approx(values.mean())
            assert summary["std"] == pytest.approx(values.std(ddof=1))
            assert summary["n"] == 3
        assert result.summary == parent.params["summary"]


def test_repeat_seeds_are_distinct_recorded_and_used(tmp_path, repo):
    Experiment.from_dir(make_dir(tmp_path), Toy, repo=repo).run()
    for trial in ("small", "large"):
        kids = sorted(children(repo, trial), key=lambda k: k.params["repeat"])
        seeds = [k.params["seed"] for k in kids]
        assert seeds == [100, 101, 102]
        # the pipeline got the recorded seed: its rng draws differ per repeat and match a fresh generator
        noise = [k.params["results"]["noise"] for k in kids]
        assert len(set(noise)) == 3
        assert noise == [float(np.random.default_rng(s).normal()) for s in seeds]
    assert sorted(Toy.log) == sorted((t, i, 100 + i) for t in ("small", "large") for i in range(3))


def test_second_run_skips_finished_repeats(tmp_path, repo):
    folder = make_dir(tmp_path)
    Experiment.from_dir(folder, Toy, repo=repo).run()
    Toy.log.clear()
    results = Experiment.from_dir(folder, Toy, repo=repo).run()
    assert Toy.log == []
    assert all(r.statuses == [RunStatus.SKIPPED] * 3 and r.executed == 0 for r in results)
    assert len(repo) == 9
    rerun = Experiment.from_dir(folder, Toy, repo=repo).run(rerun_finished=True)
    assert len(Toy.log) == 6 and all(r.executed == 3 for r in rerun)
    assert len(children(repo)) == 6 and len(children(repo, archived=True)) == 6


def test_changed_trial_settings_are_a_new_trial(tmp_path, repo):
    Experiment.from_dir(make_dir(tmp_path), Toy, repo=repo).run()
    Toy.log.clear()
    changed = FILES["trials.yaml"].replace("hidden: 16", "hidden: 32")
    Experiment.from_dir(make_dir(tmp_path, **{"trials.yaml": changed}), Toy, repo=repo).run()
    assert sorted({t for t, _, _ in Toy.log}) == ["large"] and len(Toy.log) == 3


def test_interrupted_experiment_resumes_only_missing_repeats(tmp_path, repo):
    folder = make_dir(tmp_path)

    def interrupt(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    Toy.hooks[("large", 1)] = interrupt
    with pytest.raises(KeyboardInterrupt):
        Experiment.from_dir(folder, Toy, repo=repo).run()
    assert [(t, i) for t, i, _ in Toy.log] == [("small", 0), ("small", 1), ("small", 2), ("large", 0), ("large", 1)]
    killed = [k for k in children(repo, "large") if k.params["repeat"] == 1]
    assert [k.status for k in killed] == ["killed"]
    large_parent = [r for r in repo.runs() if r.params.get("kind") == "trial" and r.params["trial"] == "large"]
    assert [p.status for p in large_parent] == ["killed"]

    Toy.hooks.clear()
    Toy.log.clear()
    results = Experiment.from_dir(folder, Toy, repo=repo).run()
    assert [(t, i) for t, i, _ in Toy.log] == [("large", 1), ("large", 2)]
    assert results[0].statuses == [RunStatus.SKIPPED] * 3
    assert results[1].statuses == [RunStatus.SKIPPED, RunStatus.COMPLETED, RunStatus.COMPLETED]
    live = children(repo, "large")
    assert sorted(k.params["repeat"] for k in live) == [0, 1, 2] and all(k.status == "finished" for k in live)
    retried = [k for k in live if k.params["repeat"] == 1][0]
    assert retried.params["attempt"] == 2 and retried.params["seed"] == 101  # same seed as the lost attempt
    [old] = children(repo, "large", archived=True)
    assert old.id == killed[0].id and old.status == "killed"
    parent = repo.get_run(results[1].parent_id)
    assert parent.id == large_parent[0].id and parent.status == "finished" and parent.params["summary"]["score"]["n"] == 3


def test_failed_repeat_does_not_stop_the_others_and_is_retried(tmp_path, repo, capsys):
    folder = make_dir(tmp_path)

    def fail(epoch):
        raise ValueError("diverged")

    Toy.hooks[("small", 1)] = fail
    results = Experiment.from_dir(folder, Toy, repo=repo).run()
    assert results[0].statuses == [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.COMPLETED]
    assert results[1].executed == 3
    assert repo.get_run(results[0].parent_id).status == "failed"
    assert results[0].summary["score"]["n"] == 2  # the summary uses the finished repeats
    assert "diverged" in capsys.readouterr().err
    Toy.hooks.clear()
    Toy.log.clear()
    results = Experiment.from_dir(folder, Toy, repo=repo).run()
    assert [(t, i) for t, i, _ in Toy.log] == [("small", 1)]
    assert repo.get_run(results[0].parent_id).status == "finished"
    assert results[0].summary["score"]["n"] == 3


KILL_SCRIPT = """
import os, signal, sys
from runstore.experiment import Experiment, Pipeline

class Slow(Pipeline):
    @Pipeline.run_step
    def run(self):
        trial, repeat = self.tracker.params["trial"], self.tracker.params["repeat"]
        with open(sys.argv[2], "a") as log:
            log.write(f"{trial} {repeat}\\n")
        for epoch in self.epochs(self.config.epochs):
            self.run_epoch(epoch)
            if (trial, repeat, epoch) == ("large", 1, 1) and os.environ.get("DIE") == "1":
                self.tracker.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        self.run_metrics["score"] = self.config.hidden + self.seed

    @Pipeline.epoch_step
    def run_epoch(self, epoch):
        self.epoch_metrics["loss"] = 1.0 / (epoch + 1)

Experiment.from_dir(sys.argv[1], Slow, repo=sys.argv[3]).run()
"""


def test_experiment_killed_by_sigkill_resumes_only_missing_repeats(tmp_path, repo):
    folder = make_dir(tmp_path)
    script = tmp_path / "run_experiment.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    log = tmp_path / "executed.txt"
    command = [sys.executable, str(script), str(folder), str(log), str(repo.path)]
    proc = subprocess.run(command, env={**os.environ, "DIE": "1"}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert log.read_text().split("\n")[:-1] == ["small 0", "small 1", "small 2", "large 0", "large 1"]
    [dead] = [k for k in children(repo, "large") if k.params["repeat"] == 1]
    assert dead.status == "running"  # nobody could record the kill

    log.write_text("")
    proc = subprocess.run(command, env={**os.environ, "DIE": "0"}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().split("\n")[:-1] == ["large 1", "large 2"]
    live = children(repo)
    assert len(live) == 6 and all(k.status == "finished" for k in live)
    assert repo.get_run(dead.id).status == "killed" and repo.get_run(dead.id).archived
    parents = [r for r in repo.runs() if r.params.get("kind") == "trial"]
    assert len(parents) == 2 and all(p.status == "finished" for p in parents)


def test_trial_objects_validate_seeds():
    with pytest.raises(ConfigError, match="seeds"):
        Trial("t", {}, repeat=2, seeds=(1,))
    with pytest.raises(ConfigError, match="repeat"):
        Trial("t", {}, repeat=0)
    assert Trial("t", {}, repeat=3).seeds == (0, 1, 2)


def test_factory_must_return_a_pipeline(tmp_path, repo):
    exp = Experiment.from_dir(make_dir(tmp_path), lambda config, run, seed: object(), repo=repo)
    results = exp.run()
    assert all(s is RunStatus.FAILED for r in results for s in r.statuses)
    assert all(k.status == "failed" for k in children(repo))


def test_hierarchy_is_queryable(tmp_path, repo):
    results = Experiment.from_dir(make_dir(tmp_path), Toy, repo=repo).run()
    small = list(repo.query("run.trial == 'small' and run.kind == 'repeat'"))
    assert sorted(r.id for r in small) == sorted(results[0].run_ids)
    parent_id = results[1].parent_id
    kids = list(repo.query(f"run.parent == '{parent_id}'"))
    assert sorted(r.id for r in kids) == sorted(results[1].run_ids)
    assert len(list(repo.query("run.seed == 101 and run.experiment == 'toy'"))) == 2


# -- the shipped example ------------------------------------------------------------------------------------
def test_example_experiment_and_analysis(tmp_path):
    folder = tmp_path / "experiment"
    shutil.copytree(ROOT / "examples" / "experiment", folder, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    (folder / "env.yaml").write_text("repo: runs\nseed: 0\nprogress: false\n")
    proc = subprocess.run([sys.executable, str(folder / "pipeline.py")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    repo = Repo(folder / "runs", create=False)
    kids = children(repo)
    assert len(kids) == 6 and {k.params["trial"] for k in kids} == {"linear", "mlp"}
    acc = {t: np.mean([k.params["results"]["test_acc"] for k in kids if k.params["trial"] == t]) for t in ("linear", "mlp")}
    assert acc["mlp"] > acc["linear"] + 0.2  # the spiral needs the hidden layer
    assert all({a["name"] for a in k.artifacts} >= {"metrics.csv", "results.csv"} for k in kids)
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "analyze.py"), str(folder / "runs")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "trial linear" in out.stdout and "trial mlp" in out.stdout and "test_acc" in out.stdout
    assert "+-" in out.stdout and "differs" not in out.stdout
