"""The Experiment Manager's Quick Start, ported: its YAML files and pipeline/factory code
with only the import lines changed, run end to end on runstore (issues 19).

tests/data/experiment_manager_quick_start.md is the seed's "## Quick Start" section, a
byte-for-byte copy (seed 003, the Experiment Manager's README); the files below are cut
from its code blocks, so the test runs exactly what its users copy."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runstore import Repo

QUICK_START = (Path(__file__).parent / "data" / "experiment_manager_quick_start.md").read_text(encoding="utf-8")
_BLOCKS = re.findall(r"```(\w+)\n(.*?)```", QUICK_START, re.S)
assert [lang for lang, _ in _BLOCKS] == ["yaml", "python", "python", "python"]
# the YAML block holds four files, each starting with its "# name.yaml - ..." comment
SEED_YAML = {re.match(r"# (\S+\.yaml)", part).group(1): part
             for part in re.split(r"(?m)^(?=# \S+\.yaml - )", _BLOCKS[0][1]) if part.strip()}
SEED_PIPELINE, SEED_FACTORY, SEED_RUN = (code for _, code in _BLOCKS[1:])


def port(code: str) -> str:
    """The port's only change: every ``from experiment_manager.<module> import X`` line
    becomes ``from runstore.experiment import X`` (docs/experiments.md, step 1)."""
    ported = re.sub(r"(?m)^from experiment_manager(\.\w+)+ import ", "from runstore.experiment import ", code)
    changed = [(a, b) for a, b in zip(code.splitlines(), ported.splitlines()) if a != b]
    assert changed and all(a.startswith("from experiment_manager") for a, _ in changed)
    return ported


def test_the_seed_files_are_the_seeds():
    assert sorted(SEED_YAML) == ["base.yaml", "env.yaml", "experiment.yaml", "trials.yaml"]
    assert "".join(SEED_YAML.values()) == _BLOCKS[0][1]  # nothing left out, nothing added
    assert "pipeline" not in SEED_YAML["base.yaml"]  # the seed names no pipeline type: runstore must cope
    assert 'if name == "your_pipeline_name":' in SEED_FACTORY and 'config_dir = "path/to/configs"' in SEED_RUN


CONFIGS = Path("path", "to", "configs")  # the seed's run.py: config_dir = "path/to/configs"
# The SIGKILL test's env.yaml: a log tracker instead of MLflow (MLflow is covered by the
# verbatim run; every process would set it up again).
LOG_ENV_YAML = SEED_YAML["env.yaml"].split("trackers:")[0] + 'trackers:\n  - type: "log"\n'


def write_project(root: Path, env_yaml: str | None = None) -> Path:
    configs = root / CONFIGS
    configs.mkdir(parents=True, exist_ok=True)
    for name, text in SEED_YAML.items():
        (configs / name).write_text(text if name != "env.yaml" or env_yaml is None else env_yaml, encoding="utf-8")
    package = root / "your_module"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "your_pipeline.py").write_text(port(SEED_PIPELINE))
    (package / "your_pipeline_factory.py").write_text(port(SEED_FACTORY))
    (root / "run.py").write_text(port(SEED_RUN))
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
    # (system/* curves appear too when a repeat outlasts the 10 s sampling interval on a loaded machine)
    curves = repo.sql("SELECT DISTINCT name FROM sequences WHERE name NOT LIKE 'system/%'").column("name")
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


@pytest.fixture
def fresh_your_module():
    """The project's package is imported from each test's own folder."""
    def drop():
        for name in [m for m in sys.modules if m == "your_module" or m.startswith("your_module.")]:
            del sys.modules[name]
    drop()
    yield
    drop()


def test_the_seed_code_finds_its_pipeline_and_two_pipelines_name_the_choices(tmp_path, monkeypatch,
                                                                            fresh_your_module):
    # The seed's base.yaml names no pipeline type: the factory's fallback
    # PipelineFactory.create(None, ...) builds the one pipeline its module imports.
    root = write_project(tmp_path, env_yaml='workspace: "outputs/my_experiment"\n')
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    from runstore.experiment import Experiment, RunStatus

    from your_module.your_pipeline_factory import YourPipelineFactory  # type: ignore[import-not-found]

    results = Experiment.create(str(CONFIGS), YourPipelineFactory).run()
    assert [r.statuses for r in results] == [[RunStatus.COMPLETED] * 3] * 2
    repo = Repo(root / "outputs/my_experiment/.runstore")
    done = [r for r in repo.runs() if r.params.get("kind") == "repeat"]
    assert len(done) == 6 and {r.status for r in done} == {"finished"}
    assert done[0].sequence("val_acc").values.tolist() == [0.85] * 10

    # A second pipeline beside it, still no type: which one is ambiguous, and the error says so
    (root / "your_module" / "other_pipeline.py").write_text(
        "from your_module.your_pipeline import YourPipeline\n\n\nclass OtherPipeline(YourPipeline):\n    pass\n")
    factory = root / "your_module" / "your_pipeline_factory.py"
    factory.write_text(factory.read_text() + "from your_module.other_pipeline import OtherPipeline\n")
    for name in ("your_module.your_pipeline_factory", "your_module.other_pipeline"):
        sys.modules.pop(name, None)
    from your_module.your_pipeline_factory import YourPipelineFactory as TwoPipelineFactory

    (root / CONFIGS / "env.yaml").write_text('workspace: "outputs/two"\n')  # a new experiment, not a resume
    results = Experiment.create(str(CONFIGS), TwoPipelineFactory).run()
    assert all(s.value == "failed" for r in results for s in r.statuses)
    repo = Repo(root / "outputs/two/.runstore")
    failed = [r for r in repo.runs() if r.params.get("kind") == "repeat" and r.status == "failed"]
    assert len(failed) == 6
    error = failed[0].params["error"]
    assert error["type"] == "ConfigError" and "pipeline: {type: <name>}" in error["message"]
    assert "YourPipeline (your_module.your_pipeline)" in error["message"]
    assert "OtherPipeline (your_module.other_pipeline)" in error["message"]
    assert "Traceback (most recent call last)" in error["traceback"]


def test_registered_pipelines_without_a_type(monkeypatch):
    from runstore.errors import ConfigError
    from runstore.experiment import Pipeline, PipelineFactory, YAMLSerializable

    class First(Pipeline):
        def __init__(self, env, config):
            super().__init__(env)

    class Second(First):
        pass

    monkeypatch.setattr(YAMLSerializable, "_registry", {"first": First})
    assert type(PipelineFactory.create(None, {"epochs": 1}, None)) is First  # the one registered pipeline
    monkeypatch.setattr(YAMLSerializable, "_registry", {"first": First, "second": Second, "cb": object})
    with pytest.raises(ConfigError, match=r"2 pipelines are registered: 'first', 'second'"):
        PipelineFactory.create(None, {}, None)
    monkeypatch.setattr(YAMLSerializable, "_registry", {})
    with pytest.raises(ConfigError, match="no pipeline to create"):
        PipelineFactory.create(None, {}, None)


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
    root = write_project(tmp_path, env_yaml=LOG_ENV_YAML)
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
    # the log tracker: one file per level
    exp_dir = root / "outputs/my_experiment/my_experiment"
    run_log = (exp_dir / "trials/small_network/run_1/logs/tracker.log").read_text()
    assert "start TRIAL_RUN" in run_log and "end TRIAL_RUN (completed)" in run_log
    assert "epoch 9: train_loss=0.5 val_loss=0.3 val_acc=0.85" in run_log
    assert "start EXPERIMENT" in (exp_dir / "logs/tracker.log").read_text()
