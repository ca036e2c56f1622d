"""The Experiment Manager's workflows on runstore: callbacks with env=, artifacts per
level, "Hyperparameter Tuning", "Model Comparison" and "Advanced Querying" with the
database queries written as repo.sql (issue 19)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml

from runstore import Repo
from runstore.experiment import (CheckpointCallback, EarlyStopping, Experiment, Level, Metric, MetricsTracker,
                                 Pipeline, PipelineFactory, RunStatus, YAMLSerializable, multiply)

import torch  # CheckpointCallback saves the network with torch.save, as the Experiment Manager does


def write_configs(folder, trials, settings=None, env_extra=""):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "env.yaml").write_text(f"workspace: {folder.parent / 'outputs'}\nverbose: false\n{env_extra}")
    (folder / "experiment.yaml").write_text(yaml.safe_dump(
        {"name": "cmp", "id": 7, "desc": "comparison", "settings": settings or {"epochs": 6}}))
    (folder / "base.yaml").write_text("settings:\n  batch_size: 32\n")
    (folder / "trials.yaml").write_text(yaml.safe_dump(trials))
    return folder


@YAMLSerializable.register("curve")
class CurvePipeline(Pipeline):
    """Loss goes down until ``plateau``, then stays; a linear layer as the network."""

    def __init__(self, env, config):
        super().__init__(env)
        self.config = config
        self.model = torch.nn.Linear(2, 1)
        self.register_callback(EarlyStopping(env=env, metric=Metric.VAL_LOSS, patience=2,
                                             min_delta_percent=1.0, mode="min"))
        self.register_callback(MetricsTracker(env=env))
        self.register_callback(CheckpointCallback(interval=2, env=env))

    @Pipeline.run_wrapper
    def run(self, config):
        for epoch in range(config.epochs):
            status = self.run_epoch(epoch, self.model)
            if status == RunStatus.FAILED:
                return RunStatus.FAILED
        self.run_metrics[Metric.TEST_ACC] = 1.0 - 0.1 * config.plateau + 0.01 * self.seed
        return RunStatus.COMPLETED

    @Pipeline.epoch_wrapper
    def run_epoch(self, epoch_idx, model):
        plateau = self.config.plateau
        self.epoch_metrics[Metric.VAL_LOSS] = 1.0 / (1 + min(epoch_idx, plateau))
        self.epoch_metrics[Metric.VAL_ACC] = {"cat": 0.5 + 0.01 * epoch_idx, "dog": 0.4}
        self.epoch_metrics[Metric.NETWORK] = model
        if epoch_idx == 1:
            plot = self.env.artifact_dir / "curve.png"
            plot.write_bytes(b"png")
            self.env.tracker_manager.on_add_artifact(Level.EPOCH, str(plot), "figure")
        return RunStatus.COMPLETED


def test_callbacks_with_env_and_artifacts_per_level(tmp_path):
    trials = [{"name": "early", "id": 1, "repeat": 1, "settings": {"plateau": 1, "pipeline": {"type": "curve"}}},
              {"name": "late", "id": 2, "repeat": 1, "settings": {"plateau": 10, "pipeline": {"type": "curve"}}}]
    folder = write_configs(tmp_path / "configs", trials)
    results = Experiment.create(folder, PipelineFactory).run()
    assert [r.statuses for r in results] == [[RunStatus.STOPPED], [RunStatus.COMPLETED]]
    repo = Repo(tmp_path / "outputs" / ".runstore")
    early = repo.get_run(results[0].run_ids[0])
    # plateau after epoch 1: patience 2 stops at epoch 3
    assert early.params["stopped_early"] is True and early.params["stopped_epoch"] == 3
    assert early.sequence("val_loss").epochs.tolist() == [0, 1, 2, 3]
    assert early.sequence("val_acc", {"label": "cat"}).values.tolist() == pytest.approx([0.5, 0.51, 0.52, 0.53])
    arts = {a["name"]: a for a in early.artifacts}
    # checkpoints every 2 epochs (epochs 1 and 3) at epoch level, the final model, metrics.log, a figure
    assert {n for n in arts} == {"epoch_1/checkpoint_epoch_1.pth", "epoch_3/checkpoint_epoch_3.pth",
                                 "final.pth", "metrics.log", "epoch_1/curve.png"}
    assert arts["epoch_3/checkpoint_epoch_3.pth"]["level"] == "epoch" and arts["final.pth"]["level"] == "trial_run"
    state = torch.load(arts["final.pth"]["path"])
    assert set(state) == {"weight", "bias"}
    rows = list(csv.DictReader(open(arts["metrics.log"]["path"])))
    assert [r["epoch"] for r in rows] == ["0", "1", "2", "3", "final"]
    assert rows[-1]["test_acc"] != "" and rows[-1]["status"] == "stopped"
    # the workspace holds the same files
    run_dir = tmp_path / "outputs" / "cmp" / "trials" / "early" / "run_1"
    assert (run_dir / "artifacts" / "metrics.log").is_file()
    assert (run_dir / "artifacts" / "checkpoints" / "checkpoint_epoch_3.pth").is_file()
    # artifacts per level through SQL
    levels = repo.sql("SELECT level, count(*) FROM artifacts GROUP BY level ORDER BY level").rows()
    assert dict(levels) == {"epoch": 7, "experiment": 4, "trial_run": 4}
    assert repo.sql("SELECT count(*) FROM artifacts WHERE level = 'epoch' AND epoch = 3 AND kind = 'checkpoint'"
                    ).rows() == [(2,)]  # early and late both saved after epoch 3


def test_linking_instead_of_copying(tmp_path, repo):
    from runstore import Run

    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 1000)
    with Run(repo=repo, experiment="e") as run:
        entry = run.log_artifact(big, kind="data", level="trial_run", link=True)
    assert entry["linked"] is True and entry["size"] == 1000
    path = repo.path / "artifacts" / run.id / "big.bin"
    assert path.is_symlink() and path.resolve() == big.resolve()
    assert repo.sql("SELECT linked, size FROM artifacts").rows() == [(True, 1000)]


class FailingSometimes(Pipeline):
    def __init__(self, env, config):
        super().__init__(env)
        self.config = config

    @Pipeline.run_wrapper
    def run(self, config):
        for epoch in range(3):
            self.run_epoch(epoch)
        return RunStatus.COMPLETED

    @Pipeline.epoch_wrapper
    def run_epoch(self, epoch_idx):
        if self.env.run.params["repeat"] == 1 and epoch_idx == 2:
            raise RuntimeError("diverged at epoch 2")
        self.epoch_metrics[Metric.TRAIN_LOSS] = 1.0 / (epoch_idx + 1)
        return RunStatus.COMPLETED


def test_failed_repeat_keeps_error_and_traceback(tmp_path):
    folder = write_configs(tmp_path / "configs", [{"name": "t", "id": 1, "repeat": 2, "settings": {}}])
    [result] = Experiment.create(folder, FailingSometimes).run()
    assert result.statuses == [RunStatus.COMPLETED, RunStatus.FAILED]
    repo = Repo(tmp_path / "outputs" / ".runstore")
    failed = repo.get_run(result.run_ids[1])
    assert failed.status == "failed"
    assert failed.params["error"]["type"] == "RuntimeError"
    assert failed.params["error"]["message"] == "diverged at epoch 2"
    assert "in run_epoch" in failed.params["error"]["traceback"]
    assert failed.sequence("train_loss").count == 2
    assert repo.sql("SELECT status FROM trials").rows() == [("failed",)]
    log = (tmp_path / "outputs" / "cmp" / "trials" / "t" / "run_2" / "logs" / "trial_run.log").read_text()
    assert "diverged at epoch 2" in log
    # the YAML ids are kept without shadowing the runs' own ids: the terminal tables work
    from click.testing import CliRunner

    from runstore.cli import cli

    out = CliRunner().invoke(cli, ["--repo", str(repo.path), "ls", "--full-ids"])
    assert out.exit_code == 0, out.output
    assert failed.id in out.output and repo.sql("SELECT id FROM trials").rows() == [("1",)]


# -- "Hyperparameter Tuning" -------------------------------------------------------------------
@YAMLSerializable.register("tuning")
class Quadratic(Pipeline):
    """Test accuracy peaks at lr=0.01 and grows with the width; a little seed noise."""

    def __init__(self, env, config):
        super().__init__(env)
        self.config = config

    @Pipeline.run_wrapper
    def run(self, config):
        s = config
        for epoch in range(3):
            self.run_epoch(epoch)
        width = sum(s.hidden_layers)
        self.run_metrics[Metric.TEST_ACC] = (0.9 - (np.log10(s.learning_rate) + 2) ** 2 * 0.1
                                             + width / 10000 + self.rng.normal(0, 0.001))
        return RunStatus.COMPLETED

    @Pipeline.epoch_wrapper
    def run_epoch(self, epoch_idx):
        self.epoch_metrics[Metric.TRAIN_LOSS] = 1.0 / (epoch_idx + 1)
        return RunStatus.COMPLETED


def test_hyperparameter_tuning_workflow(tmp_path):
    configs = tmp_path / "configs"
    write_configs(configs, [], settings={"model_type": "mlp"})
    # the seed's workflow, with its yaml.dump of the generated trials
    base_config = {"name": "tuning_trial", "repeat": 3, "settings": {"model_type": "mlp", "batch_size": 32}}
    learning_rates = [{"settings": {"learning_rate": lr}} for lr in [0.1, 0.01, 0.001]]
    hidden_layers = [{"settings": {"hidden_layers": layers}} for layers in [[64], [128, 64], [256, 128, 64]]]
    trial_configs = multiply(learning_rates, hidden_layers)
    for i, conf in enumerate(trial_configs):
        conf["id"] = i + 1
        conf["name"] = f"trial_{i+1}"
        conf["repeat"] = base_config["repeat"]
        conf["settings"]["pipeline"] = {"type": "tuning"}
    with open(configs / "trials.yaml", "w") as f:
        yaml.dump(trial_configs, f)
    Experiment.create(configs, PipelineFactory).run()

    repo = Repo(tmp_path / "outputs" / ".runstore")
    best = repo.sql("""
        SELECT lr.value_num AS learning_rate, hl.value_json AS hidden_layers,
               avg(r.value) AS mean_acc, stddev_samp(r.value) AS std_acc, count(*) AS n
        FROM trial_runs t
        JOIN results r ON r.run_id = t.run_id AND r.metric = 'test_acc'
        JOIN params lr ON lr.run_id = t.run_id AND lr.key = 'hparams.learning_rate'
        JOIN params hl ON hl.run_id = t.run_id AND hl.key = 'hparams.hidden_layers'
        GROUP BY ALL ORDER BY mean_acc DESC""")
    rows = list(best)
    assert len(rows) == 9 and all(r["n"] == 3 for r in rows)
    assert rows[0]["learning_rate"] == 0.01 and rows[0]["hidden_layers"] == "[256, 128, 64]"
    # the same answer from the trials' summaries (the Python API)
    trials = repo.query("run.kind == 'trial'")
    means = {r.params["hparams"]["learning_rate"]: r.params["summary"]["test_acc"]["mean"] for r in trials
             if r.params["hparams"]["hidden_layers"] == [256, 128, 64]}
    assert max(means, key=means.get) == 0.01
    assert means[0.01] == pytest.approx(rows[0]["mean_acc"])


# -- "Model Comparison" -------------------------------------------------------------------------
class MLPPipeline(Quadratic):
    bias = 0.0


class CNNPipeline(Quadratic):
    bias = 0.05

    @Pipeline.run_wrapper
    def run(self, config):
        for epoch in range(3):
            self.run_epoch(epoch)
        self.run_metrics[Metric.TEST_ACC] = 0.8 + self.bias + self.rng.normal(0, 0.01)
        return RunStatus.COMPLETED


class TransformerPipeline(CNNPipeline):
    bias = 0.1


class ModelComparisonFactory(PipelineFactory):
    @staticmethod
    def create(name, config, env, id=None):
        model_type = config.get("model_type", "mlp")  # the trial's settings are the config
        if model_type == "mlp":
            return MLPPipeline(env, config)
        elif model_type == "cnn":
            return CNNPipeline(env, config)
        elif model_type == "transformer":
            return TransformerPipeline(env, config)
        else:
            raise ValueError(f"Unknown model type: {model_type}")


def test_model_comparison_workflow(tmp_path):
    model_types = ["mlp", "cnn", "transformer"]
    trial_configs = []
    for i, model_type in enumerate(model_types):
        trial_configs.append({
            "id": i + 1,
            "name": f"{model_type}_model",
            "repeat": 5,
            "settings": {"model_type": model_type, "learning_rate": 0.001, "batch_size": 32,
                         "hidden_layers": [64]},
        })
    folder = write_configs(tmp_path / "configs", trial_configs)
    Experiment.create(folder, ModelComparisonFactory).run()
    repo = Repo(tmp_path / "outputs" / ".runstore")
    table = repo.sql("""
        SELECT tr.name AS trial, tr.id AS trial_yaml_id, avg(r.value) AS mean, stddev_samp(r.value) AS std,
               count(*) AS n
        FROM trials tr JOIN trial_runs t ON t.trial_id = tr.run_id
        JOIN results r ON r.run_id = t.run_id AND r.metric = 'test_acc'
        GROUP BY ALL ORDER BY mean DESC""")
    assert [r["trial"] for r in table] == ["transformer_model", "cnn_model", "mlp_model"]
    assert [r["n"] for r in table] == [5, 5, 5] and [r["trial_yaml_id"] for r in table] == ["3", "2", "1"]
    # equal to the trials' stored summaries
    for row in table:
        [parent] = repo.query(f"run.kind == 'trial' and run.name == '{row['trial']}'")
        assert parent.params["summary"]["test_acc"]["mean"] == pytest.approx(row["mean"])
        assert parent.params["summary"]["test_acc"]["std"] == pytest.approx(row["std"])


# -- "Advanced Querying" ------------------------------------------------------------------------
def test_advanced_querying_as_sql(tmp_path):
    trials = [{"name": "early", "id": 1, "repeat": 2, "settings": {"plateau": 1, "pipeline": {"type": "curve"}}},
              {"name": "late", "id": 2, "repeat": 1, "settings": {"plateau": 10, "pipeline": {"type": "curve"}}}]
    folder = write_configs(tmp_path / "configs", trials)
    Experiment.create(folder, PipelineFactory).run()
    repo = Repo(tmp_path / "outputs" / ".runstore")
    [exp] = list(repo.sql("SELECT * FROM experiments"))

    # db.get_experiment_metrics(experiment_id): every final metric of the experiment's trial runs
    metrics = repo.sql("""
        SELECT tr.name AS trial, t.repeat, r.metric, r.value FROM experiments e
        JOIN trials tr ON tr.experiment_id = e.run_id
        JOIN trial_runs t ON t.trial_id = tr.run_id
        JOIN results r ON r.run_id = t.run_id
        WHERE e.id = ? ORDER BY trial, t.repeat""", ["7"]).rows()
    assert [(m[0], m[1], m[2]) for m in metrics] == [("early", 0, "test_acc"), ("early", 1, "test_acc"),
                                                      ("late", 0, "test_acc")]
    # db.get_experiment_artifacts / get_trial_run_artifacts / get_epoch_artifacts
    exp_arts = repo.sql("SELECT name FROM artifacts WHERE run_id = ? ORDER BY name", [exp["run_id"]]).rows()
    assert exp_arts == [("base.yaml",), ("env.yaml",), ("experiment.yaml",), ("trials.yaml",)]
    [late_run] = repo.sql("SELECT run_id FROM trial_runs WHERE trial = 'late'").rows()
    epoch_arts = repo.sql("SELECT epoch, name FROM artifacts WHERE run_id = ? AND level = 'epoch' ORDER BY epoch, "
                          "name", [late_run[0]]).rows()
    assert epoch_arts == [(1, "epoch_1/checkpoint_epoch_1.pth"), (1, "epoch_1/curve.png"),
                          (3, "epoch_3/checkpoint_epoch_3.pth"),
                          (5, "epoch_5/checkpoint_epoch_5.pth")]
    # per-label metric values of an epoch (the seed's METRIC.per_label_val)
    labels = repo.sql("""SELECT context->>'label' AS label, value FROM points
                         WHERE run_id = ? AND name = 'val_acc' AND epoch = 2 ORDER BY label""",
                      [late_run[0]]).rows()
    assert labels == [("cat", pytest.approx(0.52)), ("dog", pytest.approx(0.4))]
    # trial run status, as the seed tracks it through update_trial_run_status
    assert sorted(repo.sql("SELECT status FROM trial_runs").column("status")) == ["finished"] * 3
    # epochs of a trial run with their times
    epochs = repo.sql("SELECT idx, time FROM epochs WHERE trial_run_id = ? ORDER BY idx", [late_run[0]]).rows()
    assert [e[0] for e in epochs] == list(range(6)) and all(e[1] is not None for e in epochs)
