"""Rough edges a new user hits in a terminal (issue 12): repository paths, init, @main's lines,
Ctrl-C, an idempotent demo, export types, RunCollection's repr."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from runstore import Repo, Run
from runstore.cli import cli
from runstore.errors import RepositoryError


def _env(**extra):
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **extra}


# -- which repository ------------------------------------------------------------------------------


def test_hint_names_a_repository_in_a_subdirectory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Repo("runs")
    result = CliRunner().invoke(cli, ["ls"], env={"RUNSTORE_REPO": None})
    assert result.exit_code == 1
    assert "did you mean --repo runs?" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = CliRunner().invoke(cli, ["--repo", "elsewhere", "ls"], env={"RUNSTORE_REPO": None})
    assert "did you mean" not in result.stderr  # a path given on purpose gets no guess


def test_repo_refuses_a_file(tmp_path):
    (tmp_path / "afile.txt").write_text("notes")
    for create in (None, True):
        with pytest.raises(RepositoryError, match="is a file"):
            Repo(tmp_path / "afile.txt", create=create)
    assert (tmp_path / "afile.txt").read_text() == "notes"


def test_repo_refuses_a_non_empty_directory_unless_create_true(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('hi')\n")
    monkeypatch.chdir(project)
    with pytest.raises(RepositoryError, match=r"other files \(train.py\).*create=True"):
        Repo(".")
    assert sorted(p.name for p in project.iterdir()) == ["train.py"]  # nothing written
    repo = Repo(".", create=True)  # asked for
    assert (project / "data.mdb").is_file() and len(repo) == 0
    assert Repo(".").path == repo.path  # an existing repository opens as always
    (tmp_path / "empty").mkdir()
    Repo(tmp_path / "empty")  # an empty directory is fine
    Repo(tmp_path / "new" / "nested")  # so is a missing one


def test_a_repository_another_process_is_creating_is_not_refused(tmp_path):
    # The window between repo.lock / lock.mdb and data.mdb appearing: two workers of a
    # Hydra joblib sweep opening one new repository at once (one was refused: CI, session 4).
    path = tmp_path / "repo"
    path.mkdir()
    (path / "repo.lock").touch()
    (path / "lock.mdb").write_bytes(b"")
    repo = Repo(path)
    assert (path / "data.mdb").is_file() and len(repo) == 0


def test_many_processes_create_one_new_repository_at_once(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "repo"
    code = ("import sys;from runstore import Repo, Run;r=Repo(sys.argv[1]);"
            "run=Run(repo=r, system_metrics=False, capture_env=False);run.track(1.0, name='x');run.close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    assert len(Repo(path)) == 6


def test_a_process_opening_a_repository_being_created_waits_for_it(tmp_path):
    # The creation race behind a rare failure of the test above: a process that saw the
    # new data.mdb before its creator's first commit found no 'meta' database and was
    # refused. Here the creator is held between making data.mdb and that commit.
    import subprocess
    import sys
    import time

    path = tmp_path / "repo"
    creator = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from runstore.storage import env\n"
        "real = env.Environment._open_databases\n"
        "def slow(self):\n"
        "    print('made', flush=True); time.sleep(1.0); real(self)\n"
        "env.Environment._open_databases = slow\n"
        "from runstore import Repo, Run\n"
        "with Run(repo=Repo(sys.argv[1]), system_metrics=False, capture_env=False) as run:\n"
        "    run.track(1.0, name='x')\n"), str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert creator.stdout.readline().strip() == "made"  # data.mdb exists, not yet initialised
    assert (path / "data.mdb").exists()
    t = time.monotonic()
    opener = subprocess.run([sys.executable, "-c", "import sys; from runstore import Repo; print(len(Repo(sys.argv[1])))",
                             str(path)], capture_output=True, text=True, timeout=60)
    assert opener.returncode == 0, opener.stderr
    assert time.monotonic() - t > 0.3  # it waited for the creator's first commit
    assert creator.wait(timeout=60) == 0, creator.stderr.read()
    assert len(Repo(path)) == 1


def test_init_says_what_it_created(tmp_path):
    target = tmp_path / "project"
    target.mkdir()
    (target / "README").write_text("x")
    result = CliRunner().invoke(cli, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert f"Initialized an empty runstore repository in the existing directory:\n  {target}\n" in result.stdout
    assert "data.mdb" in result.stdout and f"--repo {target}" in result.stdout


# -- @main: a line at start and end, one line on Ctrl-C -------------------------------------------

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from runstore import main

    @main(experiment="lines")
    def train(run, cfg):
        for step in range(3):
            run.track(float(cfg.lr) * step, name="loss", step=step)
        if float(cfg.lr) == float(os.environ.get("STOP_AT", "-1")):
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does

    if __name__ == "__main__":
        train()
""")


def _script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


def test_main_prints_start_and_end_lines_on_stderr(tmp_path):
    repo = tmp_path / "repo"
    proc = subprocess.run([sys.executable, str(_script(tmp_path)), "lr=0.1", "--repo", str(repo)],
                          capture_output=True, text=True, env=_env(), timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    (run,) = Repo(repo, create=False).runs()
    assert len(lines) == 2
    assert lines[0].startswith(f"train: run {run.handle} started in {run.repo.path} (id {run.id})")
    assert re.fullmatch(rf"train: run {run.handle} finished after [\d.]+s", lines[1])
    quiet = subprocess.run([sys.executable, str(_script(tmp_path)), "lr=0.2", "--repo", str(repo), "--quiet"],
                           capture_output=True, text=True, env=_env(), timeout=120, cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_ctrl_c_in_a_multirun_is_one_line(tmp_path):
    repo = tmp_path / "repo"
    proc = subprocess.run([sys.executable, str(_script(tmp_path)), "lr=0.1,0.2,0.3,0.4", "--multirun", "--quiet",
                           "--repo", str(repo)], capture_output=True, text=True, env=_env(STOP_AT="0.3"),
                          timeout=120, cwd=tmp_path)  # Hydra's outputs/ lands in the working directory
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
    assert "interrupted; 2 runs finished, 1 marked killed; run again to resume" in proc.stderr
    statuses = sorted(r.status for r in Repo(repo, create=False).runs())
    assert statuses == ["finished", "finished", "killed"]
    again = subprocess.run([sys.executable, str(_script(tmp_path)), "lr=0.1,0.2,0.3,0.4", "--multirun",
                            "--quiet", "--repo", str(repo)], capture_output=True, text=True, env=_env(), timeout=120, cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # resumed: the killed config runs again, the rest is new
    assert sorted(r.status for r in Repo(repo, create=False).runs()).count("finished") == 4


EXPERIMENT = textwrap.dedent("""
    import os, signal
    from dataclasses import dataclass
    from runstore import Repo
    from runstore.experiment import Experiment, Pipeline, Trial

    @dataclass
    class Config:
        hidden: int = 4

    class Job(Pipeline):
        @Pipeline.run_step
        def run(self):
            if self.tracker.params["trial"] == "large" and self.tracker.params["repeat"] == 1:
                os.kill(os.getpid(), signal.SIGINT)
            self.run_metrics["score"] = float(self.config.hidden)

    trials = [Trial("small", {"hidden": 4}, repeat=2), Trial("large", {"hidden": 16}, repeat=2)]
    exp = Experiment("toy", trials, Job,
                     repo=Repo(os.environ["REPO"]), schema=Config, progress=False)
    exp.run()
""")


def test_ctrl_c_in_experiment_run_is_one_line(tmp_path):
    script = tmp_path / "exp.py"
    script.write_text(EXPERIMENT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=_env(REPO=str(tmp_path / "repo")), timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "interrupted; 3 runs finished, 1 marked killed; run again to resume")


def test_interrupted_is_still_a_keyboard_interrupt():
    from runstore.experiment._announce import Interrupted, interrupted

    exc = interrupted(2, 1)
    assert isinstance(exc, KeyboardInterrupt) and isinstance(exc, Interrupted)
    assert str(exc) == "interrupted; 2 runs finished, 1 marked killed; run again to resume"


# -- demo --------------------------------------------------------------------------------------------


def test_demo_is_idempotent_and_says_what_to_try(tmp_path):
    target = tmp_path / "demo"
    first = CliRunner().invoke(cli, ["--repo", str(target), "demo"])
    assert first.exit_code == 0, first.output
    assert "trained 5 runs" in first.stdout and "next, try:" in first.stdout
    runs = Repo(target, create=False).runs()
    for command in (f"runstore --repo {target} ls", f"runstore --repo {target} show "):
        assert command in first.stdout
    assert any(r.handle in first.stdout.split("next, try:")[1] for r in runs)
    second = CliRunner().invoke(cli, ["--repo", str(target), "demo"])
    assert second.exit_code == 0
    assert "already has the demo's 5 runs" in second.stdout and "trained" not in second.stdout
    assert len(Repo(target, create=False)) == 5
    fresh = CliRunner().invoke(cli, ["--repo", str(target), "demo", "--fresh"])
    assert fresh.exit_code == 0 and "trained 5 runs" in fresh.stdout
    assert sorted(set(Repo(target, create=False).query("").to_list("experiment"))) == ["demo", "demo-2"]
    # every suggested command works
    import shlex

    for line in first.stdout.split("next, try:")[1].strip().splitlines():
        argv = shlex.split(line.strip())
        if argv[-1] == "ui":  # serves until interrupted (tests/test_ui_cli.py runs it for real)
            argv.append("--help")
        result = CliRunner().invoke(cli, argv[1:], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (line, result.output)


# -- export ------------------------------------------------------------------------------------------


@pytest.fixture
def exported(tmp_path):
    repo = Repo(tmp_path / "repo")
    for i in range(2):
        with Run(repo=repo, experiment="e", name=f"r{i}") as run:
            run["lr"] = 0.1 * (i + 1)
            run.track_many([1.0, 0.5], name="loss")
    return repo, tmp_path


@pytest.mark.parametrize("partition", ["run", "experiment"])
def test_export_run_id_column_and_types(exported, partition):
    import pyarrow as pa

    repo, tmp_path = exported
    dest = tmp_path / "out"
    result = CliRunner().invoke(cli, ["--repo", str(repo.path), "export", str(dest), "--partition-by", partition])
    assert result.exit_code == 0, result.output
    runs = pq.read_table(dest / "runs.parquet")
    assert runs.column_names[0] == "run_id" and runs.schema.field("run_id").type == pa.string()
    assert runs.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    for path in (dest / "sequences").rglob("*.parquet"):
        part = pq.read_table(path)  # one file alone still says which run
        assert part.schema.field("run_id").type == pa.string()
        assert part.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
        assert set(part["run_id"].to_pylist()) <= set(runs["run_id"].to_pylist())
    pl = pytest.importorskip("polars")
    points = pl.scan_parquet(str(dest / "sequences" / "**" / "*.parquet"), hive_partitioning=True).collect()
    joined = pl.read_parquet(dest / "runs.parquet").join(points, on="run_id")  # no cast needed
    assert joined.height == 4
    pd = pytest.importorskip("pandas")
    merged = pd.merge(pd.read_parquet(dest / "runs.parquet"), points.to_pandas(), on="run_id")
    assert len(merged) == 4


def test_export_csv_times_are_iso_utc(exported):
    import csv

    repo, tmp_path = exported
    dest = tmp_path / "csv"
    assert CliRunner().invoke(cli, ["--repo", str(repo.path), "export", str(dest), "-f", "csv"]).exit_code == 0
    iso = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
    row = next(csv.DictReader((dest / "runs.csv").open()))
    assert iso.fullmatch(row["created_at"]) and iso.fullmatch(row["ended_at"])
    part = next((dest / "sequences").rglob("*.csv"))
    point = next(csv.DictReader(part.open()))
    assert iso.fullmatch(point["timestamp"]) and len(point["run_id"]) == 24


# -- RunCollection.__repr__ ----------------------------------------------------------------------------


def test_repr_shows_varying_params_first(tmp_path):
    repo = Repo(tmp_path / "repo")
    for lr in (0.1, 0.01, 0.001):
        with Run(repo=repo) as run:
            run["hparams"] = {"batch": 32, "epochs": 10, "optimizer": "adam", "lr": lr}
    text = repr(repo.query(""))
    header = text.splitlines()[1].split()
    assert header[4] == "hparams.lr"  # the only param that varies, though it was logged last
    assert "hparams.batch" not in header
    assert "same in all 3: hparams.batch=32, hparams.epochs=10, hparams.optimizer=adam" in text
