"""The layers of docs/architecture.md hold: import-linter's contract in pyproject.toml.

storage <- tracking <- query <- analysis <- fluent/export <- experiment <- ui/server/
integrations/importers <- cli. A change that imports upwards fails here.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint(cwd: Path) -> subprocess.CompletedProcess:
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_layers_contract_is_kept():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "runstore layers KEPT" in out.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    # A copy of the package with one storage module importing the tracking layer.
    import shutil

    shutil.copytree(ROOT / "src" / "runstore", tmp_path / "runstore",
                    ignore=shutil.ignore_patterns("static", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    gc = tmp_path / "runstore" / "storage" / "gc.py"
    gc.write_text(gc.read_text() + textwrap.dedent("""
        def _upward():
            from ..tracking import run  # noqa: F401
    """))
    out = lint(tmp_path)
    assert out.returncode != 0
    assert "runstore.storage is not allowed to import runstore.tracking" in out.stdout
