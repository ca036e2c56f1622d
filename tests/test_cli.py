"""The ``runstore`` command line (issue 7), driven through click's CliRunner and subprocesses."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import msgpack
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from runstore import Repo, Run
from runstore.cli import cli
from runstore.errors import RepositoryError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
COMMANDS = ["init", "ls", "show", "query", "diff", "tail", "plot", "experiments", "sql", "ui", "server", "sync",
            "merge", "export", "import", "rm", "archive", "unarchive", "tag", "check", "compact", "demo"]


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "repo")


@pytest.fixture
def runs(repo, tmp_path):
    """Three runs: two mnist runs with a loss curve, one failed cifar child without sequences."""
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w" * 300)
    with Run(repo=repo, experiment="mnist", name="small", tags=["cnn"]) as small:
        small["hparams"] = {"lr": 0.01, "model": {"layers": 2}}
        small.track_many([1.0, 0.5, 0.25], name="loss", context={"subset": "train"})
        small.track(0.6, name="loss", step=2, context={"subset": "val"})
        small.log_artifact(weights, kind="model")
    with Run(repo=repo, experiment="mnist", name="large") as large:
        large["hparams"] = {"lr": 0.001, "model": {"layers": 8}}
        large.track_many([0.9, 0.3], name="loss", context={"subset": "train"})
        large.track(0.4, name="loss", step=1, context={"subset": "val"})
    child = Run(repo=repo, experiment="cifar", name="other", parent=small)
    child["hparams"] = {"lr": 0.1}
    child.close("failed")
    return {"small": small, "large": large, "child": child}


def invoke(repo_path, *args, input=None, env=None):
    runner = CliRunner()
    base = [] if repo_path is None else ["--repo", str(repo_path)]
    return runner.invoke(cli, [*base, *args], input=input, env={"COLUMNS": "250", **(env or {})})


def prefix(runs: dict, name: str) -> str:
    """The shortest unique prefix of a fixture run's id (ids of one process share a long one)."""
    run_id = runs[name].id
    others = [r.id for n, r in runs.items() if n != name]
    n = next(i for i in range(1, 25) if not any(o.startswith(run_id[:i]) for o in others))
    return run_id[:n]


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


# --- entry points, help and docs ---------------------------------------------------


def test_help_lists_every_command():
    out = ok(invoke(None, "--help"))
    listed = re.findall(r"^  (\w+) ", out.split("Commands:")[1], flags=re.M)
    assert listed == COMMANDS
    assert sorted(cli.commands) == sorted(COMMANDS)


def _documented_help() -> dict[str, str]:
    text = DOCS.read_text()
    blocks = re.findall(r"```text\n\$ runstore ?(\w*) --help\n(.*?)```", text, flags=re.S)
    return {name: body for name, body in blocks}


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def test_docs_cover_every_command():
    documented = _documented_help()
    assert sorted(documented) == sorted(["", *COMMANDS])
    for name in COMMANDS:
        assert f"## `runstore {name}`" in DOCS.read_text(), name


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_docs_match_help(command):
    args = [command, "--help"] if command else ["--help"]
    actual = ok(invoke(None, *args, env={"COLUMNS": "80"}))  # docs/cli.md shows help at 80 columns
    assert _normalise(_documented_help()[command]) == _normalise(actual)


def _subprocess_env(**extra):
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **extra}


def test_python_dash_m_and_console_script(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "runstore", "--version"], capture_output=True, text=True,
                          env=_subprocess_env(), timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("runstore ")
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "runstore"]
    assert script.value == "runstore.__main__:main"
    exe = shutil.which("runstore")
    if exe is None:
        pytest.skip("the runstore console script is not on PATH (package not installed)")
    proc = subprocess.run([exe, "--repo", str(tmp_path / "r"), "init"], capture_output=True, text=True,
                          env=_subprocess_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(Repo(tmp_path / "r", create=False)) == 0


# --- repository resolution and errors -----------------------------------------------

_NEEDS_REPO = [
    ["ls"], ["show", "abc"], ["query", ""], ["export", "out"], ["rm", "--yes", "abc"], ["archive", "abc"],
    ["unarchive", "abc"], ["tag", "abc", "x"], ["check"], ["compact"],
]


@pytest.mark.parametrize("args", _NEEDS_REPO, ids=lambda a: a[0])
def test_not_a_repository_is_one_clean_line(tmp_path, args):
    missing = tmp_path / "nope"
    result = invoke(missing, *args)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "is not a runstore repository" in lines[0] and "runstore init" in lines[0]
    assert "Traceback" not in result.stderr
    assert not missing.exists()  # never created by accident


def test_existing_directory_that_is_not_a_repository(tmp_path):
    (tmp_path / "plain").mkdir()
    result = invoke(tmp_path / "plain", "ls")
    assert result.exit_code == 1 and "not a runstore repository" in result.stderr
    assert list((tmp_path / "plain").iterdir()) == []


def test_repository_from_environment_variable(runs, repo):
    out = ok(invoke(None, "ls", env={"RUNSTORE_REPO": str(repo.path)}))
    assert runs["small"].handle in out


def test_repo_option_wins_over_environment(runs, repo, tmp_path):
    result = invoke(repo.path, "ls", env={"RUNSTORE_REPO": str(tmp_path / "elsewhere")})
    assert runs["large"].handle in ok(result)


def test_default_repository_is_dot_runstore(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNSTORE_REPO", raising=False)
    result = CliRunner().invoke(cli, ["ls"], env={"RUNSTORE_REPO": None})
    assert result.exit_code == 1 and ".runstore is not a runstore repository" in result.stderr
    ok(CliRunner().invoke(cli, ["init"], env={"RUNSTORE_REPO": None}))
    assert (tmp_path / ".runstore" / "data.mdb").is_file()
    assert "0 runs" in ok(CliRunner().invoke(cli, ["ls"], env={"RUNSTORE_REPO": None}))


def test_debug_shows_the_traceback(tmp_path):
    result = invoke(None, "--debug", "--repo", str(tmp_path / "nope"), "ls")
    assert result.exit_code == 1
    assert isinstance(result.exception, RepositoryError)  # re-raised, not turned into a line
    proc = subprocess.run([sys.executable, "-m", "runstore", "--debug", "--repo", str(tmp_path / "nope"), "ls"],
                          capture_output=True, text=True, env=_subprocess_env(), timeout=60)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "RepositoryError" in proc.stderr
    plain = subprocess.run([sys.executable, "-m", "runstore", "--repo", str(tmp_path / "nope"), "ls"],
                           capture_output=True, text=True, env=_subprocess_env(), timeout=60)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("Error: ")


@pytest.mark.parametrize("args", [["frobnicate"], ["ls", "--limit", "-1"], ["ls", "--limit", "x"], ["show"],
                                  ["query"], ["query", "", "--format", "xml"], ["tag", "abc"], ["rm"],
                                  ["export"], ["export", "d", "--format", "json"], ["ls", "--nope"]])
def test_bad_arguments_exit_2(repo, args):
    result = invoke(repo.path, *args)
    assert result.exit_code == 2, result.output
    assert "Usage:" in result.stderr and "Traceback" not in result.stderr


# --- init ----------------------------------------------------------------------------


def test_init_creates_then_leaves_alone(tmp_path):
    target = tmp_path / "new" / "repo"
    out = ok(invoke(None, "init", str(target)))
    assert "Initialized" in out and (target / "data.mdb").is_file()
    with Run(repo=target) as run:
        run.track(1.0, name="x")
    out = ok(invoke(None, "init", str(target)))
    assert "already a runstore repository (1 run)" in out
    assert len(Repo(target, create=False)) == 1


def test_init_uses_repo_option(tmp_path):
    ok(invoke(tmp_path / "via-option", "init"))
    assert (tmp_path / "via-option" / "data.mdb").is_file()


def test_init_on_a_file_fails_cleanly(tmp_path):
    (tmp_path / "file").write_text("x")
    result = invoke(None, "init", str(tmp_path / "file"))
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    assert (tmp_path / "file").read_text() == "x"


# --- ls ------------------------------------------------------------------------------


def _ids_in(out: str, runs: dict) -> list[str]:
    """Names of the fixture runs in the order their handles appear in the output."""
    found = sorted((out.index(run.handle), name) for name, run in runs.items() if run.handle in out)
    return [name for _, name in found]


def test_ls_lists_newest_runs_first(runs, repo):
    out = ok(invoke(repo.path, "ls"))
    assert _ids_in(out, runs) == ["child", "large", "small"]
    for word in ("id", "name", "experiment", "status", "created", "duration", "finished", "failed", "3 runs"):
        assert word in out
    assert runs["small"].id not in out  # handles, unless --full-ids
    out = ok(invoke(repo.path, "ls", "--full-ids"))
    assert runs["small"].id in out


def test_ls_query_columns_sort_reverse_limit(runs, repo):
    out = ok(invoke(repo.path, "ls", "run.experiment == 'mnist'", "--columns",
                    "hparams.lr,loss[subset=val].last,hparams.model.layers"))
    assert _ids_in(out, runs) == ["large", "small"] and "2 runs" in out
    assert "loss[subset=val].last" in out  # printed as typed, not eaten as markup
    row = next(line for line in out.splitlines() if runs["large"].handle in line)
    assert "0.001" in row and "0.4" in row and "8" in row
    out = ok(invoke(repo.path, "ls", "--sort", "hparams.lr"))
    assert _ids_in(out, runs) == ["large", "small", "child"]
    out = ok(invoke(repo.path, "ls", "--sort", "hparams.lr", "--reverse", "--limit", "2"))
    assert _ids_in(out, runs) == ["child", "small"] and "2 of 3 runs" in out
    out = ok(invoke(repo.path, "ls", "--reverse"))
    assert _ids_in(out, runs) == ["small", "large", "child"]


def test_ls_missing_values_show_a_dash(runs, repo):
    out = ok(invoke(repo.path, "ls", "-c", "hparams.model.layers"))
    row = next(line for line in out.splitlines() if runs["child"].handle in line)
    layers = out.splitlines()[0].index("hparams.model.layers") + len("hparams.model.layers")
    assert row[:layers].rstrip().endswith("-")


def test_ls_bad_query_shows_caret(runs, repo):
    result = invoke(repo.path, "ls", "run.hparams.lr <")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert "run.hparams.lr <" in result.stderr and "^" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("option, key", [("--columns", "hparams.nope"), ("--sort", "nope"),
                                         ("--columns", "loss.last")])  # loss.last: two contexts
def test_ls_unknown_or_ambiguous_key(runs, repo, option, key):
    result = invoke(repo.path, "ls", option, key)
    assert result.exit_code == 2, result.output
    assert key.split(".")[0] in result.stderr


def test_ls_hides_archived_unless_all(runs, repo):
    ok(invoke(repo.path, "archive", prefix(runs, "large")))
    out = ok(invoke(repo.path, "ls"))
    assert _ids_in(out, runs) == ["child", "small"]
    assert "1 archived hidden (--all)" in out
    out = ok(invoke(repo.path, "ls", "--all"))
    assert _ids_in(out, runs) == ["child", "large", "small"] and "(archived)" in out


# --- show ----------------------------------------------------------------------------


def test_show_everything_about_a_run(runs, repo):
    small = runs["small"]
    out = ok(invoke(repo.path, "show", prefix(runs, "small")))
    for text in (small.id, small.handle, "small", "mnist", "finished", "cnn", runs["child"].handle, "lr = 0.01",
                 "layers = 2",
                 "subset=train", "subset=val", "0..2", "weights.bin", "model", "300 B"):
        assert text in out, text
    train = next(line for line in out.splitlines() if "subset=train" in line)
    assert train.split()[2:] == ["3", "0..2", "0.25", "0.25", "1"]  # count, steps, last, min, max


def test_show_child_names_parent_and_no_sequences(runs, repo):
    out = ok(invoke(repo.path, "show", runs["child"].id))
    assert runs["small"].handle in out and "failed" in out
    assert "sequences: (none)" in out and "artifacts: (none)" in out


def test_show_prefix_errors(runs, repo):
    common = os.path.commonprefix([r.id for r in runs.values()])
    result = invoke(repo.path, "show", common)
    assert result.exit_code == 1 and "ambiguous" in result.stderr and "3 runs match" in result.stderr
    for run in runs.values():  # the candidates, with their names
        assert run.handle in result.stderr and run.name in result.stderr
    result = invoke(repo.path, "show", "zzzz")
    assert result.exit_code == 1 and "no run id or handle starts with 'zzzz'" in result.stderr
    result = invoke(repo.path, "show", "f" * 24)
    assert result.exit_code == 1 and "Error: " in result.stderr


# --- query ---------------------------------------------------------------------------


def test_query_table(runs, repo):
    out = ok(invoke(repo.path, "query", "run.hparams.lr >= 0.01"))
    assert _ids_in(out, runs) == ["small", "child"]  # creation order
    assert "hparams.lr" in out


def test_query_csv_and_json(runs, repo):
    rows = list(csv.DictReader(io.StringIO(ok(invoke(repo.path, "query", "", "--format", "csv")))))
    assert [r["id"] for r in rows] == [runs[n].id for n in ("small", "large", "child")]
    assert rows[0]["hparams.lr"] == "0.01" and json.loads(rows[0]["tags"]) == ["cnn"]
    data = json.loads(ok(invoke(repo.path, "query", "run.experiment == 'mnist'", "-f", "json")))
    assert [d["name"] for d in data] == ["small", "large"]
    assert data[1]["hparams.model.layers"] == 8 and data[0]["tags"] == ["cnn"]


def test_query_sequences_long_form(runs, repo):
    text = ok(invoke(repo.path, "query", "seq.name == 'loss' and seq.context.subset == 'train'", "-s", "-f", "csv"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 5
    assert [float(r["value"]) for r in rows if r["run_id"] == runs["small"].id] == [1.0, 0.5, 0.25]
    assert {r["context.subset"] for r in rows} == {"train"}
    out = ok(invoke(repo.path, "query", "run.name == 'large'", "--sequences"))
    assert "context.subset" in out and "0.9" in out


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "csv", "json", "table"])
def test_query_to_file(runs, repo, tmp_path, fmt):
    target = tmp_path / f"out.{fmt}"
    result = invoke(repo.path, "query", "", "-s", "-f", fmt, "-o", str(target))
    assert result.exit_code == 0 and result.stdout == ""
    assert "wrote 4 sequences" in result.stderr
    if fmt == "parquet":
        table = pq.read_table(target)
    elif fmt == "arrow":
        with pa.memory_map(str(target)) as source:
            table = pa.ipc.open_file(source).read_all()
    if fmt in ("parquet", "arrow"):
        assert table.num_rows == 7
        assert set(table.column_names) >= {"run_id", "name", "step", "value", "epoch", "timestamp"}
    elif fmt == "csv":
        assert len(list(csv.DictReader(target.open()))) == 7
    elif fmt == "json":
        assert len(json.loads(target.read_text())) == 7
    else:
        assert runs["small"].handle in target.read_text()


def test_query_parquet_to_stdout_when_not_a_terminal(runs, repo, tmp_path):
    result = invoke(repo.path, "query", "", "-f", "parquet")
    assert result.exit_code == 0
    path = tmp_path / "stdout.parquet"
    path.write_bytes(result.stdout_bytes)
    assert pq.read_table(path).num_rows == 3


def test_query_syntax_error(runs, repo):
    result = invoke(repo.path, "query", "run.name == ")
    assert result.exit_code == 1 and "^" in result.stderr and "Traceback" not in result.stderr


# --- export --------------------------------------------------------------------------


def test_export_parquet_partitioned_by_run(runs, repo, tmp_path):
    dest = tmp_path / "export"
    result = invoke(repo.path, "export", str(dest))
    assert result.exit_code == 0, result.output
    assert "exported 3 runs, 4 sequences (7 points)" in result.stdout
    assert pq.read_table(dest / "runs.parquet").num_rows == 3
    parts = sorted(p.relative_to(dest).as_posix() for p in (dest / "sequences").rglob("*.parquet"))
    assert parts == sorted(f"sequences/run_id={runs[n].id}/part-0.parquet" for n in ("small", "large"))
    table = ds.dataset(dest / "sequences", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 7
    small = table.filter(ds.field("run_id") == runs["small"].id)
    assert sorted(small["value"].to_pylist()) == [0.25, 0.5, 0.6, 1.0]


def test_export_is_readable_by_polars(runs, repo, tmp_path):
    pl = pytest.importorskip("polars")
    dest = tmp_path / "export"
    ok(invoke(repo.path, "export", str(dest)))
    frame = pl.scan_parquet(str(dest / "sequences" / "**" / "*.parquet"), hive_partitioning=True).collect()
    assert frame.height == 7
    last = (frame.filter(pl.col("context.subset") == "val").sort("run_id")
            .select("run_id", "value").rows())
    assert sorted(last) == sorted([(runs["small"].id, 0.6), (runs["large"].id, 0.4)])


def test_export_by_experiment_with_query_and_csv(runs, repo, tmp_path):
    dest = tmp_path / "export"
    ok(invoke(repo.path, "export", str(dest), "run.experiment == 'mnist'", "--partition-by", "experiment",
              "--format", "csv"))
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.csv"))
    assert files == sorted(["runs.csv", f"sequences/experiment=mnist/{runs['small'].id}.csv",
                            f"sequences/experiment=mnist/{runs['large'].id}.csv"])
    rows = list(csv.DictReader((dest / "sequences" / "experiment=mnist" / f"{runs['large'].id}.csv").open()))
    assert [float(r["value"]) for r in rows] == [0.9, 0.3, 0.4]
    assert len(list(csv.DictReader((dest / "runs.csv").open()))) == 2


def test_export_refuses_to_mix_with_an_earlier_export(runs, repo, tmp_path):
    dest = tmp_path / "export"
    ok(invoke(repo.path, "export", str(dest)))
    result = invoke(repo.path, "export", str(dest), "run.name == 'small'")
    assert result.exit_code == 1 and "--overwrite" in result.stderr
    ok(invoke(repo.path, "export", str(dest), "run.name == 'small'", "--overwrite"))
    assert pq.read_table(dest / "runs.parquet").num_rows == 1
    assert len(list((dest / "sequences").iterdir())) == 1


def test_export_empty_selection(runs, repo, tmp_path):
    out = ok(invoke(repo.path, "export", str(tmp_path / "e"), "run.name == 'nobody'"))
    assert "exported 0 runs" in out
    assert pq.read_table(tmp_path / "e" / "runs.parquet").num_rows == 0


# --- rm / archive / unarchive / tag --------------------------------------------------


def test_rm_with_yes(runs, repo):
    out = ok(invoke(repo.path, "rm", "--yes", prefix(runs, "small"), runs["child"].id))
    assert f"deleted {runs['small'].handle} ({runs['small'].id})" in out
    assert [r.id for r in repo.runs()] == [runs["large"].id]
    assert not (repo.path / "artifacts" / runs["small"].id).exists()


def test_rm_asks_first(runs, repo):
    result = invoke(repo.path, "rm", runs["small"].id, input="n\n")
    assert result.exit_code == 1 and "Delete this run?" in result.output
    assert len(repo) == 3
    result = invoke(repo.path, "rm", runs["small"].id, runs["large"].id, input="y\n")
    assert result.exit_code == 0 and "Delete these 2 runs?" in result.output
    assert [r.id for r in repo.runs()] == [runs["child"].id]


def test_rm_resolves_every_id_before_deleting(runs, repo):
    result = invoke(repo.path, "rm", "--yes", runs["small"].id, "nothere")
    assert result.exit_code == 1 and "nothere" in result.stderr
    assert len(repo) == 3


def test_archive_and_unarchive(runs, repo):
    out = ok(invoke(repo.path, "archive", runs["small"].id, prefix(runs, "large")))
    assert out.count("archived") == 2
    assert repo.get_run(runs["small"].id).archived and repo.get_run(runs["large"].id).archived
    assert repo.get_run(runs["small"].id).status == "finished"  # archiving does not resume the run
    ok(invoke(repo.path, "unarchive", runs["small"].id))
    assert not repo.get_run(runs["small"].id).archived
    assert repo.get_run(runs["large"].id).archived


def test_tag_add_and_remove(runs, repo):
    run_id = runs["large"].id
    out = ok(invoke(repo.path, "tag", prefix(runs, "large"), "best", "v2"))
    assert "best, v2" in out
    assert repo.get_run(run_id).tags == ["best", "v2"]
    ok(invoke(repo.path, "tag", run_id, "best", "--remove"))
    assert repo.get_run(run_id).tags == ["v2"]
    assert len(repo.query("'v2' in run.tags")) == 1


# --- check / compact / demo ----------------------------------------------------------


def test_check_clean_and_corrupt(runs, repo):
    out = ok(invoke(repo.path, "check"))
    assert "ok: 3 runs" in out and "no problems" in out
    env = repo._env  # corrupt it on purpose: params of a run that does not exist
    env.write(lambda txn: txn.put(bytes(12), msgpack.packb({"lr": 1}), db=env.dbs["params"]))
    result = invoke(repo.path, "check")
    assert result.exit_code == 1
    assert "problem: params of run 000000000000000000000000 belong to no run" in result.stdout
    assert "1 problem found" in result.stderr


def test_compact_after_rm(runs, repo):
    with Run(repo=repo, name="big") as big:
        big.track_many(list(range(200_000)), name="x")
    ok(invoke(repo.path, "rm", "--yes", big.id))
    out = ok(invoke(repo.path, "compact"))
    before, after = re.search(r"compacted .*: ([\d.]+ \w+) -> ([\d.]+ \w+)", out).groups()
    assert before != after
    assert ok(invoke(repo.path, "check")).startswith("ok: 3 runs")
    assert repo.get_run(runs["small"].id).sequence("loss", context={"subset": "train"}).count == 3


def test_demo_into_repo_option(tmp_path):
    target = tmp_path / "demo"
    out = ok(invoke(target, "demo"))
    assert "trained 5 runs" in out and "repo.query(" in out
    assert len(Repo(target, create=False)) == 5
    ls = ok(invoke(target, "ls", "--columns", "hparams.lr", "--sort", "hparams.lr"))
    assert "5 runs" in ls and ls.index("0.003") < ls.index("0.3 ")
