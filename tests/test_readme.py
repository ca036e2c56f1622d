"""The README never lies: its Python example runs, and its commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "README.md has no python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert len(namespace["runs"]) == 1
    assert namespace["table"].num_rows == 1000
    assert set(namespace["table"].column_names) >= {"run_id", "name", "step", "value", "epoch", "timestamp"}


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    assert len(commands) == 2, "README.md must have exactly the two set-up commands"
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1].strip() in ci


def test_readme_terminal_example_runs_verbatim(tmp_path, monkeypatch):
    """The README's terminal commands work, unchanged, on the data its Python example writes."""
    import shlex

    from click.testing import CliRunner

    from runstore.cli import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNSTORE_REPO", raising=False)
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", README, re.S):
        exec(compile(block, "README.md", "exec"), namespace)
    (commands,) = re.findall(r"```sh\n(.*?)```", README, re.S)
    lines = [line for line in commands.splitlines() if line.strip()]
    assert len(lines) >= 3
    outputs = []
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "runstore"
        result = CliRunner().invoke(cli, argv[1:], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (line, result.output, result.exception)
        assert all(len(out) <= 80 for out in result.stdout.splitlines()), line
        outputs.append(result.stdout)
    ls = outputs[0]
    assert "baseline" in ls and "0.001" in ls and "1 run" in ls  # lr, and the train loss's last value:
    assert "0.001" in ls.splitlines()[1] and "hparams.lr" in ls and "loss@subset=train.last" in ls
    assert (tmp_path / "out" / "runs.parquet").is_file()
