"""The Experiment Manager's Quick Start, ported: its YAML files and pipeline/factory code
with only the import lines changed, run end to end on runstore (issue 19)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runstore import Repo

ENV_YAML = """\
# env.yaml - Environment configuration
workspace: "outputs/my_experiment"
verbose: true
debug: false
trackers:
  - type: "mlflow"
    tracking_uri: "sqlite:///mlruns.db"
    experiment_name: "my_experiment"
"""
EXPERIMENT_YAML = """\
# experiment.yaml - Experiment configuration
name: my_experiment
id: 1
desc: "Training a model with different hyperparameters"
settings:
  model_type: mlp
  batch_size: 32
  epochs: 10
"""
BASE_YAML = """\
# base.yaml - Base configuration shared across trials
settings:
  model_type: mlp
  batch_size: 32
  optimizer: adam
  log_level: INFO
"""
TRIALS_YAML = """\
# trials.yaml - Trial-specific configurations
- name: small_network
  id: 1
  repeat: 3
  settings:
    hidden_layers: [64, 32]
    learning_rate: 0.001

- name: large_network
  id: 2
  repeat: 3
  settings:
    hidden_layers: [256, 128, 64]
    learning_rate: 0.0001
"""
# The two lines a port adds: the pipeline's name the factory dispatches on (the
# Experiment Manager reads settings.pipeline.type too; its Quick Start leaves it out)
# and a log tracker beside MLflow.
PIPELINE_TYPE = "  pipeline:\n    type: your_pipeline_name\n"
LOG_TRACKER = '  - type: "log"\n'

PIPELINE_PY = '''\
from runstore.experiment import Pipeline
from runstore.experiment import RunStatus, Metric
from omegaconf import DictConfig

class YourPipeline(Pipeline):
    def __init__(self, env, config: DictConfig):
        super().__init__(env)
        self.config = config
        # Initialize your model, data loaders, optimizers, etc.

    @Pipeline.run_wrapper
    def run(self, config):
        """Main training loop with automatic lifecycle management"""
        # Your training logic here
        for epoch in range(config.epochs):
            status = self.run_epoch(epoch)
            if status == RunStatus.FAILED:
                return RunStatus.FAILED

        # Store final results in run_metrics for automatic tracking
        final_test_loss, final_test_acc = self.final_test()
        self.run_metrics[Metric.TEST_LOSS] = final_test_loss
        self.run_metrics[Metric.TEST_ACC] = final_test_acc

        return RunStatus.COMPLETED

    @Pipeline.epoch_wrapper
    def run_epoch(self, epoch_idx):
        """Single epoch with automatic metric tracking"""
        # Your epoch training logic
        train_loss = self.train_step()  # Your training code
        val_loss, val_acc = self.validate()  # Your validation code

        # Store in epoch_metrics - automatically tracked by @epoch_wrapper
        self.epoch_metrics[Metric.TRAIN_LOSS] = train_loss
        self.epoch_metrics[Metric.VAL_LOSS] = val_loss
        self.epoch_metrics[Metric.VAL_ACC] = val_acc

        return RunStatus.COMPLETED

    def train_step(self):
        # Your actual training implementation
        return 0.5  # Example loss value

    def validate(self):
        # Your actual validation implementation
        return 0.3, 0.85  # Example val_loss, val_acc

    def final_test(self):
        # Your actual final test implementation
        return 0.25, 0.90  # Example final_test_loss, final_test_acc
'''

FACTORY_PY = '''\
from omegaconf import DictConfig
from runstore.experiment import Pipeline
from runstore.experiment import PipelineFactory
from runstore.experiment import Environment
from your_module.your_pipeline import YourPipeline

class YourPipelineFactory(PipelineFactory):
    @staticmethod
    def create(name: str, config: DictConfig, env: Environment, id: int = None) -> Pipeline:
        # Create and return your pipeline instance based on configuration
        if name == "your_pipeline_name":
            return YourPipeline(env, config)
        # Fall back to default factory for other pipelines
        return PipelineFactory.create(name, config, env, id)
'''

RUN_PY = '''\
import sys
from runstore.experiment import Experiment
from your_module.your_pipeline_factory import YourPipelineFactory

# Configuration directory containing your YAML files
config_dir = "configs"

# Create experiment from configs
experiment = Experiment.create(config_dir, YourPipelineFactory)

# Run the entire experiment (all trials)
experiment.run()
'''


def write_project(root: Path, pipeline_type: bool = True, log_tracker: bool = True, mlflow: bool = True) -> Path:
    configs = root / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    env_yaml = ENV_YAML if mlflow else ENV_YAML.split("trackers:")[0] + "trackers:\n"
    (configs / "env.yaml").write_text(env_yaml + (LOG_TRACKER if log_tracker else ""))
    (configs / "experiment.yaml").write_text(EXPERIMENT_YAML)
    (configs / "base.yaml").write_text(BASE_YAML + (PIPELINE_TYPE if pipeline_type else ""))
    (configs / "trials.yaml").write_text(TRIALS_YAML)
    package = root / "your_module"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "your_pipeline.py").write_text(PIPELINE_PY)
    (package / "your_pipeline_factory.py").write_text(FACTORY_PY)
    (root / "run.py").write_text(RUN_PY)
    return root


def run_script(root: Path, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    paths = [str(root), *sys.path]
    return subprocess.run([sys.executable, "run.py"], cwd=root, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(paths), **(env or {})})


@pytest.mark.slow
def test_quick_start_runs_end_to_end(tmp_path):
    root = write_project(tmp_path)
    proc = run_script(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "my_experiment" in proc.stderr  # verbose: true logs to the console

    workspace = root / "outputs" / "my_experiment"
    repo = Repo(workspace / ".runstore", readonly=True)  # the default repository lives in the workspace

    # levels: one experiment record, two trials, six trial runs, ten epochs each
    [exp] = repo.sql("SELECT * FROM experiments").rows() and list(repo.sql("SELECT * FROM experiments"))
    assert exp["name"] == "my_experiment" and exp["id"] == "1" and exp["status"] == "finished"
    assert exp["desc"] == "Training a model with different hyperparameters"
    trials = {t["name"]: t for t in repo.sql("SELECT * FROM trials")}
    assert {n: t["id"] for n, t in trials.items()} == {"small_network": "1", "large_network": "2"}
    assert {t["experiment_id"] for t in trials.values()} == {exp["run_id"]}
    runs = list(repo.sql("SELECT * FROM trial_runs ORDER BY trial, repeat"))
    assert len(runs) == 6 and all(r["status"] == "finished" for r in runs)
    assert {(r["trial"], r["trial_id"]) for r in runs} == {(n, t["run_id"]) for n, t in trials.items()}
    epochs = repo.sql("SELECT trial_run_id, count(*) AS n, min(idx) AS lo, max(idx) AS hi FROM epochs "
                      "GROUP BY trial_run_id").rows()
    assert len(epochs) == 6 and all(row[1:] == (10, 0, 9) for row in epochs)
    # Metric enum keys are stored under their names; final metrics are results
    curves = repo.sql("SELECT DISTINCT name FROM sequences").column("name")
    assert sorted(curves) == ["train_loss", "val_acc", "val_loss"]
    results = repo.sql("SELECT metric, avg(value) AS v, count(*) AS n FROM results GROUP BY metric ORDER BY metric")
    assert results.rows() == [("test_acc", pytest.approx(0.9), 6), ("test_loss", pytest.approx(0.25), 6)]
    # the experiment.yaml settings and ids are kept on the experiment's run
    record = repo.get_run(exp["run_id"])
    assert record.params["settings"] == {"model_type": "mlp", "batch_size": 32, "epochs": 10}
    assert record.params["yaml_id"] == 1 and "id" not in record.params  # run.id stays the run's id
    kinds = {a["name"]: a["level"] for a in record.artifacts}
    assert kinds == {"env.yaml": "experiment", "experiment.yaml": "experiment", "base.yaml": "experiment",
                     "trials.yaml": "experiment"}
    summary = repo.get_run(trials["small_network"]["run_id"]).params["summary"]
    assert summary["test_acc"] == {"mean": pytest.approx(0.9), "std": 0.0, "n": 3}

    # the Experiment Manager's directory structure
    exp_dir = workspace / "my_experiment"
    for rel in ("configs/experiment.yaml", "configs/base.yaml", "configs/trials.yaml", "logs/experiment.log",
                "artifacts", "trials/small_network/configs/trial.yaml", "trials/small_network/logs/trial.log",
                "trials/small_network/artifacts", "trials/large_network/run_3/logs/trial_run.log",
                "trials/large_network/run_3/artifacts"):
        assert (exp_dir / rel).exists(), rel
    # the log tracker: one file per level
    run_log = (exp_dir / "trials/small_network/run_1/logs/tracker.log").read_text()
    assert "start TRIAL_RUN" in run_log and "end TRIAL_RUN (completed)" in run_log
    assert "epoch 9: train_loss=0.5 val_loss=0.3 val_acc=0.85" in run_log
    assert "start EXPERIMENT" in (exp_dir / "logs/tracker.log").read_text()

    # MLflow got the same hierarchy (nested runs) and curves
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("my_experiment")
    found = client.search_runs([experiment.experiment_id], max_results=100)
    levels = sorted(r.data.tags["runstore.level"] for r in found)
    assert levels == ["experiment"] + ["trial"] * 2 + ["trial_run"] * 6
    leaf = next(r for r in found if r.data.tags["runstore.level"] == "trial_run")
    history = client.get_metric_history(leaf.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == list(range(10)) and leaf.info.status == "FINISHED"
    parent = client.get_run(leaf.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["runstore.level"] == "trial"
    assert repo.get_run(leaf.data.tags["runstore.run_id"]).params["kind"] == "repeat"


def test_quick_start_without_a_pipeline_type_says_what_to_add(tmp_path, monkeypatch):
    root = write_project(tmp_path, pipeline_type=False, log_tracker=False)
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    (root / "configs" / "env.yaml").write_text('workspace: "outputs/my_experiment"\n')
    from runstore.experiment import Experiment

    from your_module.your_pipeline_factory import YourPipelineFactory  # type: ignore[import-not-found]

    results = Experiment.create("configs", YourPipelineFactory).run()
    assert all(s.value == "failed" for r in results for s in r.statuses)
    repo = Repo(root / "outputs/my_experiment/.runstore")
    failed = [r for r in repo.runs() if r.params.get("kind") == "repeat"]
    assert len(failed) == 6 and all(r.status == "failed" for r in failed)
    error = failed[0].params["error"]
    assert error["type"] == "ConfigError" and "pipeline: {type: <name>}" in error["message"]
    assert "Traceback (most recent call last)" in error["traceback"]


KILLER = '''\
import os, signal
from your_module.your_pipeline import YourPipeline
from runstore.experiment import Pipeline
if os.environ.get("DIE"):
    original = YourPipeline.train_step
    def train_step(self):
        # SIGKILL in the middle of large_network's second repeat
        if self.env.name == "run_2" and "large_network" in str(self.env.workspace) and self.epoch == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self)
    YourPipeline.train_step = train_step
'''


@pytest.mark.slow
def test_quick_start_resumes_after_sigkill(tmp_path):
    root = write_project(tmp_path, mlflow=False)  # MLflow is covered above; each process would set it up
    (root / "sitecustomize.py").write_text(KILLER)
    proc = run_script(root, {"DIE": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    repo_path = root / "outputs/my_experiment/.runstore"
    repo = Repo(repo_path, readonly=True)
    states = sorted((r["trial"], r["repeat"], r["status"]) for r in repo.sql("SELECT * FROM trial_runs"))
    assert states[-1] == ("small_network", 2, "finished") and ("large_network", 1, "running") in states

    proc = run_script(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    repo = Repo(repo_path, readonly=True)
    live = list(repo.sql("SELECT * FROM trial_runs"))
    assert len(live) == 6 and all(r["status"] == "finished" for r in live)
    attempts = {(r["trial"], r["repeat"]): r["attempt"] for r in live}
    assert attempts[("large_network", 1)] == 2 and attempts[("small_network", 0)] == 1
    killed = repo.sql("SELECT status, archived FROM runs WHERE kind = 'repeat' AND archived").rows()
    assert killed == [("killed", True)]
    assert len(repo.sql("SELECT * FROM experiments")) == 1  # the same experiment record, reopened
    assert repo.sql("SELECT status FROM experiments").rows() == [("finished",)]
