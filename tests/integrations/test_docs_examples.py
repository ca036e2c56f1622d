"""Every copy-paste example in docs/integrations.md runs as written."""

import re
from pathlib import Path

import pytest

DOC = (Path(__file__).resolve().parents[2] / "docs" / "integrations.md").read_text()
BLOCKS = [(section.split("\n", 1)[0], code) for section in DOC.split("\n## ")[1:]
          for code in re.findall(r"```python\n(.*?)```", section, re.S)]


@pytest.mark.parametrize("title,code", BLOCKS, ids=[t for t, _ in BLOCKS])
def test_example_runs(title, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"docs/integrations.md ({title})", "exec"), {"__name__": "__main__"})
    from runstore import Repo

    runs = Repo(tmp_path / "runs").runs()
    assert runs and all(run.status == "finished" for run in runs)
    assert any(run.sequences() for run in runs)
