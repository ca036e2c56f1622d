"""runstore merge: repositories written on different hosts joined into one."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from runstore import Repo, Run


def make(path, name, n, seed, artifact_dir=None):
    repo = Repo(path)
    rng = np.random.default_rng(seed)
    with Run(repo=repo, experiment="cluster", name=name, tags=[name]) as run:
        run["hparams"] = {"lr": float(rng.random()), "host": name}
        for i in range(n):
            run.track(float(rng.random()), name="loss", context={"subset": "train"}, epoch=i // 10)
        run.track_many(rng.random(5), "bulk", steps=[1, 2, 3, 2**60, 2**61])
        if artifact_dir is not None:
            f = artifact_dir / f"{name}.txt"
            f.write_text(f"weights of {name}")
            run.log_artifact(f)
    return repo, run.id


def runstore(*args):
    return subprocess.run([sys.executable, "-m", "runstore", *args], capture_output=True, text=True, timeout=120)


def test_merge_two_repositories_with_a_conflict(tmp_path):
    a, id_a = make(tmp_path / "a", "host-a", 300, 1, tmp_path)
    b, id_b = make(tmp_path / "b", "host-b", 200, 2)
    out = runstore("merge", str(tmp_path / "a"), str(tmp_path / "b"), "--into", str(tmp_path / "all"))
    assert out.returncode == 0, out.stderr
    assert "merged 2 run(s) (510 points, 1 artifact(s))" in out.stdout
    merged = Repo(tmp_path / "all", readonly=True)
    assert sorted(r.name for r in merged.runs()) == ["host-a", "host-b"]
    for src, run_id in ((a, id_a), (b, id_b)):
        there, here = src.get_run(run_id), merged.get_run(run_id)
        assert (here.params, here.tags, here.created_at, here.status) == (there.params, there.tags,
                                                                          there.created_at, there.status)
        for seq in there.metrics():
            copy = here.sequence(seq.name, seq.context).numpy()
            for key, col in seq.numpy().items():
                np.testing.assert_array_equal(copy[key], col)  # steps, values, epochs, timestamps exact
    art = merged.get_run(id_a).artifacts[0]
    assert art["path"].startswith(str(merged.path)) and open(art["path"]).read() == "weights of host-a"
    assert merged.check() == []

    again = runstore("merge", str(tmp_path / "a"), "--into", str(tmp_path / "all"))
    assert again.returncode == 0 and "1 run(s) were there already" in again.stdout  # idempotent

    # the same run changed on one side after the first merge: a conflict, DEST's copy kept
    changed = Run(repo=b, run_id=id_b)
    changed["hparams"] = {"lr": 0.5}
    changed.track(9.0, name="loss", context={"subset": "train"})
    changed.close()
    conflict = runstore("merge", str(tmp_path / "b"), "--into", str(tmp_path / "all"))
    assert conflict.returncode == 1
    assert f"conflict: run {id_b}" in conflict.stderr and "params, sequences" in conflict.stderr
    assert Repo(tmp_path / "all", readonly=True).get_run(id_b).params["hparams"]["host"] == "host-b"


def test_merge_names_a_missing_source(tmp_path):
    out = runstore("merge", str(tmp_path / "nope"), "--into", str(tmp_path / "all"))
    assert out.returncode == 2 and "does not exist" in out.stderr
