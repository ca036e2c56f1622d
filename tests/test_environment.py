"""Environment capture: git, command, Python, packages, host; once per process."""

import subprocess
import sys

import msgpack
import pytest

from runstore import Repo, Run
from runstore.tracking import environment as _environment
from runstore.errors import ConfigError


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.delenv("RUNSTORE_CAPTURE_ENV", raising=False)
    monkeypatch.setattr(_environment, "_cache", {})


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def project(tmp_path, monkeypatch):
    src = tmp_path / "project"
    src.mkdir()
    _git(src, "init", "-q", "-b", "main")
    _git(src, "config", "user.email", "t@example.com")
    _git(src, "config", "user.name", "t")
    (src / "train.py").write_text("print('train')\n")
    _git(src, "add", "train.py")
    _git(src, "commit", "-q", "-m", "first")
    _git(src, "remote", "add", "origin", "https://alice:ghp_secret@example.com/team/project.git")
    monkeypatch.chdir(src)
    return src


def test_git_state_is_stored_and_queryable(tmp_path, project, fresh, monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "s3cr3t-value")
    monkeypatch.setattr(sys, "argv", ["train.py", "--lr", "0.1", "--api-key", "abc123", "--token=xyz789",
                                      "db.password=pw42", "epochs=3"])
    commit = _git(project, "rev-parse", "HEAD")
    with Run(tmp_path / "runs", system_metrics=False) as run:
        pass
    repo = Repo(tmp_path / "runs")
    stored = repo.get_run(run.id)
    env = stored.env
    assert env["git"] == {"commit": commit, "branch": "main", "dirty": False,
                          "remote": "https://example.com/team/project.git", "root": str(project)}
    assert env["command"] == ["train.py", "--lr", "0.1", "--api-key", "***", "--token=***",
                              "db.password=***", "epochs=3"]
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert env["packages"]["numpy"] and env["packages"]["runstore"]
    assert env["host"]["cpu_count"] >= 1 and env["host"]["hostname"]
    assert [r.id for r in repo.query(f"run.env.git.commit == '{commit}'")] == [run.id]
    assert [r.id for r in repo.query("run.env.git.dirty == False and run.env.python.version != ''")] == [run.id]
    assert stored.params == {}  # the environment is not a hyperparameter
    dumped = msgpack.packb(env)
    for secret in (b"s3cr3t-value", b"ghp_secret", b"abc123", b"xyz789", b"pw42"):
        assert secret not in dumped


def test_a_dirty_tree_and_a_directory_without_git(tmp_path, project, fresh, monkeypatch):
    (project / "train.py").write_text("print('changed')\n")
    with Run(tmp_path / "runs", system_metrics=False) as run:
        pass
    assert run.env["git"]["dirty"] is True
    elsewhere = tmp_path / "plain"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # do not find a repository above
    with Run(tmp_path / "runs", system_metrics=False) as run:
        pass
    assert "git" not in run.env and "python" in run.env


def test_pieces_can_be_turned_off_or_widened(tmp_path, project, fresh):
    with Run(tmp_path / "runs", system_metrics=False, capture_env={"git": False, "packages": "all"}) as run:
        pass
    env = run.env
    assert "git" not in env and len(env["packages"]) > 30 and "pytest" in env["packages"]
    with Run(tmp_path / "runs", system_metrics=False, capture_env=False) as run:
        pass
    assert run.env == {} and run.params == {}


def test_off_by_environment_variable(tmp_path, fresh, monkeypatch):
    monkeypatch.setenv("RUNSTORE_CAPTURE_ENV", "0")
    with Run(tmp_path / "runs", system_metrics=False) as run:
        pass
    assert run.env == {}


@pytest.mark.parametrize("bad,match", [({"gpu": True}, "no piece 'gpu'"), ({"git": "yes"}, "True or False"),
                                       ("all", "capture_env must be")])
def test_bad_options_are_refused_before_the_run_exists(tmp_path, fresh, bad, match):
    with pytest.raises(ConfigError, match=match):
        Run(tmp_path / "runs", capture_env=bad)
    assert len(Repo(tmp_path / "runs").runs()) == 0


def test_captured_once_per_process(tmp_path, project, fresh, monkeypatch):
    calls = []
    real = subprocess.run

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting)
    runs = [Run(tmp_path / "runs", system_metrics=False) for _ in range(5)]
    for run in runs:
        run.close()
    assert len([c for c in calls if c[0] == "git"]) == 5  # the five git questions of the first run only
    assert len({r.env["git"]["commit"] for r in runs}) == 1
