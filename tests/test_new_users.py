"""Issue 11, part 1: where new users got a wrong answer or lost data without a word.

One test per item of the issue (items 1-7); each failed on the main of that day.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings

import numpy as np
import pytest

import runstore
from runstore import InvalidValueError, MatchError, Pipeline, Repo, Run, SequenceNotFoundError
from runstore.errors import QueryNameError


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Run in an empty working directory with no $RUNSTORE_REPO: a stray run would land
    in ./.runstore here, and the test checks that it never appears."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("RUNSTORE_REPO", raising=False)
    return cwd


# -- 1. fluent calls inside @main and pipelines go to the run they create ------------------------
@dataclasses.dataclass
class Cfg:
    lr: float = 0.1
    seed: int = 0


def test_fluent_calls_in_a_main_multirun_land_in_each_configs_own_run(tmp_path, elsewhere):
    seen = []

    @runstore.main(Cfg, experiment="sweep")
    def train(run, cfg):
        seen.append(runstore.active_run())
        runstore.log_metric("score", cfg.lr * 10 + cfg.seed)
        runstore.log_param("extra", cfg.seed)
        (elsewhere / "note.txt").write_text(str(cfg.lr))
        runstore.log_artifact(elsewhere / "note.txt")

    repo_path = tmp_path / "repo"
    runs = train(["--repo", str(repo_path), "-q", "--multirun", "lr=0.1,0.2", "seed=1,2"])
    assert len(runs) == 4
    assert [s.id for s in seen] == [r.id for r in runs]  # the active run was main's run each time
    repo = Repo(repo_path)
    assert len(repo) == 4
    by_cfg = {(r.params["hparams"]["lr"], r.params["hparams"]["seed"]): r for r in repo.runs()}
    for (lr, seed), run in by_cfg.items():
        assert run.sequence("score").values.tolist() == [lr * 10 + seed]
        assert run.params["extra"] == seed
        assert [a["name"] for a in run.artifacts] == ["hydra", "note.txt"]  # Hydra's .hydra/ folder, then ours
    assert not (elsewhere / ".runstore").exists()  # no stray run in any other repository
    assert runstore.active_run() is None


class Fluent(Pipeline):
    @Pipeline.run_step
    def run(self):
        for epoch in self.epochs(2):
            self.run_epoch(epoch)
        runstore.log_metric("final", 7.0)

    @Pipeline.epoch_step
    def run_epoch(self, epoch):
        runstore.log_metric("inner", float(epoch), step=epoch)
        self.epoch_metrics["loss"] = 1.0


def test_fluent_calls_in_a_pipeline_and_an_experiment_land_in_its_run(tmp_path, repo, elsewhere):
    run = Run(repo=repo)
    Fluent(None, run).run()
    stored = repo.get_run(run.id)
    assert stored.sequence("inner").values.tolist() == [0.0, 1.0]
    assert stored.sequence("final").values.tolist() == [7.0]

    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "experiment.yaml").write_text("name: fl\nsettings: {}\n")
    (folder / "trials.yaml").write_text("- name: a\n  repeat: 2\n  settings: {}\n")
    (folder / "env.yaml").write_text("seed: 1\nprogress: false\n")
    runstore.Experiment.from_dir(folder, Fluent, repo=repo).run()
    repeats = [r for r in repo.runs() if r.experiment == "fl" and r.params.get("kind") == "repeat"]
    assert len(repeats) == 2
    for r in repeats:
        assert r.sequence("inner").values.tolist() == [0.0, 1.0]
    assert not (elsewhere / ".runstore").exists()
    assert runstore.active_run() is None


def test_a_nested_fluent_run_left_open_in_main_ends_as_the_function_did(tmp_path, elsewhere):
    children = []

    @runstore.main(Cfg, experiment="nest")
    def train(run, cfg):
        children.append(runstore.start_run(name="child", nested=True))
        raise ValueError("boom")

    with pytest.raises(ValueError):
        train(["--repo", str(tmp_path / "repo"), "-q"])
    repo = Repo(tmp_path / "repo")
    assert repo.get_run(children[0].id).status == "failed"
    assert repo.get_run(children[0].id).parent is not None
    assert runstore.active_run() is None


# -- 2. summary keys are resolved over the selected runs only --------------------------------------
def test_summary_keys_are_resolved_over_the_selection_only(repo):
    with Run(repo=repo, experiment="a") as other:  # two acc sequences: ambiguous for this run only
        other.track(0.1, name="acc", context={"subset": "train"})
        other.track(0.2, name="acc", context={"subset": "val"})
    for value in (0.5, 0.7):
        with Run(repo=repo, experiment="b") as run:
            run["hparams"] = {"model": "m"}
            run.track(value, name="acc")
    selected = repo.query("run.experiment == 'b'")
    assert selected.to_list("acc.last") == [0.5, 0.7]
    assert selected.to_numpy("acc.last").tolist() == [0.5, 0.7]
    table = selected.group_by("hparams.model", best=lambda g: float(g.to_numpy("acc.last").max()))
    assert table["best"].to_list() == [0.7]
    with pytest.raises(MatchError, match=f"run {other.id}.*subset"):  # the message names the run and contexts
        repo.query().to_list("acc.last")

    from click.testing import CliRunner

    from runstore.cli import cli

    result = CliRunner().invoke(cli, ["--repo", str(repo.path), "ls", "run.experiment == 'b'", "-c", "acc.last"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "0.5" in result.output and "0.7" in result.output


# -- 3. pipelines track what run.track tracks, and never drop a value silently ---------------------
class Values(Pipeline):
    metrics: dict = {}

    @Pipeline.run_step
    def run(self):
        self.run_epoch(0)

    @Pipeline.epoch_step
    def run_epoch(self, epoch):
        self.epoch_metrics.update(self.metrics)


def test_pipelines_track_tensors_and_dicts_and_refuse_what_they_cannot_track(repo, tmp_path):
    torch = pytest.importorskip("torch")
    Values.metrics = {"train_loss": torch.tensor(0.25), "f1": {"cat": 0.5, "dog": 0.75}}
    run = Run(repo=repo)
    Values(None, run, callbacks=[runstore.MetricsCSV(directory=tmp_path / "csv")]).run()
    stored = repo.get_run(run.id)
    assert stored.sequence("train_loss").values.tolist() == [0.25]
    assert stored.sequence("f1", {"label": "dog"}).values.tolist() == [0.75]
    header, row = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[:2]
    assert "train_loss" in header.split(",") and "0.25" in row.split(",")

    for bad, pattern in ((np.eye(2), r"'confusion' is a ndarray of shape \(2, 2\)"),
                         ("high", r"'confusion' is a str")):
        Values.metrics = {"confusion": bad}
        run = Run(repo=repo)
        with pytest.raises(InvalidValueError, match=pattern):
            Values(None, run).run()
        assert repo.get_run(run.id).status == "failed"

    class Declared(Values):
        untracked_metrics = {"confusion"}

    Values.metrics = {"confusion": "high", "loss": 1.0}
    run = Run(repo=repo)
    Declared(None, run).run()
    assert [n for n, _ in repo.get_run(run.id).sequences()] == ["loss"]


# -- 4. errors name the real type ---------------------------------------------------------------
def test_track_errors_name_the_real_type_and_shape(repo):
    torch = pytest.importorskip("torch")
    run = Run(repo=repo)
    with pytest.raises(InvalidValueError, match=r"ndarray of shape \(2,\).*track_many") as info:
        run.track(np.array([1.0, 2.0]), name="loss")
    assert "NoneType" not in str(info.value)
    with pytest.raises(InvalidValueError, match=r"Tensor of shape \(3,\).*track_many"):
        run.track(torch.ones(3), name="loss")
    run.close()


# -- 5. failed or read-only access leaves no empty sequence ----------------------------------------
def test_rejected_tracks_and_reads_leave_no_empty_sequence(repo):
    run = Run(repo=repo)
    with pytest.raises(InvalidValueError):
        run.track("text", name="bad")
    handle = run.sequence("nope")
    with pytest.raises(SequenceNotFoundError, match="nothing was tracked"):
        handle.values
    run.track(1.0, name="loss")
    run.flush()
    assert run.sequences() == [("loss", {})]
    assert len(repo.query_sequences("seq.name == 'nope' or seq.name == 'bad'")) == 0
    handle.append(3.0)  # the handle can still write
    run.close()
    assert repo.get_run(run.id).sequence("nope").values.tolist() == [3.0]
    with pytest.raises(SequenceNotFoundError):
        repo.get_run(run.id).sequence("never")


# -- 6. a typo in a query is not silent ------------------------------------------------------------
def test_unknown_param_in_a_query_warns_with_the_closest_keys(repo):
    from runstore.errors import QueryWarning

    with Run(repo=repo) as run:
        run["hparams"] = {"lr": 0.01}
    with pytest.warns(QueryWarning, match=r"run\.hparams\.lrr.*closest existing keys: run\.hparams\.lr"):
        assert len(repo.query("run.hparams.lrr < 0.1")) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(repo.query("run.hparams.lr < 0.1")) == 1  # a real key: no warning
    assert issubclass(QueryWarning, UserWarning)
    with Run(repo=repo) as other:
        other.track(0.5, name="loss")
    with pytest.warns(QueryWarning, match=r"no sequence .* named 'losss'.*closest sequence names: 'loss'"):
        assert len(repo.query_sequences("seq.name == 'losss'")) == 0
    with pytest.warns(QueryWarning, match="'losss'"):
        assert len(repo.query("seq.name == 'losss' and seq.last < 1")) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(repo.query("seq.name == 'loss'")) == 1
    with pytest.raises(QueryNameError, match=r"run\.params"):
        repo.query("params.lr < 0.01")
    with pytest.raises(QueryNameError, match=r"quote it: 'finished'"):
        repo.query("run.status == finished")

    from click.testing import CliRunner

    from runstore.cli import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["--repo", str(repo.path), "ls", "run.hparams.lrr < 0.1"])
    assert "warning: no run in the repository has the param run.hparams.lrr" in result.stderr
    result = runner.invoke(cli, ["--repo", str(repo.path), "ls", "-c", "hparams.lrr"])
    assert result.exit_code != 0
    assert "default=" not in result.output and "runstore show" in result.output


# -- 7. the SequenceNotFoundError text -------------------------------------------------------------
def test_sequence_not_found_message_says_sequence_once(repo):
    with Run(repo=repo) as run:
        run.track(1.0, name="loss")
    with pytest.raises(SequenceNotFoundError) as info:
        repo.get_run(run.id).sequence("x")
    assert "sequence sequence" not in str(info.value)
    assert f"run {run.id} has no sequence 'x'" in str(info.value)
    with pytest.raises(SequenceNotFoundError) as info:
        repo.get_run(run.id).delete_sequence("x")
    assert "sequence sequence" not in str(info.value)


def test_logging_without_an_active_run_says_which_run_it_started(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("RUNSTORE_REPO", str(tmp_path / "default"))
    with caplog.at_level(logging.WARNING, logger="runstore"):
        runstore.log_metric("loss", 1.0)
    run = runstore.active_run()
    runstore.end_run()
    assert run.id in caplog.text and str(run.repo.path) in caplog.text
    assert os.fspath(tmp_path / "default") in caplog.text
