"""The vendored front-end files ship in the wheel, untouched: their hashes match the manifest,
each package keeps its licence, and the page loads nothing from elsewhere."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "src" / "runstore" / "ui" / "static" / "vendor"


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def manifest() -> dict:
    return json.loads((VENDOR / "manifest.json").read_text())


def test_manifest_names_versions_licences_and_npm_integrity():
    m = manifest()["packages"]
    assert set(m) == {"uplot", "apache-arrow"}
    for name, pkg in m.items():
        assert pkg["version"] and pkg["npm_integrity"].startswith("sha512-") and pkg["license"]
        assert any(f.upper().startswith(("LICENSE", "LICENCE")) for f in pkg["files"]), name
        for fname, entry in pkg["files"].items():
            data = (VENDOR / name / fname).read_bytes()
            assert sri(data) == entry["integrity"], f"{name}/{fname} differs from the manifest"
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]


@pytest.mark.slow
def test_built_wheel_contains_the_vendored_files_with_matching_hashes(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheel = next(tmp_path.glob("runstore-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for name, pkg in manifest()["packages"].items():
            for fname, entry in pkg["files"].items():
                path = f"runstore/ui/static/vendor/{name}/{fname}"
                assert path in names, f"{path} missing from {wheel.name}"
                assert sri(z.read(path)) == entry["integrity"]
        assert "runstore/ui/static/vendor/manifest.json" in names
        for page in ("index.html", "app.js", "runs.js", "explorer.js", "chart.js", "run.js", "compare.js",
                     "style.css", "colors.js", "format.js", "api.js", "vlist.js"):
            assert f"runstore/ui/static/{page}" in names, page
        html = z.read("runstore/ui/static/index.html").decode()
    assert "http://" not in html and "https://" not in html  # no CDN
