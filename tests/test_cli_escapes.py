"""Escape sequences in names and values never reach a terminal raw (issue 20, item 10).

A run name like "\\x1b]0;pwned\\x07" would retitle the terminal of whoever runs
`runstore ls`; "\\x1b[2J" would clear it. The CLI shows them escaped; csv/json written
to a file or a pipe keep the exact text (json escapes them itself)."""

import json
import re

import pytest
from click.testing import CliRunner

from runstore import Repo, Run, Text
from runstore.cli import cli
from runstore.cli import table as T

OSC, CLEAR = "\x1b]0;pwned\x07", "\x1b[2J"
EVIL = f"a{OSC}b{CLEAR}c\x9bd\u202ee\rf"
RAW = ("\x1b]", CLEAR, "\x07", "\x9b", "\u202e", "\r")
SGR = re.compile(r"\x1b\[[0-9;]*m")  # the colour rich adds on a terminal


@pytest.fixture(scope="module")
def evil_repo(tmp_path_factory):
    repo = Repo(tmp_path_factory.mktemp("evil") / "repo")
    for i in range(2):
        with Run(repo=repo, name=f"{EVIL}{i}", experiment=EVIL, tags=[EVIL], description=EVIL) as run:
            run["hparams"] = {EVIL: EVIL, "lr": 0.1 * (i + 1), "note": f"{EVIL}{i}"}
            run.track_many([1.0, 0.5], name=EVIL, context={EVIL: EVIL})
            run.track(Text(EVIL), name="sample")  # a text sequence's values are shown too
    return repo


def _outputs(repo, terminal, monkeypatch):
    monkeypatch.setattr(T, "is_terminal", lambda stream=None: terminal)
    ids = [r.id for r in repo.runs()]
    env = {"COLUMNS": "200", "FORCE_COLOR": "1" if terminal else None, "NO_COLOR": None}
    commands = [["ls"], ["ls", "-f", "csv"], ["show", ids[0]], ["query", ""], ["query", "", "-f", "csv"],
                ["query", "--sequences", 'seq.type == "float"'], ["diff", *ids], ["tail", ids[0]], ["experiments"],
                ["ls", "-c", "hparams.note"], ["show", EVIL]]  # the last: an error naming it
    for args in commands:
        result = CliRunner().invoke(cli, ["--repo", str(repo.path), *args], env=env)
        assert result.exit_code == (1 if args[-1] == EVIL else 0), (args, result.output, result.exception)
        yield args, result.stdout + result.stderr


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_controls_are_shown_escaped(evil_repo, terminal, monkeypatch):
    seen = {}
    for args, out in _outputs(evil_repo, terminal, monkeypatch):
        if terminal and args[0] != "tail":  # tail redraws with rich's cursor codes
            assert "\x1b" not in SGR.sub("", out), (args, out)
        for raw in RAW:
            if "csv" in args and not terminal:
                continue  # a pipe gets the exact bytes (below)
            if raw == "\r" and terminal and args[0] == "tail":
                continue  # rich's own redraw
            assert raw not in out, (args, raw, out)
        seen[" ".join(args)] = out
    assert "\\x1b]0;pwned\\x07" in seen["ls"] and "\\x1b[2J" in seen["ls"]
    assert "\\x1b]0;pwned\\x07b\\x1b[2Jc\\x9bd\\u202ee\\rf" in seen[f"show {evil_repo.runs()[0].id}"]


def test_csv_and_json_to_a_pipe_are_exact(evil_repo, monkeypatch):
    monkeypatch.setattr(T, "is_terminal", lambda stream=None: False)
    out = CliRunner().invoke(cli, ["--repo", str(evil_repo.path), "ls", "-f", "json"]).stdout
    assert "\x1b" not in out and {r["name"] for r in json.loads(out)} == {f"{EVIL}0", f"{EVIL}1"}
    out = CliRunner().invoke(cli, ["--repo", str(evil_repo.path), "query", "", "-f", "csv"]).stdout
    assert f'"{EVIL}0"' in out  # the exact text, as a file or a pipe should get it


def test_safe_escapes_c0_c1_bidi():
    assert T.safe("a\x1b[31mb\x00\x7f\x85\u202e\u2066\t\n") == "a\\x1b[31mb\\x00\\x7f\\x85\\u202e\\u2066\\t\\n"
    assert T.safe_lines("x\ty\nz\x1b") == "x\ty\nz\\x1b"
    assert T.safe("naïve 学習 ✓") == "naïve 学習 ✓"


def test_server_commands_escape_names_too(tmp_path):
    src = Repo(tmp_path / "src")
    with Run(repo=src, name=EVIL) as run:
        run.track(1.0, name="loss")
    merge = ["merge", str(src.path), "--into", str(tmp_path / "dest")]
    assert CliRunner().invoke(cli, merge).exit_code == 0
    with Run(repo=src, run_id=run.id) as again:
        again.track(2.0, name="loss")
    result = CliRunner().invoke(cli, merge)  # a conflict, reported with the run's name
    assert result.exit_code == 1 and "conflict" in result.stderr and "\\x1b]0;pwned\\x07" in result.stderr
    assert not any(raw in result.output for raw in RAW)
