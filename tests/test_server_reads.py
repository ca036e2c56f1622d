"""Reading through runstore server: the CLI's read commands with ``--repo grpc://...``
and remote run views' points (a real server process over a repository written locally)."""

from __future__ import annotations

import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from runstore import Repo, Run, SequenceNotFoundError
from runstore.cli import cli
from server_proc import ServerProcess


@pytest.fixture(autouse=True)
def spool_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def served(tmp_path):
    """A repository of three runs (params, two sequences each, a tag), then a server over it."""
    path = tmp_path / "repo"
    repo = Repo(path)
    for i in range(3):
        run = Run(repo=repo, experiment="exp", name=f"run{i}", tags=["t"] if i == 1 else None)
        run["hparams"] = {"lr": 0.1 * (i + 1), "bs": 32}
        run.track_many(np.arange(6000.0) + i, "loss", context={"subset": "train"})
        run.track_many(np.array([0.5, 0.6, 0.7 + i]), "acc")
        run.close()
    with ServerProcess(path) as proc:
        yield path, proc


def cli_out(repo, *args):
    result = CliRunner().invoke(cli, ["--no-color", "--repo", str(repo), *args], env={"COLUMNS": "250"})
    return result.exit_code, result.output


def _no_times(text: str) -> str:
    return re.sub(r"\d+ (s|min|h) ago|\d\d:\d\d:\d\d", "T", text)


def test_cli_read_commands_against_a_server(served, tmp_path):
    path, proc = served
    local = Repo(path, readonly=True)
    versions = local._versions()
    runs = sorted(local.runs(), key=lambda r: r.name)
    a, b = runs[0].handle, runs[1].handle
    for args in (["ls"], ["query", "run.hparams.lr > 0.15"], ["show", a], ["tail", a], ["diff", a, b],
                 ["experiments"], ["ls", "--sort", "loss.last"]):
        code, remote = cli_out(proc.url, *args)
        assert code == 0, (args, remote)
        code, here = cli_out(path, *args)
        assert code == 0, (args, here)
        # the same answer as on the server's host (paths and clocks aside)
        assert _no_times(remote).replace(proc.url, "REPO") == _no_times(here).replace(str(path), "REPO"), args
    code, out = cli_out(proc.url, "ls")
    assert "3 runs" in out and a in out and "loss" in out
    code, out = cli_out(proc.url, "show", a[:5])  # a prefix resolves on the server to the full id
    assert runs[0].id in out

    code, out = cli_out(proc.url, "export", str(tmp_path / "remote-export"))
    assert code == 0, out
    cli_out(path, "export", str(tmp_path / "local-export"))
    for name in ("runs.parquet",):
        assert pq.read_table(tmp_path / "remote-export" / name).num_rows == 3
    def points(root):
        files = sorted((root / "sequences").rglob("*.parquet"), key=lambda f: f.parent.name)
        return [pq.read_table(f).column("value").to_pylist() for f in files]

    remote_points = points(tmp_path / "remote-export")
    assert sum(map(len, remote_points)) == 3 * 6003
    assert remote_points == points(tmp_path / "local-export")

    # what needs the repository's files says so, in one line
    code, out = cli_out(proc.url, "check")
    assert code == 1 and "remote repository" in out and "server's host" in out
    # nothing was written by any of it
    assert Repo(path, readonly=True)._versions() == versions


def test_remote_run_views_read_points_through_the_server(served):
    path, proc = served
    local = Repo(path, readonly=True)
    remote = Repo(proc.url)
    for here in local.runs():
        view = remote.get_run(here.handle)
        assert view.id == here.id and view.handle == here.handle
        assert view.sequences() == here.sequences()
        loss, mine = view.sequence("loss", {"subset": "train"}), here.sequence("loss", {"subset": "train"})
        np.testing.assert_array_equal(loss.values, mine.values)
        np.testing.assert_array_equal(loss.steps, mine.steps)
        assert loss.count == 6000
        for i in (-1, 4095, 4096):  # epochs are NaN: compare step, value, timestamp
            p, q = loss[i], mine[i]
            assert (p.step, p.value, p.timestamp) == (q.step, q.value, q.timestamp)
        for part in (slice(4000, 4200), slice(None, None, 7)):
            np.testing.assert_array_equal(loss[part].values, mine[part].values)
        np.testing.assert_array_equal(loss.range(4090, 4100).values, mine.range(4090, 4100).values)
        assert [m.name for m in view.metrics()] == ["loss", "acc"]
    for run in remote.query("run.hparams.lr > 0.15"):  # views of a query read the same way
        np.testing.assert_array_equal(run.sequence("acc").values, local.get_run(run.id).sequence("acc").values)


def test_a_live_remote_run_reads_its_own_points(served):
    _, proc = served
    run = Run(repo=Repo(proc.url))
    run.track_many(np.array([5.0, 6.0, 7.0]), "zz")
    seq = run.sequence("zz")
    np.testing.assert_array_equal(seq.values, [5.0, 6.0, 7.0])  # flushed, acknowledged, read back
    run.track(8.0, "zz")
    assert len(seq) == 4 and seq.last == 8.0 and seq[-1].value == 8.0
    assert [m.name for m in run.metrics()] == ["zz"]
    with pytest.raises(SequenceNotFoundError, match="nothing was tracked"):
        run.sequence("never").values
    run.close()
