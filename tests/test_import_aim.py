"""Importing an Aim repository written by the real aim SDK.

aim is in the test extra for the Pythons it has wheels for. Elsewhere, make a virtual
environment with aim and point RUNSTORE_AIM_PYTHON at its interpreter: the writer and
the importer's reader then run there (the importer's --python path). This is the one
test allowed to need an extra environment (issue 17); without either it is skipped
with that instruction.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from runstore import ImportSourceError, Repo, importers
from runstore.cli import cli

from test_import_tensorboard import tree_digest

WRITER = Path(__file__).with_name("aim_writer.py")
# The interpreter that has aim: this one (aim in the test extra), or the one named by
# RUNSTORE_AIM_PYTHON (a separate virtual environment; docs/import.md says how).
AIM_PYTHON = os.environ.get("RUNSTORE_AIM_PYTHON") or (
    sys.executable if importlib.util.find_spec("aim") is not None else None)
pytestmark = pytest.mark.skipif(
    AIM_PYTHON is None, reason="aim is not installed for this Python (it has no wheels for the newest ones): "
    "set RUNSTORE_AIM_PYTHON to the interpreter of a virtual environment with aim (docs/import.md)")


@pytest.fixture(scope="module")
def aim_repo(tmp_path_factory):
    """Three runs, each written by its own aim process (as training runs are): one with
    params, contexts, epochs, NaN/inf and a text sequence, one archived, one that never
    closed (killed without cleanup)."""
    root = tmp_path_factory.mktemp("aim") / "repo"
    root.mkdir()
    expected = {}
    for which in ("first", "second", "crashed"):
        proc = subprocess.run([AIM_PYTHON, str(WRITER), str(root), which], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "AIM_UI_TELEMETRY_ENABLED": "0"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        expected.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return root, expected


@pytest.mark.slow
def test_every_point_param_and_attribute(aim_repo, tmp_path):
    root, expected = aim_repo
    before = tree_digest(root)
    repo = Repo(tmp_path / "repo")
    result = importers.aim(root, repo=repo, python=AIM_PYTHON)
    assert tree_digest(root) == before  # aim read a copy: the source is untouched
    assert len(result) == 3
    runs = {r.params["imported_from"]["id"]: r for r in repo.runs()}
    assert set(runs) == set(expected)
    for run_hash, want in expected.items():
        run = runs[run_hash]
        assert run.name == want["name"] and run.experiment == want["experiment"]
        assert run.created_at == want["created_at"]
        got = {(s.name, json.dumps(s.context, sort_keys=True)): s.numpy() for s in run.metrics()
               if getattr(s, "type", "float") not in ("image", "text", "distribution")}
        assert len(got) == len(want["sequences"])
        for seq in want["sequences"]:
            cols = got[seq["name"], json.dumps(seq["context"], sort_keys=True)]
            assert cols["steps"].tolist() == seq["steps"]
            values = [v if isinstance(v, float) or isinstance(v, int) else float(v) for v in seq["values"]]
            assert all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(cols["values"].tolist(), values))
            assert len(cols["values"]) == len(values)
            assert cols["timestamps"].tolist() == seq["timestamps"]
            assert [None if e != e else e for e in cols["epochs"].tolist()] == seq["epochs"]
    first = next(r for r in runs.values() if r.name == "first")
    assert first.params["hparams"] == {"lr": 0.001, "batch": 64, "optimizer": {"name": "adam", "betas": [0.9, 0.999]},
                                       "use_bn": True, "note": None}
    assert first.params["dataset"] == "mnist" and first.tags == ["good"]
    assert first.description == "the first one" and first.status == "finished" and first.ended_at is not None
    assert first.sequence("acc", {"subset": "val", "fold": 1}).epochs.tolist()[:3] == [0.0, 0.0, 0.0]
    archived = next(r for r in runs.values() if r.archived)
    assert archived.sequence("loss", {"subset": "train"}).count == 50
    crashed = next(r for r in runs.values() if r.name == "crashed")
    assert crashed.status == "running" and crashed.ended_at is None
    assert crashed.sequence("progress").values.tolist() == [float(i) for i in range(20)]
    notes = first.sequence("notes")
    assert notes.type == "text" and [t.text for t in notes.values] == ["hello", "world"]
    assert notes.steps.tolist() == [0, 1]
    samples = first.sequence("samples", {"subset": "val"})
    assert samples.type == "image" and samples.steps.tolist() == [0, 0]  # two images at one step
    import numpy as np
    from PIL import Image as PILImage
    import io

    pixels = (np.arange(8 * 8 * 3) % 256).astype(np.uint8).reshape(8, 8, 3)
    got = [np.asarray(PILImage.open(io.BytesIO(im.data))) for im in samples.values]
    assert (got[0] == pixels).all() and (got[1] == 255 - pixels).all()
    (weights,) = first.sequence("weights").values
    assert weights.counts.sum() == 101 and weights.bin_edges[0] == -1.0 and weights.bin_edges[-1] == 1.0
    assert result.objects == 5 and result.skipped == []
    again = importers.aim(root, repo=repo, python=AIM_PYTHON)
    assert list(again) == [] and len(again.unchanged) == 3 and len(repo) == 3


@pytest.mark.slow
def test_cli_and_bad_sources(aim_repo, tmp_path):
    root, _ = aim_repo
    out = CliRunner().invoke(cli, ["import", "aim", str(root), "--repo", str(tmp_path / "repo"),
                                   "--python", AIM_PYTHON])
    assert out.exit_code == 0, out.output
    assert "Imported 3 runs from aim" in out.output
    with pytest.raises(ImportSourceError, match="not an Aim repository"):
        importers.aim(tmp_path, repo=tmp_path / "r2")
    with pytest.raises(ImportSourceError, match="no such interpreter"):
        importers.aim(root, repo=tmp_path / "r2", python=tmp_path / "nope" / "python")
    # an interpreter without aim: a bare virtual environment
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=120)
    with pytest.raises(ImportSourceError, match="has no aim package"):
        importers.aim(root, repo=tmp_path / "r2", python=tmp_path / "bare" / "bin" / "python")
    assert not (tmp_path / "r2").exists()
