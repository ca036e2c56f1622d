"""Trackers, TrackScope, Environment and levels (the Experiment Manager's model, issue 19)."""

from __future__ import annotations

import logging

import pytest

from runstore import Repo
from runstore.errors import ConfigError
from runstore.experiment import (Environment, Level, LogTracker, Metric, RunstoreTracker, Tracker,
                                 TrackerManager, TrackScope)


class Recorder(Tracker):
    """A custom tracker that keeps every call."""

    calls: list = []

    def __init__(self, tag: str = "x") -> None:
        super().__init__()
        self.tag = tag

    def on_create(self, level, *args, **kwargs):
        Recorder.calls.append(("create", Level(level).name))

    def on_start(self, level, *args, **kwargs):
        Recorder.calls.append(("start", Level(level).name))

    def on_end(self, level, *args, **kwargs):
        Recorder.calls.append(("end", Level(level).name))

    def track(self, metric, value, step=None, *args, **kwargs):
        Recorder.calls.append(("track", str(metric), value, step))


Tracker.register("recorder")(Recorder)


class Broken(Tracker):
    def track(self, metric, value, step=None, *args, **kwargs):
        raise RuntimeError("the tracking server is down")


Tracker.register("broken")(Broken)


@pytest.fixture(autouse=True)
def clean():
    Recorder.calls = []
    yield


def test_manual_lifecycle_from_the_seed_docs(tmp_path):
    """The Experiment Manager's "Tracker System" snippet, on a standalone Environment."""
    env = Environment.from_config({"workspace": str(tmp_path / "ws"), "repo": str(tmp_path / "repo"),
                                   "trackers": [{"type": "recorder", "tag": "t"}]})
    tracker = env.tracker_manager
    tracker.on_create(Level.EXPERIMENT)
    tracker.on_start(Level.EXPERIMENT)
    tracker.on_create(Level.TRIAL_RUN)  # create tracking context
    tracker.on_start(Level.TRIAL_RUN)
    tracker.track(Metric.TRAIN_LOSS, 0.456, step=1)
    tracker.track(Metric.VAL_ACC, 0.921, step=1)
    tracker.track_dict({Metric.TRAIN_LOSS: 0.345, Metric.VAL_LOSS: 0.234, Metric.VAL_ACC: 0.892}, step=2)
    with TrackScope(tracker, Level.EPOCH, epoch=3):
        tracker.track(Metric.TRAIN_LOSS, 0.3)
    model_file = tmp_path / "model.pth"
    model_file.write_bytes(b"weights")
    tracker.on_add_artifact(Level.TRIAL_RUN, artifact_path=str(model_file), artifact_type="checkpoint")
    tracker.on_add_artifact(Level.EXPERIMENT, str(model_file), artifact_type="model")
    tracker.log_params({"learning_rate": 0.001, "batch_size": 32, "optimizer": "adam"})
    tracker.on_checkpoint(network=None, checkpoint_path=str(model_file), metrics={Metric.VAL_ACC: 0.95})
    tracker.on_end(Level.TRIAL_RUN)
    tracker.on_end(Level.EXPERIMENT)

    repo = Repo(tmp_path / "repo")
    [exp] = [r for r in repo.runs() if r.params.get("kind") == "experiment"]
    [run] = [r for r in repo.runs() if r.params.get("kind") == "repeat"]
    assert run.parent == exp.id and run.status == "finished" and exp.status == "finished"
    assert run.sequence("train_loss").values.tolist() == [0.456, 0.345, 0.3]
    assert run.sequence("train_loss").steps.tolist() == [1, 2, 3]
    assert run.sequence("train_loss").epochs[-1] == 3.0
    assert run.sequence("val_acc").values.tolist() == [0.921, 0.892]
    assert run.params["learning_rate"] == 0.001 and run.params["optimizer"] == "adam"
    arts = {(a["name"], a["level"], a.get("epoch")) for a in run.artifacts}
    assert ("model.pth", "trial_run", None) in arts and ("epoch_3/model.pth", "epoch", 3) in arts
    assert [(a["name"], a["level"]) for a in exp.artifacts] == [("model.pth", "experiment")]
    # the custom tracker saw the same events
    assert ("start", "TRIAL_RUN") in Recorder.calls and ("end", "EPOCH") in Recorder.calls
    assert ("track", "train_loss", 0.456, 1) in Recorder.calls
    env.close()


def test_a_failing_side_tracker_never_stops_tracking(tmp_path, caplog):
    env = Environment.from_config({"workspace": str(tmp_path / "ws"), "repo": str(tmp_path / "repo"),
                                   "trackers": ["broken"]})
    env.tracker_manager.on_create(Level.TRIAL_RUN)
    for step in range(3):
        env.tracker_manager.track("loss", 1.0 / (step + 1), step=step)
    env.tracker_manager.on_end(Level.TRIAL_RUN)
    env.close()
    [run] = Repo(tmp_path / "repo").runs()
    assert run.sequence("loss").count == 3


def test_runstore_tracker_errors_are_real_errors(tmp_path):
    env = Environment(tmp_path / "ws", repo=tmp_path / "repo")
    env.tracker_manager.on_create(Level.TRIAL_RUN)
    with pytest.raises(Exception, match="loss.*str|cannot be tracked"):
        env.tracker_manager.track("loss", "not a number")


def test_per_label_confusion_and_custom_metrics(tmp_path):
    env = Environment(None, repo=tmp_path / "repo")
    m = env.tracker_manager
    m.on_create(Level.TRIAL_RUN)
    with TrackScope(m, Level.EPOCH, epoch=0):
        m.track_dict({
            Metric.VAL_ACC: {"cat": 0.8, "dog": 0.6},
            Metric.CONFUSION: [[5, 1], [2, 7]],
            Metric.CUSTOM: ("f1", 0.7),
            Metric.NETWORK: object(),  # untracked: ignored
        })
    m.on_end(Level.TRIAL_RUN)
    [run] = Repo(tmp_path / "repo").runs()
    assert run.sequence("val_acc", {"label": "cat"}).last == 0.8
    assert run.sequence("confusion", {"true": 1, "pred": 0}).last == 2.0
    assert run.sequence("f1").last == 0.7
    assert sorted(n for n, _ in run.sequences()) == ["confusion"] * 4 + ["confusion_matrix", "f1", "val_acc", "val_acc"]
    # the whole matrix as one Array object sequence as well (issue 13)
    matrix = run.sequence("confusion_matrix")
    assert matrix.type == "array" and matrix[-1].to_numpy().tolist() == [[5, 1], [2, 7]]
    cells = Repo(tmp_path / "repo").sql(
        "SELECT context->>'true' AS t, context->>'pred' AS p, value FROM points WHERE name = 'confusion' "
        "ORDER BY t, p").rows()
    assert cells == [("0", "0", 5.0), ("0", "1", 1.0), ("1", "0", 2.0), ("1", "1", 7.0)]


def test_environment_children_logger_and_folders(tmp_path, capsys):
    env = Environment.from_config({"workspace": str(tmp_path / "ws"), "verbose": True, "debug": True,
                                   "repo": str(tmp_path / "repo")})
    exp = env.create_child("exp")
    trial = exp.create_child("trial_1")
    run = trial.create_child("run_1")
    assert (exp.level, trial.level, run.level) == (Level.EXPERIMENT, Level.TRIAL, Level.TRIAL_RUN)
    assert trial.workspace == tmp_path / "ws" / "exp" / "trials" / "trial_1"
    assert run.workspace == trial.workspace / "run_1"
    assert exp.config_dir.is_dir() and trial.config_dir.is_dir() and not (run.workspace / "configs").exists()
    assert run.artifact_dir.is_dir() and run.log_dir.is_dir()
    run.logger.debug("a debug line")
    run.logger.info("an info line")
    run.close()
    text = (run.log_dir / "trial_run.log").read_text()
    assert "DEBUG a debug line" in text and "INFO an info line" in text
    assert "run_1: an info line" in capsys.readouterr().err
    assert isinstance(run.logger, logging.Logger)
    assert isinstance(run.tracker_manager.get_tracker(RunstoreTracker), RunstoreTracker)


@pytest.mark.parametrize("config, match", [
    ({"workspaces": "x"}, "workspaces"),
    ({"trackers": [{"tracking_uri": "x"}]}, r"trackers\[0\].*needs a type"),
    ({"trackers": [{"type": "wandb"}]}, r"unknown tracker type 'wandb'.*Tracker.register"),
    ({"trackers": [{"type": "log"}]}, "workspace"),
    ({"trackers": [{"type": "mlflow", "uri": "x"}]}, "tracking_uri and experiment_name"),
    ({"verbose": "loud"}, "verbose"),
])
def test_env_config_errors_name_the_problem(config, match):
    with pytest.raises(ConfigError, match=match):
        Environment.from_config(config)


def test_env_yaml_file_and_log_tracker(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the workspace is relative to the current directory
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "env.yaml").write_text("workspace: ws\nrepo: ../repo\ntrackers:\n  - type: LogTracker\n")
    env = Environment.from_config(folder / "env.yaml")
    assert env.repository.path.resolve() == (tmp_path / "repo").resolve()
    assert isinstance(env.tracker_manager.get_tracker(LogTracker), LogTracker)
    child = env.create_child("e")
    with TrackScope(child.tracker_manager, Level.EXPERIMENT):
        child.tracker_manager.track("acc", 0.5, step=0)
    child.close()
    lines = (child.log_dir / "tracker.log").read_text().splitlines()
    assert lines[0].endswith("EXPERIMENT start EXPERIMENT")
    assert lines[1].endswith("step 0: acc=0.5") and lines[2].endswith("end EXPERIMENT (completed)")


def test_track_scope_reports_failure():
    calls = []

    class Seen(Tracker):
        def on_end(self, level, *args, status=None, **kwargs):
            calls.append((Level(level), status.value))

    manager = TrackerManager([Seen()])
    with pytest.raises(ValueError):
        with TrackScope(manager, Level.TRIAL):
            raise ValueError("boom")
    assert calls == [(Level.TRIAL, "failed")]


def test_batch_level_points_and_callbacks_from_yaml(tmp_path):
    from omegaconf import OmegaConf

    from runstore.experiment import EarlyStopping, Factory

    env = Environment(None, repo=tmp_path / "repo")
    m = env.tracker_manager
    m.on_create(Level.TRIAL_RUN)
    with TrackScope(m, Level.EPOCH, epoch=2):
        for batch in range(3):
            with TrackScope(m, Level.BATCH):
                m.track(Metric.TRAIN_LOSS, 1.0 / (batch + 1), step=20 + batch)
        m.track(Metric.TRAIN_LOSS, 0.5)
    m.on_end(Level.TRIAL_RUN)
    [run] = Repo(tmp_path / "repo").runs()
    batch = run.sequence("train_loss", {"level": "batch"})
    assert batch.steps.tolist() == [20, 21, 22] and batch.epochs.tolist() == [2.0, 2.0, 2.0]
    assert run.sequence("train_loss").steps.tolist() == [2]  # the epoch's own point, at step = epoch

    cfg = OmegaConf.create({"type": "EarlyStopping", "metric": "val_loss", "patience": 3, "mode": "max"})
    stopper = Factory.create(cfg.type, cfg, env)
    assert isinstance(stopper, EarlyStopping) and (stopper.metric, stopper.patience, stopper.mode, stopper.env) == (
        "val_loss", 3, "max", env)
    with pytest.raises(ConfigError, match="EarlyStopping from config.*paitence"):
        Factory.create("EarlyStopping", {"metric": "x", "paitence": 3}, env)
