"""The terminal experience (issue 12): tables that fit 80 and 120 columns, short handles, colour."""

from __future__ import annotations

import os
import re
import select
import struct
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from runstore import AmbiguousRunError, Repo, Run, RunNotFoundError
from runstore.cli import table as T
from runstore.tracking.handles import HANDLE_LENGTH, handle
from runstore.cli import cli

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
LONG_NAME = "resnet50-imagenet-cosine-warmup-label-smoothing-mixup-0.2"


@pytest.fixture(scope="module")
def wide_repo(tmp_path_factory):
    """A repository that does not fit 80 columns: long names, many params and metrics, 25 runs."""
    repo = Repo(tmp_path_factory.mktemp("wide") / "repo")
    for i in range(25):
        status = ("finished", "failed", "killed")[i % 3]
        run = Run(repo=repo, experiment="imagenet-long-experiment-name", name=f"{LONG_NAME}-{i}", tags=["a", "b"])
        run["hparams"] = {"lr": 10 ** -(i % 5) * 3.14159, "batch_size": 256, "optimizer": "adamw",
                          "weight_decay": 0.05 if i % 2 else 0.1, "seed": i, "dropout": 0.1}
        run.track_many([1.0 / (s + 1) + i * 1e-3 for s in range(5)], name="loss", context={"subset": "train"})
        run.track(0.123456789 + i, name="loss", step=4, context={"subset": "val"})
        run.track(0.7 + i / 100, name="acc", step=4, context={"subset": "val"})
        run.track(123456789.5 * (i + 1), name="throughput", step=4)
        run.track(1e-7 * (i + 1), name="grad_norm", step=4)
        run.close(status)
    return repo


def invoke(repo, *args, width=80, env=None):
    runner = CliRunner()
    return runner.invoke(cli, ["--repo", str(repo.path), *args], env={"COLUMNS": str(width), **(env or {})})


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def assert_fits(out: str, width: int) -> None:
    for line in out.splitlines():
        assert len(ANSI.sub("", line)) <= width, f"{len(line)} > {width}: {line!r}"


def assert_whole(out: str, words: list[str]) -> None:
    """Each word appears whole on one line (a number, id or name broken across lines would not)."""
    for word in words:
        assert word in out, word


COMMANDS = [
    ["ls"], ["ls", "--all"], ["ls", "--columns", "hparams.lr,loss@subset=val.last,hparams.optimizer"],
    ["ls", "--sort", "acc@subset=val.last", "-r"], ["ls", "--absolute"], ["ls", "--full-ids"],
    ["query", ""], ["query", "run.hparams.seed < 3", "--sequences"], ["query", "", "--columns", "hparams.lr"],
    ["show", "{handle}"], ["--help"], ["ls", "--help"], ["query", "--help"], ["show", "--help"],
    ["export", "--help"], ["tag", "{handle}", "best"], ["archive", "{handle}"], ["unarchive", "{handle}"],
    ["check"], ["diff", "{handle}", "{handle2}"], ["diff", "{handle}", "{handle2}", "--all", "--full-ids"],
    ["tail", "{handle}"], ["plot", "", "--metric", "loss@subset=train"], ["experiments", "--metric", "acc.max"],
    ["experiments", "--absolute"],
]


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: "-".join(a)[:40])
def test_every_command_fits(wide_repo, args, width):
    first, second = wide_repo.query("")[:2]
    args = [a.replace("{handle}", first.handle).replace("{handle2}", second.handle) for a in args]
    out = ok(invoke(wide_repo, *args, width=width))
    assert out.strip()
    assert_fits(out, width)
    if args[0] in ("ls", "query") and "--help" not in args:
        ids = re.findall(r"^(\S+)\s", out, flags=re.M)[1:]
        handles = {r.handle for r in wide_repo.runs()}
        full = {r.id for r in wide_repo.runs()}
        rows = [i for i in ids if i in handles or i in full]
        assert rows, out  # every row starts with a whole handle (or id)
        for line in out.splitlines():
            for number in re.findall(r"(?<![\w.])\d[\d.e+-]*…", line):
                pytest.fail(f"a number was cut: {number!r} in {line!r}")


@pytest.mark.parametrize("width", [80, 120])
def test_maintenance_commands_fit(tmp_path, monkeypatch, width):
    """init, demo, export, rm, compact, and an ambiguous name, with a short repository path."""
    monkeypatch.chdir(tmp_path)
    env = {"COLUMNS": str(width), "RUNSTORE_REPO": None}
    runner = CliRunner(mix_stderr=False) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else CliRunner()
    outputs = []
    for args in (["init", "r"], ["--repo", "d", "demo"], ["--repo", "d", "demo"], ["--repo", "d", "export", "x"],
                 ["--repo", "d", "compact"], ["--repo", "d", "experiments"]):
        result = runner.invoke(cli, args, env=env)
        assert result.exit_code == 0, (args, result.output)
        outputs.append(result.stdout + result.stderr)
    repo = Repo("d", create=False)
    victim = repo.query("")[0]
    result = runner.invoke(cli, ["--repo", "d", "rm", victim.handle], input="y\n", env=env)
    assert result.exit_code == 0
    outputs.append(result.output)
    runs = repo.runs()
    for width_prefix in range(1, 9):  # an ambiguous prefix: its error lists the candidates within the width
        groups = {}
        for run in runs:
            groups.setdefault(run.handle[:width_prefix], []).append(run)
        shared = [k for k, v in groups.items() if len(v) > 1]
        if shared:
            break
    if shared:
        result = runner.invoke(cli, ["--repo", "d", "show", shared[0]], env=env)
        assert result.exit_code == 1 and "ambiguous" in result.stderr
        outputs.append(result.stderr)
    for out in outputs:
        assert_fits(out, width)


def test_ls_at_80_columns_keeps_numbers_whole_and_names_what_it_hides(wide_repo):
    out = ok(invoke(wide_repo, "ls", "--columns", "throughput.last,grad_norm.last,hparams.lr"))
    assert_fits(out, 80)
    throughput = [T.fmt_number(123456789.5 * (i + 1)) for i in range(25)]
    shown = [t for t in throughput if t in out]
    assert len(shown) == 20  # the 20 newest runs, every value whole
    assert "2.5e-6" in out or "2.5e-06" in out  # grad_norm of the newest run, scientific
    assert "hidden to fit:" in out and "--wide" in out
    assert "…" in out  # the long run names are shortened, not wrapped
    assert "20 of 25 runs" in out and "--limit N or --all" in out
    wide = ok(invoke(wide_repo, "ls", "--wide", "--columns", "throughput.last"))
    assert "hidden to fit" not in wide and f"{LONG_NAME}-24" in wide and "imagenet-long-experiment-name" in wide


def test_ls_default_shows_common_metrics(wide_repo):
    out = ok(invoke(wide_repo, "ls", width=200))
    header = out.splitlines()[0].split()
    assert header[:3] == ["id", "name", "status"]
    for column in ("loss@subset=train", "loss@subset=val", "acc", "throughput", "grad_norm"):
        assert column in header
    newest = wide_repo.query("")[-1]
    row = next(line for line in out.splitlines() if line.startswith(newest.handle))
    assert "0.94" in row  # acc's last value of the newest run
    assert "metrics show last values" in out


def test_columns_are_dropped_by_priority(wide_repo):
    out = ok(invoke(wide_repo, "ls", "--columns", "hparams.lr", width=60))
    assert_fits(out, 60)
    header = out.splitlines()[0].split()
    assert header[0] == "id" and "name" in header and "status" in header
    assert "duration" not in header  # the lowest priority goes first
    assert re.search(r"hidden to fit: .*duration", out.replace("\n", " "))


def test_query_columns_by_variance(wide_repo):
    out = ok(invoke(wide_repo, "query", "", width=200))
    header = out.splitlines()[0].split()
    assert "hparams.seed" in header and "hparams.lr" in header and "hparams.weight_decay" in header
    assert header.index("hparams.seed") < header.index("hparams.weight_decay")  # more distinct values first
    assert "hparams.batch_size" not in header and "hparams.optimizer" not in header
    assert "same in all 25 runs: hparams.batch_size=256" in out and "hparams.optimizer=adamw" in out
    out = ok(invoke(wide_repo, "query", "", "--columns", "hparams.optimizer", width=200))
    assert out.splitlines()[0].split()[:4] == ["id", "name", "status", "hparams.optimizer"]
    assert "hparams.seed" not in out


def test_relative_and_absolute_times(wide_repo):
    out = ok(invoke(wide_repo, "ls", "--columns", "hparams.seed", width=200))
    assert re.search(r"\d+ s ago|\d+ min ago", out)
    out = ok(invoke(wide_repo, "ls", "--columns", "hparams.seed", "--absolute", width=200))
    assert re.search(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d", out)


def test_plain_unless_format_table(wide_repo):
    out = ok(invoke(wide_repo, "ls"))
    assert "─" not in out and "\x1b[" not in out  # not a terminal: plain
    out = ok(invoke(wide_repo, "ls", "--format", "table"))
    assert "─" in out.splitlines()[1]
    assert_fits(out, 80)
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(ok(invoke(wide_repo, "ls", "--format", "csv", "-n", "3")))))
    assert len(rows) == 3 and len(rows[0]["id"]) == 24 and rows[0]["created_at"].endswith("+00:00")


# -- handles ---------------------------------------------------------------------------------


def test_handles_are_short_unique_and_resolve(wide_repo):
    runs = wide_repo.runs()
    handles = [r.handle for r in runs]
    assert all(len(h) == HANDLE_LENGTH and re.fullmatch(r"[0-9a-hjkmnp-tv-z]+", h) for h in handles)
    assert len(set(handles)) == len(handles)
    for run in runs:
        assert wide_repo.get_run(run.handle).id == run.id
        assert wide_repo.get_run(run.handle.upper()).id == run.id
        assert wide_repo.get_run(run.id).id == run.id
        unique = next(h for n in range(1, 9) if sum(x.startswith(h := run.handle[:n]) for x in handles) == 1)
        assert wide_repo.get_run(unique).id == run.id  # the shortest unique prefix


def test_handles_spread_even_for_ids_made_together():
    ids = [f"01a2044486179b12ab0d{n:04x}" for n in range(1000)]  # one process, consecutive random parts
    handles = {handle(i) for i in ids}
    assert len(handles) == 1000
    assert len({h[:3] for h in handles}) > 900  # not a shared prefix: three characters nearly always do


def test_ambiguous_prefix_lists_candidates(wide_repo):
    runs = wide_repo.runs()
    common = os.path.commonprefix([r.id for r in runs])
    with pytest.raises(AmbiguousRunError) as info:
        wide_repo.get_run(common)
    assert len(info.value.candidates) == 25
    message = str(info.value)
    assert "25 runs match" in message and "and 17 more" in message
    assert runs[0].handle in message and runs[0].name[:39] in message and "created" in message
    assert all(len(line) <= 80 for line in message.splitlines())
    first = {}
    for run in runs:
        first.setdefault(run.handle[0], []).append(run)
    letter, pair = next((k, v) for k, v in first.items() if len(v) > 1)
    result = invoke(wide_repo, "show", letter)
    assert result.exit_code == 1 and "ambiguous" in result.stderr
    for run in pair:
        assert run.handle in result.stderr and run.name[:39] in result.stderr
    with pytest.raises(RunNotFoundError):
        wide_repo.get_run("uuuu")  # u is not in the alphabet


@pytest.mark.parametrize("command", [["show"], ["tag", "_", "x"], ["archive"], ["rm", "--yes"]])
def test_commands_accept_handles(tmp_path, command):
    repo = Repo(tmp_path / "r")
    with Run(repo=repo, name="one") as run:
        run.track(1.0, name="x")
    args = [run.handle[:5] if a == "_" else a for a in command]
    if "_" not in command:
        args.append(run.handle)
    result = CliRunner().invoke(cli, ["--repo", str(repo.path), *args])
    assert result.exit_code == 0, result.output
    assert run.handle in result.stdout


# -- the bracket-free key spelling -------------------------------------------------------------


def test_at_spelling_everywhere(wide_repo):
    runs = wide_repo.query("")
    assert runs.to_list("acc@subset=val.last") == runs.to_list("acc[subset=val].last")
    run = runs[0]
    assert run.get("loss@subset=val.max") == run.get("loss[subset=val].max")
    out = ok(invoke(wide_repo, "ls", "--sort", "loss@subset=val.last", "-n", "2", "--columns",
                    "loss@subset=val.last", width=200))
    assert "0.123457" in out and "loss@subset=val.last" in out
    result = invoke(wide_repo, "ls", "--columns", "loss.last")
    assert result.exit_code == 2 and "loss@subset=" in result.stderr  # the suggestion uses the new spelling


# -- formatting units ----------------------------------------------------------------------


@pytest.mark.parametrize("value, text", [(0.788753, "0.788753"), (3e-05, "3e-5"), (1500, "1500"), (0.0, "0"),
                                         (123456789.0, "123456789"), (1234567890123.5, "1.2346e12"),
                                         (float("nan"), "nan"), (-2.5e-12, "-2.5e-12"), (True, "True"),
                                         (10**12, "1e+12")])
def test_fmt_number(value, text):
    assert T.fmt_number(value) == text.replace("1e+12", T.fmt_number(10**12))
    assert len(T.fmt_number(value)) <= 9


def test_fmt_ago():
    now = 1_000_000_000.0
    assert T.fmt_ago(now - 5, now) == "5 s ago"
    assert T.fmt_ago(now - 180, now) == "3 min ago"
    assert T.fmt_ago(now - 5 * 3600, now) == "5 h ago"
    assert T.fmt_ago(now - 3 * 86400, now) == "3 d ago"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", T.fmt_ago(now - 90 * 86400, now))


# -- colour and a real terminal ----------------------------------------------------------------


def _pty_run(args, columns, env_extra=None):
    """Run the CLI in a real pseudo-terminal of ``columns`` x 24; return what the terminal got."""
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update({"PYTHONPATH": os.pathsep.join(sys.path), "TERM": "xterm-256color", **(env_extra or {})})
    proc = subprocess.Popen([sys.executable, "-m", "runstore", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.time() + 60
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


@pytest.mark.parametrize("columns", [80, 120])
def test_real_pty(wide_repo, columns):
    code, out = _pty_run(["--repo", str(wide_repo.path), "ls"], columns)
    assert code == 0, out
    assert_fits(out, columns)
    assert re.search(r"\x1b\[[0-9;]*32m(\x1b\[[0-9;]*m)*finished", out)  # green: finished
    assert re.search(r"\x1b\[[0-9;]*31m(\x1b\[[0-9;]*m)*failed", out)  # red: failed
    assert re.search(r"\x1b\[[0-9;]*33m(\x1b\[[0-9;]*m)*killed", out)  # yellow: killed
    assert "─" in out  # the header rule of a terminal table
    plain = ANSI.sub("", out)
    newest = wide_repo.query("")[-1]
    assert plain.splitlines()[2].startswith(newest.handle)
    code, out = _pty_run(["--repo", str(wide_repo.path), "ls"], columns, {"NO_COLOR": "1"})
    assert code == 0 and not re.search(r"\x1b\[[0-9;]*3[0-7]m", out)  # no colour with NO_COLOR
    code, out = _pty_run(["--repo", str(wide_repo.path), "--no-color", "ls"], columns)
    assert code == 0 and not re.search(r"\x1b\[[0-9;]*3[0-7]m", out)


def test_help_wraps_to_the_terminal():
    # A real process: click's CliRunner forces help to 80 columns whatever $COLUMNS says.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    outs = {}
    for width in (80, 120):
        proc = subprocess.run([sys.executable, "-m", "runstore", "ls", "--help"], capture_output=True, text=True,
                              env={**env, "COLUMNS": str(width)}, timeout=60)
        assert proc.returncode == 0
        assert_fits(proc.stdout, width)
        outs[width] = proc.stdout
    assert len(outs[80].splitlines()) > len(outs[120].splitlines())
    words = lambda text: text.split()  # noqa: E731 - the same words, wrapped differently: none broken
    assert words(outs[80]) == words(outs[120])
