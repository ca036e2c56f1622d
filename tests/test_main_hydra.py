"""@runstore.main on real Hydra: a real app (tests/hydra_app: config groups model/{mlp,cnn}, a
defaults list, a structured config) run in subprocesses with real Hydra command lines,
including the joblib and submitit launcher plugins and the Optuna sweeper plugin.

hydra-optuna-sweeper pins optuna<3 while the integrations need optuna>=4, so it cannot be in
the test extra: the `optuna_sweeper` fixture pip-installs it into a folder of its own (cached
in pytest's cache folder) that only the app's subprocess puts first on PYTHONPATH."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

import runstore
from runstore import Repo, Run, RunCollection, iter_run_dirs

APP = Path(__file__).parent / "hydra_app" / "train.py"


@pytest.fixture
def repo_path(tmp_path):
    return tmp_path / "repo"


def app(tmp_path, *args, options="", check=True, **env_extra):
    """Run the app in tmp_path (Hydra's outputs/ and multirun/ land there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "HYDRA_"))}
    env.update({"APP_OPTIONS": options, **{k: str(v) for k, v in env_extra.items()}})
    proc = subprocess.run([sys.executable, str(APP), *args, "--repo", str(tmp_path / "repo")],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def runs(tmp_path):
    return Repo(tmp_path / "repo", create=False).runs()


# -- one job ------------------------------------------------------------------------------------------
def test_a_job_with_a_config_group_is_a_tracked_run(tmp_path):
    app(tmp_path, "model=cnn", "lr=0.1")
    [run] = runs(tmp_path)
    assert run.status == "finished" and run.experiment == "train"  # Hydra's job name
    assert run.params["hparams"] == {
        "model": {"name": "cnn", "hidden": 32, "channels": 16},  # model/cnn.yaml over the schema's defaults
        "lr": 0.1, "epochs": 2, "seed": 42, "total_steps": 0, "notes": {},
    }
    assert run.params["overrides"] == ["model=cnn", "lr=0.1"]
    assert run.params["choices"] == {"model": "cnn"}
    assert run.params["attempt"] == 1 and run.params["result"] == pytest.approx(3.0)
    # runstore.log_metric inside the function landed in the job's run
    assert run.sequence("loss").values.tolist() == pytest.approx([0.1, 0.05])
    # Hydra's .hydra/ folder is an artifact; the output folder points back at the run
    [artifact] = run.artifacts
    assert artifact["name"] == "hydra"
    assert "channels: 16" in (Path(artifact["path"]) / "config.yaml").read_text()
    [out] = list(iter_run_dirs(tmp_path / "outputs"))
    assert json.loads((out / "runstore.json").read_text())["run_id"] == run.id
    loaded = Run.load(out)
    assert loaded.id == run.id and loaded.get("hparams.model.name") == "cnn"


def test_append_delete_and_errors_name_the_override(tmp_path):
    app(tmp_path, "+notes.source=cli", "~seed")
    [run] = runs(tmp_path)
    # ~seed removed conf/config.yaml's 42, so the schema's default applies
    assert run.params["hparams"]["seed"] == 0 and run.params["hparams"]["notes"] == {"source": "cli"}
    bad = app(tmp_path, "+extra=1", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "unknown field 'extra' (set by the override '+extra=1'), not in the schema Config" in bad.stderr
    typo = app(tmp_path, "lr=fast", check=False)
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert "field 'lr' = 'fast' (set by the override 'lr=fast') does not fit the schema" in typo.stderr
    group = tmp_path / "conf" / "model"
    group.mkdir(parents=True)
    (group / "big.yaml").write_text("name: big\nhidden: lots\n")
    wrong = app(tmp_path, "--config-dir", str(tmp_path / "conf"), "model=big", check=False)
    assert wrong.returncode == 2
    assert "field 'model.hidden' = 'lots' (set by the config group model=big (model/big.yaml, chosen by the override 'model=big'))" in wrong.stderr
    assert len(runs(tmp_path)) == 1
    # untyped (no schema): + adds a key, ~ deletes one, as in any Hydra app
    app(tmp_path, "+extra=1", "~seed", options="untyped")
    untyped = [r for r in runs(tmp_path) if "extra" in r.params["hparams"]]
    assert len(untyped) == 1 and "seed" not in untyped[0].params["hparams"]


def test_cfg_job_info_and_dry_run_write_nothing(tmp_path):
    shown = app(tmp_path, "--cfg", "job", "model=cnn")
    assert "channels: 16" in shown.stdout
    info = app(tmp_path, "--info", "defaults")
    assert "model/mlp" in info.stdout
    dry = app(tmp_path, "--print-config", "-m", "lr=0.1,0.2")
    assert dry.stdout.count("lr: 0.1\n") == 1 and dry.stdout.count("lr: 0.2\n") == 1
    assert "# lr=0.2" in dry.stdout
    dry = app(tmp_path, "-m", "epochs=1,3", options="dry_run")
    assert "epochs: 3" in dry.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no outputs/, multirun/, or repository


# -- sweeps ---------------------------------------------------------------------------------------------
def test_multirun_over_groups_and_a_range_then_skipped(tmp_path):
    proc = app(tmp_path, "-m", "model=mlp,cnn", "lr=range(1,3)")
    assert "#3 : model=cnn lr=2" in proc.stdout
    done = runs(tmp_path)
    assert sorted((r.params["choices"]["model"], r.params["hparams"]["lr"]) for r in done) == [
        ("cnn", 1), ("cnn", 2), ("mlp", 1), ("mlp", 2)]
    # HydraFlow's readers: Method 1 (a list of folders) and Method 4 (iter_run_dirs)
    folders = list(iter_run_dirs(tmp_path / "multirun"))
    assert len(folders) == 4
    loaded = Run.load(folders)
    assert isinstance(loaded, RunCollection) and len(loaded) == 4
    assert sorted(loaded.filter(("hparams.model.name", "cnn")).to_list("hparams.lr")) == [1, 2]
    assert len(Run.load(iter_run_dirs(tmp_path, "tr*"))) == 4
    assert len(Run.load(iter_run_dirs(tmp_path, ["other", "train"]))) == 4
    assert list(iter_run_dirs(tmp_path, lambda name: name.startswith("x"))) == []
    again = app(tmp_path, "-m", "model=mlp,cnn", "lr=range(1,3)")
    assert again.stderr.count("skipped, finished run") == 4 and len(runs(tmp_path)) == 4


def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    proc = app(tmp_path, "-m", "lr=0.1,0.2,0.3", check=False, APP_FAIL="0.2")
    assert proc.returncode == 1 and "failing for lr=0.2" in proc.stderr
    statuses = {r.params["hparams"]["lr"]: r.status for r in runs(tmp_path)}
    assert statuses == {0.1: "finished", 0.2: "failed", 0.3: "finished"}
    # running the sweep again resumes only the failed job, in place
    app(tmp_path, "-m", "lr=0.1,0.2,0.3")
    again = {r.params["hparams"]["lr"]: r for r in runs(tmp_path)}
    assert len(again) == 3 and again[0.2].status == "finished" and again[0.2].params["attempt"] == 2


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_worker_processes(tmp_path):
    proc = app(tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "lr=0.1,0.2,0.3,0.4")
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout
    done = runs(tmp_path)
    assert sorted(r.params["hparams"]["lr"] for r in done) == [0.1, 0.2, 0.3, 0.4]
    assert all(r.status == "finished" and r.sequence("loss").count == 2 for r in done)
    assert len({r.pid for r in done}) >= 2  # loky worker processes, not one loop
    assert len(list(iter_run_dirs(tmp_path / "multirun"))) == 4


@pytest.mark.slow
def test_submitit_launcher_runs_jobs_in_fresh_interpreters(tmp_path):
    # submitit_local is the SLURM launcher's code path (pickled task, a new Python per job)
    proc = app(tmp_path, "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=2", "lr=0.1,0.2")
    assert "Submitit 'local' sweep output dir" in proc.stdout
    done = runs(tmp_path)
    assert sorted(r.params["hparams"]["lr"] for r in done) == [0.1, 0.2]
    assert all(r.status == "finished" and r.sequence("loss").count == 2 for r in done)
    assert len({r.pid for r in done}) == 2


INLINE = """
from dataclasses import dataclass
import runstore

@dataclass
class Config:  # in __main__: pickled by value into joblib's workers
    lr: float = 0.1

@runstore.main(Config, experiment="inline")
def train(run, cfg):
    assert type(cfg).__name__ == "Config"
    runstore.log_metric("lr", cfg.lr)

if __name__ == "__main__":
    train()
"""


@pytest.mark.slow
def test_joblib_launcher_with_the_config_in_the_main_script(tmp_path):
    script = tmp_path / "inline.py"
    script.write_text(INLINE)
    proc = subprocess.run([sys.executable, str(script), "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                           "lr=0.1,0.2", "--repo", str(tmp_path / "repo")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    done = runs(tmp_path)
    assert sorted(r.sequence("lr").values.tolist()[0] for r in done) == pytest.approx([0.1, 0.2])
    assert all(r.status == "finished" for r in done)


# The plugin's own pin (optuna 2.10 + the cmaes it imports), or the plugin alone next to the test
# environment's optuna>=4 (what docs/experiments.md tells users who want both in one environment).
SWEEPER = "hydra-optuna-sweeper==1.3.0"
OPTUNA_2 = ("optuna==2.10.1", "cmaes==0.13.1")
# what optuna 2.10 imports besides cmaes; optuna>=4's requirements bring most of them
OPTUNA_2_IMPORTS = {"alembic": "alembic", "colorlog": "colorlog", "scipy": "scipy", "sqlalchemy": "sqlalchemy",
                    "tqdm": "tqdm", "yaml": "PyYAML", "packaging": "packaging"}


def pip_target(cache: Path, specs: list[str]) -> Path:
    """`pip install --target --no-deps specs` into a folder of the cache, once per set of specs."""
    target = cache / hashlib.sha1(" ".join(specs).encode()).hexdigest()[:12]
    if (target / "INSTALLED").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=cache, prefix="partial-"))
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps",
           "--target", str(partial), *specs]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        pytest.fail(f"could not install the Optuna sweeper plugin for this test ({' '.join(specs)}): pip needs "
                    f"PyPI (or a mirror in pip's config) at test time. Command: {' '.join(cmd)}\n"
                    + proc.stdout[-1500:] + proc.stderr[-1500:], pytrace=False)
    (partial / "INSTALLED").write_text("\n".join(specs))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


@pytest.fixture(scope="session", params=["optuna 2.10", "optuna>=4"])
def optuna_sweeper(request, tmp_path_factory):
    """(which optuna, PYTHONPATH) for an app subprocess that has the Optuna sweeper plugin."""
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider: install per session
    cache = cache.mkdir("hydra-optuna-sweeper") if cache else tmp_path_factory.mktemp("hydra-optuna-sweeper")
    specs = [SWEEPER]
    if request.param == "optuna 2.10":
        specs += [*OPTUNA_2, *sorted(pkg for mod, pkg in OPTUNA_2_IMPORTS.items() if not importlib.util.find_spec(mod))]
    path = os.pathsep.join([str(pip_target(Path(cache), specs)), *filter(None, [os.environ.get("PYTHONPATH")])])
    # the shadowing works: the subprocess sees optuna 2.10 first, or the environment's optuna>=4
    version = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; print(m.version('optuna'))"],
                             check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}).stdout
    assert version.startswith("2.10.") == (request.param == "optuna 2.10"), version
    return request.param, path


@pytest.mark.slow
def test_optuna_sweeper_stores_one_run_per_trial(tmp_path, optuna_sweeper):
    optuna, pythonpath = optuna_sweeper
    args = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.sampler.seed=1", "lr=interval(0.001,0.1)", "model=choice(mlp,cnn)"]
    proc = app(tmp_path, *args, PYTHONPATH=pythonpath)
    # the sweeper ran (not the basic one), with the optuna this parameter asked for
    assert "Sampler: TPESampler" in proc.stdout
    done = runs(tmp_path)
    assert len(done) == 4 and all(r.status == "finished" for r in done)
    # each run holds the trial's sampled params: the overrides Hydra printed for that job
    launched = sorted(sorted(line.split()) for line in re.findall(r"#\d+ : (.*)", proc.stdout))
    assert sorted(sorted(r.params["overrides"]) for r in done) == launched and len(launched) == 4
    for r in done:
        lr, model = r.params["hparams"]["lr"], r.params["choices"]["model"]
        assert 0.001 <= lr <= 0.1 and f"lr={lr}" in r.params["overrides"] and f"model={model}" in r.params["overrides"]
        assert r.params["result"] == pytest.approx(lr * 10 + 2)  # the function's return value
    # ... and that value went back to Optuna: the study's best is the best run
    [results] = list(tmp_path.glob("multirun/*/*/optimization_results.yaml"))
    best_run = min(done, key=lambda r: r.params["result"])
    study = yaml.safe_load(results.read_text())
    assert study["best_value"] == best_run.params["result"]
    assert study["best_params"] == {"lr": best_run.params["hparams"]["lr"], "model": best_run.params["choices"]["model"]}
    if optuna == "optuna 2.10":
        return  # the rest does not depend on optuna's version
    # the same seeded study again: every trial is a finished run, skipped, its result returned to Optuna
    again = app(tmp_path, *args, PYTHONPATH=pythonpath)
    assert again.stderr.count("skipped, finished run") == 4 and len(runs(tmp_path)) == 4
    assert f"Best value: {best_run.params['result']}" in again.stdout


@pytest.mark.slow
def test_two_processes_split_one_sweep(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "HYDRA_"))}
    env.update(APP_SLEEP="0.4")
    cmd = [sys.executable, str(APP), "-m", "lr=1,2,3", "seed=1,2", "-q", "--repo", str(tmp_path / "repo")]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    time.sleep(0.3)
    procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True))
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err
    done = runs(tmp_path)
    configs = sorted((r.params["hparams"]["lr"], r.params["hparams"]["seed"]) for r in done)
    assert configs == sorted((lr, s) for lr in (1, 2, 3) for s in (1, 2))  # each config exactly once
    per_process = {p.pid: sum(r.pid == p.pid for r in done) for p in procs}
    assert all(n >= 1 for n in per_process.values()), per_process


# -- matching: skip, rerun, force, match_overrides, update ------------------------------------------
def test_rerun_finished_force_new_run_and_aliases(tmp_path):
    app(tmp_path, "lr=0.5")
    skipped = app(tmp_path, "lr=0.5")
    assert "skipped, finished run" in skipped.stderr and len(runs(tmp_path)) == 1
    app(tmp_path, "lr=0.5", options="rerun_finished")
    [run] = runs(tmp_path)
    assert run.params["attempt"] == 2 and run.sequence("loss").count == 4  # resumed in place
    app(tmp_path, "lr=0.5", "--rerun-finished")
    assert runs(tmp_path)[0].params["attempt"] == 3
    app(tmp_path, "lr=0.5", options="force_new_run")
    app(tmp_path, "lr=0.5", "--new-run")
    assert len(runs(tmp_path)) == 3


def test_match_overrides_compares_the_command_line(tmp_path):
    app(tmp_path, "lr=0.02", "epochs=2")
    # epochs=2 is the default: the same config, so skipped by default ...
    assert "skipped" in app(tmp_path, "lr=0.02").stderr and len(runs(tmp_path)) == 1
    # ... but not the same overrides
    app(tmp_path, "lr=0.02", options="match_overrides")
    assert len(runs(tmp_path)) == 2
    # the order of overrides does not matter
    assert "skipped" in app(tmp_path, "epochs=2", "lr=0.02", options="match_overrides").stderr
    assert len(runs(tmp_path)) == 2


def test_update_derives_values_before_matching(tmp_path):
    app(tmp_path, "epochs=3", options="update")
    [run] = runs(tmp_path)
    assert run.params["hparams"]["total_steps"] == 300
    # the derived value is stored and matched: the same invocation is skipped, not run twice
    assert "skipped" in app(tmp_path, "epochs=3", options="update").stderr
    assert len(runs(tmp_path)) == 1


def test_chdir_runs_the_function_in_the_artifacts_folder(tmp_path):
    app(tmp_path, options="chdir")
    [run] = runs(tmp_path)
    written = Path(run.artifacts_dir) / "cwd.txt"
    assert written.read_text() == str(run.artifacts_dir)
    assert not (tmp_path / "cwd.txt").exists()


def test_a_killed_job_is_resumed_in_place(tmp_path):
    proc = app(tmp_path, "lr=0.3", check=False, APP_KILL_AT_EPOCH="1")
    assert proc.returncode == -signal.SIGKILL
    [dead] = runs(tmp_path)
    assert dead.status == "running"
    again = app(tmp_path, "lr=0.3")
    assert "resuming run" in again.stderr
    [run] = runs(tmp_path)
    assert run.id == dead.id and run.status == "finished" and run.params["attempt"] == 2


def test_run_load_names_what_is_wrong(tmp_path):
    with pytest.raises(runstore.RunNotFoundError, match="not a folder that runstore.main tracked"):
        Run.load(tmp_path)
