"""The commands added for the terminal (issue 12): diff, tail, plot, experiments."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from runstore import Repo, Run
from runstore.cli.live import sparkline
from runstore.cli import cli

from test_cli_terminal import ANSI, _pty_run, assert_fits  # noqa: F401  (shared pty helper)


@pytest.fixture
def repo(tmp_path):
    repo = Repo(tmp_path / "repo")
    for i, (exp, status) in enumerate([("mnist", "finished"), ("mnist", "failed"), ("cifar", "finished")]):
        run = Run(repo=repo, experiment=exp, name=f"run-{i}", tags=["t"] if i else [])
        run["hparams"] = {"lr": [0.1, 0.01, 0.1][i], "batch": 32, "opt": ["sgd", "sgd", "adam"][i]}
        run.track_many([1.0 - 0.1 * s - 0.01 * i for s in range(8)], name="loss", context={"subset": "train"})
        run.track(0.5 + i, name="loss", step=7, context={"subset": "val"})
        run.track(0.8 + 0.05 * i, name="acc", step=7, context={"subset": "val"})
        if i == 0:
            run.track(3.0, name="only_first")
        run.close(status)
    return repo


def invoke(repo, *args, width=80, input=None):
    return CliRunner().invoke(cli, ["--repo", str(repo.path), *args], env={"COLUMNS": str(width)}, input=input)


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


# -- diff ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 120])
def test_diff_params_metrics_attributes(repo, width):
    a, b, c = repo.query("")
    out = ok(invoke(repo, "diff", a.handle, b.handle[:5], c.id, width=width))
    assert_fits(out, width)
    params = out.split("params that differ")[1].split("\n\n")[0]
    assert "hparams.lr" in params and "hparams.opt" in params and "hparams.batch" not in params
    assert "1 param the same (--all shows them)" in out
    assert re.search(r"hparams\.lr\s+0\.1\s+0\.01\s+0\.1", params)
    metrics = out.split("metrics (shared)")[1]
    assert "loss@subset=val.last" in metrics and "acc.max" in metrics and "only_first" not in metrics
    assert re.search(r"loss@subset=val\.last\s+0\.5\s+1\.5\s+2\.5", metrics)
    attrs = out.split("attributes that differ")[1]
    assert "experiment" in attrs and "status" in attrs and "failed" in attrs
    assert "host" not in attrs  # the same for all three
    full = ok(invoke(repo, "diff", a.handle, b.handle, "--all", "--full-ids", width=200))
    assert a.id in full and "hparams.batch" in full and "host" in full


def test_diff_needs_two_different_runs(repo):
    a = repo.query("")[0]
    result = invoke(repo, "diff", a.handle, a.id)
    assert result.exit_code == 2 and "two different runs" in result.stderr
    result = invoke(repo, "diff", a.handle, "zzzz")
    assert result.exit_code == 1 and "zzzz" in result.stderr


# -- experiments -------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 120])
def test_experiments(repo, width):
    out = ok(invoke(repo, "experiments", "--metric", "acc@subset=val.max", width=width))
    assert_fits(out, width)
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["experiment", "runs"]
    cifar = next(line for line in lines if line.startswith("cifar"))
    mnist = next(line for line in lines if line.startswith("mnist"))
    assert lines.index(cifar) < lines.index(mnist)  # most recently active first
    runs = repo.query("")
    assert "0.9" in cifar and runs[2].handle in cifar
    assert "0.85" in mnist and runs[1].handle in mnist  # the best (max) of 0.8 and 0.85
    assert re.match(r"mnist\s+2\s+1\s+1\b", mnist)  # runs, finished, failed
    assert "killed" not in lines[0] and "running" not in lines[0]  # no run has these statuses
    out = ok(invoke(repo, "experiments", "--metric", "loss@subset=val.last", width=200))
    assert "min loss@subset=val.last" in out  # a loss: lower is better
    assert re.search(r"mnist.*\b0\.5\b", out)


# -- tail ----------------------------------------------------------------------------------------


def test_sparkline():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1, 1, 1]) == "▄▄▄"
    assert len(sparkline(range(1000), 20)) == 20 and sparkline([]) == ""


def test_tail_a_finished_run_prints_once(repo):
    run = repo.query("")[0]
    result = invoke(repo, "tail", run.handle)
    out = ok(result)
    assert_fits(out, 80)
    assert "loss@subset=train" in out and "acc@subset=val" in out and "▁" in out
    assert f"run {run.handle} finished" in result.stderr
    out = ok(invoke(repo, "tail", run.handle, "--metric", "acc"))
    assert "acc" in out and "loss" not in out.split("\n", 1)[1]


WRITER = """
import sys, time
from runstore import Repo, Run
repo = Repo(sys.argv[1], flush_interval=0.05)
run = Run(repo=repo, name="live")
print(run.id, flush=True)
for i in range(30):
    run.track(float(i), name="loss", step=i)
    time.sleep(0.05)
run.close()
"""


def test_tail_follows_a_live_run_until_it_ends(repo, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(repo.path)], stdout=subprocess.PIPE, text=True,
                            env=env)
    run_id = proc.stdout.readline().strip()
    started = time.time()
    # Another process sees a new run within its flush interval (creation has no commit
    # of its own: docs/storage.md); a user typing the id is slower than that.
    while run_id not in Repo(repo.path, readonly=True) and time.time() - started < 20:
        time.sleep(0.01)
    result = invoke(repo, "tail", run_id[:14], "--interval", "0.1")
    proc.wait(timeout=60)
    out = ok(result)
    assert time.time() - started > 0.5  # it waited for the run
    assert re.search(r"loss\s+29\s+29\b", out)  # the last step and value, after the run ended
    assert "finished" in result.stderr


def test_tail_in_a_terminal_ends_cleanly_on_ctrl_c(repo):
    live = Run(repo=repo, name="forever")
    live.track(1.0, name="loss")
    live.flush()
    try:
        import fcntl  # noqa: F401 - the pty helper needs it
        proc_out = _tail_interrupted(repo, live.handle)
    finally:
        live.close()
    code, out = proc_out
    assert code == 0, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert "stopped following" in out and "forever" in out
    assert_fits(out, 80)


def _tail_interrupted(repo, handle):
    import pty
    import select
    import struct
    import termios
    import fcntl

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update({"PYTHONPATH": os.pathsep.join(sys.path), "TERM": "xterm-256color"})
    proc = subprocess.Popen([sys.executable, "-m", "runstore", "--repo", str(repo.path), "tail", handle,
                             "--interval", "0.2"], stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    chunks = []
    deadline = time.time() + 60
    sent = False
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        if not sent and b"forever" in b"".join(chunks):
            time.sleep(0.5)  # a refresh or two
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
            sent = True
        if proc.poll() is not None and not ready:
            break
    proc.wait(timeout=30)
    os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return proc.returncode, ANSI.sub("", text)


# -- plot ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 120])
def test_plot_one_line_per_run_with_a_legend(repo, width):
    out = ok(invoke(repo, "plot", "run.experiment == 'mnist'", "--metric", "loss@subset=train", width=width))
    assert_fits(out, width)
    assert "run-0" in out and "run-1" in out and "run-2" not in out  # legend by run name
    assert "loss@subset=train" in out.splitlines()[0] and "step" in out
    assert "\x1b[" not in out  # not a terminal: no colour
    assert sum(ch in "▀▄▌▐▖▗▘▝▚▞▛▜▙▟█" for ch in out) > 10  # curves were drawn


@pytest.mark.parametrize("axis", ["epoch", "time"])
def test_plot_other_axes(repo, axis):
    out = ok(invoke(repo, "plot", "", "--metric", "acc", "--x", axis))
    assert {"epoch": "epoch", "time": "seconds"}[axis] in out


def test_plot_unknown_metric(repo):
    result = invoke(repo, "plot", "", "--metric", "nope")
    assert result.exit_code == 2 and "nope" in result.stderr
