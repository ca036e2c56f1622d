"""Importing MLflow stores written by the real mlflow client (an SQLite database and
a file store), checked against what MlflowClient itself reads back from them."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from runstore import ImportSourceError, Repo, importers
from runstore.cli import cli
from runstore.importers import _mlflow

from test_import_tensorboard import tree_digest

from mlflow.entities import ViewType  # noqa: E402  (mlflow-skinny, sqlalchemy, alembic: the test extra)
from mlflow.tracking import MlflowClient  # noqa: E402

WRITER = Path(__file__).with_name("mlflow_writer.py")
DBL_MAX = sys.float_info.max


@pytest.fixture(scope="session")
def stores(tmp_path_factory):
    """Both stores, written once per test session by a real mlflow process each."""
    root = tmp_path_factory.mktemp("mlflow")
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "GIT_PYTHON_REFRESH": "quiet"}
    out = {}
    for kind, uri in (("sqlite", f"sqlite:///{root}/mlflow.db"), ("file", str(root / "mlruns"))):
        proc = subprocess.run([sys.executable, str(WRITER), uri if kind == "sqlite" else f"file://{uri}",
                               str(root / f"artifacts-{kind}")], capture_output=True, text=True, env=env,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[kind] = (uri, proc.stdout.split()[-1])
    return out


def expected(uri: str) -> dict[str, dict]:
    """Every live run as MlflowClient reads it: the reference the import must match."""
    client = MlflowClient(uri if "://" in uri else f"file://{uri}")
    runs = {}
    for exp in client.search_experiments(view_type=ViewType.ALL):
        for run in client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY):
            metrics = {}
            for key in run.data.metrics:
                metrics[key] = sorted((m.step, m.timestamp / 1000.0, _inf(m.value))
                                      for m in client.get_metric_history(run.info.run_id, key))
            runs[run.info.run_id] = {"exp": exp.name, "info": run.info, "params": run.data.params,
                                     "tags": run.data.tags, "metrics": metrics}
    return runs


def _inf(v: float) -> float:
    return math.inf if v == DBL_MAX else -math.inf if v == -DBL_MAX else v


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x[:2] == y[:2] and (x[2] == y[2] or math.isnan(x[2]) and math.isnan(y[2]))
                                    for x, y in zip(a, b))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_every_run_param_tag_point_and_parent(stores, kind, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads file stores only when asked
    uri, parent_id = stores[kind]
    want = expected(uri)
    repo = Repo(tmp_path / "repo")
    result = importers.mlflow(uri, repo=repo, contexts=False)
    assert len(result) == len(want) == 5
    assert any("1 deleted run" in s for s in result.skipped)
    by_source = {r.params["imported_from"]["id"]: r for r in repo.runs()}
    assert set(by_source) == set(want)
    for run_id, w in want.items():
        run = by_source[run_id]
        info = w["info"]
        assert run.name == info.run_name and run.experiment == w["exp"]
        assert run.status == {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed",
                              "RUNNING": "running"}[info.status]
        assert run.created_at == info.start_time / 1000.0
        assert run.ended_at == (info.end_time / 1000.0 if info.end_time else None)
        # params: every one, typed back, dotted keys nested
        flat = {k: v for k, v in _flatten(run.params).items() if not k.startswith("imported_from.")}
        assert {k: str(v) for k, v in flat.items()} == w["params"]
        tags = {t.split("=", 1)[0]: t.split("=", 1)[1] for t in run.tags}
        assert tags == {k: v for k, v in w["tags"].items()
                        if k not in ("mlflow.runName", "mlflow.parentRunId", "mlflow.note.content")}
        assert run.description == w["tags"].get("mlflow.note.content")
        parent = w["tags"].get("mlflow.parentRunId")
        assert run.parent == (by_source[parent].id if parent else None)
        got = {}
        for seq in run.metrics():
            cols = seq.numpy()
            got[seq.name] = sorted(zip(cols["steps"].tolist(), cols["timestamps"].tolist(), cols["values"].tolist()))
        assert got.keys() == w["metrics"].keys()
        for key in got:
            assert _same(got[key], w["metrics"][key]), key
    parent = by_source[parent_id]
    assert parent.params["lr"] == 0.01 and parent.params["layers"] == 3 and parent.params["flag"] is True
    assert parent.params["model"] == {"depth": 4} and parent.params["big"] == 12345678901234
    assert parent.params["schedule"] == "cosine(0.1, 10)"
    weird = parent.sequence("weird").values.tolist()
    assert math.isnan(weird[0]) and weird[1:] == [math.inf, -math.inf, 7.5]
    assert [a["name"] for a in parent.artifacts] == ["notes.txt"]
    assert Path(parent.artifacts[0]["path"]).read_text() == "hello artifacts"
    assert result.points == 50 + 50 + 4 + 10 + 1 + 2000


@pytest.mark.slow
def test_contexts_idempotence_and_source_untouched(stores, tmp_path):
    uri, parent_id = stores["sqlite"]
    db = Path(uri[len("sqlite:///"):])
    before = tree_digest(db.parent)
    repo = Repo(tmp_path / "repo")
    first = importers.mlflow(uri, repo=repo)
    parent = next(r for r in first if r.name == "parent")
    assert parent.sequence("loss", {"subset": "train"}).count == 50
    assert parent.sequence("acc", {"subset": "val"}).count == 50
    again = importers.mlflow(uri, repo=repo)
    assert list(again) == [] and len(again.unchanged) == 5 and len(repo) == 5
    child = next(r for r in repo.runs() if r.name == "child")
    assert child.parent == parent.id
    forced = importers.mlflow(uri, repo=repo, force=True)
    assert len(forced) == 5 and len(repo) == 5
    new_parent = next(r for r in repo.runs() if r.name == "parent")
    assert next(r for r in repo.runs() if r.name == "child").parent == new_parent.id
    only_b = importers.mlflow(uri, repo=Repo(tmp_path / "b"), experiment="exp-b")
    assert [r.name for r in only_b] == ["still-running"]
    assert only_b[0].status == "running" and only_b[0].ended_at is None
    assert tree_digest(db.parent) == before  # the database and its artifacts were only read


@pytest.mark.slow
def test_client_path_reads_the_same(stores, tmp_path):
    """The MlflowClient path (what http(s):// servers take) gives the same runs."""
    uri, _ = stores["sqlite"]
    source, direct, _ = _mlflow.read_runs(uri)
    _, via_client, _ = _mlflow.read_runs(uri, client=True)
    assert sorted(r.source_id for r in direct) == sorted(r.source_id for r in via_client)
    by_id = {r.source_id: r for r in via_client}
    for run in direct:
        other = by_id[run.source_id]
        assert (run.name, run.status, run.created_at, run.ended_at, run.params, sorted(run.tags), run.parent_id) == \
            (other.name, other.status, other.created_at, other.ended_at, other.params, sorted(other.tags),
             other.parent_id)
        mine = {s.name: sorted(zip(s.steps.tolist(), s.timestamps.tolist(), s.values.tolist())) for s in run.series()}
        theirs = {s.name: sorted(zip(s.steps.tolist(), s.timestamps.tolist(), s.values.tolist()))
                  for s in other.series()}
        assert mine.keys() == theirs.keys() and all(_same(mine[k], theirs[k]) for k in mine)


def test_bad_sources(tmp_path):
    with pytest.raises(ImportSourceError, match="does not exist"):
        importers.mlflow(f"sqlite:///{tmp_path}/nope.db", repo=tmp_path / "r")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ImportSourceError, match="not an SQLite database"):
        importers.mlflow(f"sqlite:///{tmp_path}/junk.db", repo=tmp_path / "r")
    import sqlite3

    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(ImportSourceError, match="not an MLflow database: it has no experiments, metrics"):
        importers.mlflow(str(tmp_path / "other.db"), repo=tmp_path / "r")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ImportSourceError, match="not an MLflow file store"):
        importers.mlflow(tmp_path / "folder", repo=tmp_path / "r")
    with pytest.raises(ImportSourceError, match="postgresql:// directly"):
        importers.mlflow("postgresql://host/db", repo=tmp_path / "r")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_cli(stores, tmp_path):
    uri, _ = stores["file"]
    out = CliRunner().invoke(cli, ["import", "mlflow", uri, "--repo", str(tmp_path / "repo"),
                                   "--experiment", "exp-a"])
    assert out.exit_code == 0, out.output
    assert "Imported 4 runs from mlflow" in out.output
    bad = CliRunner().invoke(cli, ["import", "mlflow", uri, "--repo", str(tmp_path / "repo"),
                                   "--experiment", "nope"])
    assert bad.exit_code == 1 and "has no experiment named 'nope'" in bad.output


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_typed_params():
    from runstore.importers._common import typed

    assert [typed(t) for t in ("1", "-3", "0.5", "1e-3", "True", "false", "None", "adam", "nan", "007", " 2")] == \
        [1, -3, 0.5, 1e-3, True, False, None, "adam", "nan", "007", " 2"]


@pytest.mark.slow
def test_older_schema_without_run_names(stores, tmp_path):
    """Databases from before runs.name existed: the name comes from the mlflow.runName tag."""
    import sqlite3

    uri, _ = stores["sqlite"]
    old = tmp_path / "old.db"
    shutil.copy(uri[len("sqlite:///"):], old)
    with sqlite3.connect(old) as db:
        db.execute("ALTER TABLE runs DROP COLUMN name")
    repo = Repo(tmp_path / "repo")
    result = importers.mlflow(f"sqlite:///{old}", repo=repo)
    assert sorted(r.name for r in result) == ["child", "failed-one", "killed-one", "parent", "still-running"]


@pytest.mark.slow
def test_import_from_a_real_mlflow_server(stores, tmp_path):
    """`runstore import mlflow http://...` against `mlflow server` (mlflow-skinny ships it)
    serving a copy of the SQLite store: the same runs, params, tags and points as the
    direct read of the database."""
    import socket
    import time
    import urllib.request

    uri, _ = stores["sqlite"]
    db = tmp_path / "served.db"
    shutil.copyfile(uri[len("sqlite:///"):], db)  # the server may migrate its database
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=5)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "mlflow server did not start within 180 s"
                time.sleep(0.5)
        over_http = importers.mlflow(url, repo=tmp_path / "http")
        direct = importers.mlflow(uri, repo=tmp_path / "direct")
    finally:
        os.killpg(server.pid, 9)
        server.wait()

    def content(repo_path: Path) -> dict:
        out = {}
        for run in Repo(repo_path).runs():
            seqs = {(s.name, str(s.context)): (s.steps.tolist(), [repr(v) for v in s.values.tolist()])
                    for s in run.metrics()}
            params = {k: v for k, v in run.params.items() if k != "imported_from"}  # names its source
            out[run.name, run.experiment] = (run.status, run.created_at, run.ended_at, params, sorted(run.tags), seqs)
        return out

    assert len(over_http) == len(direct) > 0
    assert content(tmp_path / "http") == content(tmp_path / "direct")
