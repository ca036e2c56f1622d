"""The UI's pure JS helpers (colours, formatting, virtual rows, autocomplete, params diff),
unit-tested with `node --test` (Node.js is a test requirement: .ci/run installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_js_helpers_with_node():
    node = shutil.which("node")
    assert node, "Node.js is needed for the UI's JS unit tests: apt-get install nodejs (.ci/run does it)"
    proc = subprocess.run([node, "--test", str(ROOT / "tests" / "js")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "# fail 0" in proc.stdout and "# pass 7" in proc.stdout, proc.stdout
