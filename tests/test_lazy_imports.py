"""Heavy modules stay out of processes that do not need them (issue 22).

Each check runs in a fresh interpreter, since this test process has long imported
everything."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runstore import Repo, Run


def _fresh(code: str) -> dict:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture
def small_repo(tmp_path):
    repo = Repo(tmp_path / "r")
    for i in range(3):
        with Run(repo=repo, experiment="e", tags=["a"] if i else []) as run:
            run["hparams"] = {"lr": 0.1 * (i + 1), "model": "m", "flag": bool(i)}
            run.track_many([1.0, 2.0, 3.0], name="loss", context={"subset": "train", "fold": i})
            run.track(1.0, name="acc")
    return tmp_path / "r"


def test_import_runstore_leaves_heavy_modules_out():
    mods = _fresh("import json,sys,runstore;print(json.dumps(sorted(sys.modules)))")
    for heavy in ("pandas", "pyarrow", "polars", "omegaconf", "yaml", "click", "rich", "runstore.experiment"):
        assert heavy not in mods, heavy


def test_import_runstore_adds_no_stdlib_module_a_tracking_script_does_not_need():
    # ~15 ms together on the quiet 2-core machine (issue 22, target 2): each is imported where
    # it is used (a hostname, a git call, a handle's hash, a warning, a dataclass param)
    new = _fresh("import json,sys,numpy,lmdb,msgpack;before=set(sys.modules);import runstore;"
                 "print(json.dumps(sorted(set(sys.modules)-before)))")
    for mod in ("socket", "subprocess", "logging", "dataclasses", "hashlib", "secrets", "datetime"):
        assert mod not in new, mod


def test_experiment_names_still_resolve_lazily():
    out = _fresh("import json,runstore;e=runstore.Experiment;print(json.dumps({'ok':e.__module__,"
                 "'dir':'Pipeline' in dir(runstore)}))")
    assert out["ok"].startswith("runstore.experiment") and out["dir"]
    with pytest.raises(AttributeError):
        import runstore

        runstore.no_such_name


def test_arrow_exports_do_not_import_pandas(small_repo):
    out = _fresh(
        "import json,sys;from runstore import Repo;"
        f"r=Repo({str(small_repo)!r});s=r.query_sequences('').to_arrow();"
        "t=r.query('').to_arrow();"
        "print(json.dumps({'pandas':'pandas' in sys.modules,'rows':s.num_rows,'runs':t.num_rows,"
        "'ctx':s.column('context.fold').to_pylist()[:4],'tags':t.column('tags').to_pylist()}))"
    )
    assert out["pandas"] is False
    assert out["rows"] == 3 * 3 + 3 and out["runs"] == 3
    assert out["ctx"] == [0, 0, 0, 1] or None in out["ctx"]
    assert out["tags"] == [[], ["a"], ["a"]]


def test_arrow_export_values_match_pylist(small_repo):
    import pyarrow as pa

    repo = Repo(small_repo)
    tab = repo.query_sequences("seq.name == 'loss'").to_arrow()
    assert tab.column("value").to_pylist() == [1.0, 2.0, 3.0] * 3
    assert tab.column("step").type == pa.int64() and tab.column("step").to_pylist() == [0, 1, 2] * 3
    assert tab.column("context.subset").to_pylist() == ["train"] * 9
    runs = repo.query("").to_arrow()
    assert runs.column("hparams.flag").to_pylist() == [False, True, True]
    assert runs.column("hparams.lr").type == pa.float64()
    assert runs.column("created_at").type == pa.timestamp("us", tz="UTC")
