"""Several processes writing one repository at once (issue 2)."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from runstore import Repo, Run

CHILD = str(Path(__file__).with_name("writer_child.py"))


def test_four_processes_20000_values_each(tmp_path):
    path = tmp_path / "repo"
    Repo(path)
    n = 20_000
    procs = [subprocess.Popen([sys.executable, CHILD, str(path), "count", str(n), "0.05"],
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    ids = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        ids.append(out.split()[0])
    repo = Repo(path)
    assert repo.check() == []
    assert len(repo) == 4 and len(set(ids)) == 4
    for run_id in ids:
        run = repo.get_run(run_id)
        assert run.status == "finished"
        loss = run.sequence("loss", context={"subset": "train"})
        np.testing.assert_array_equal(loss.values, np.arange(n, dtype=float))
        np.testing.assert_array_equal(loss.steps, np.arange(n))
        assert run.sequence("acc", context={"subset": "val"}).count == n
        assert run.sequence("handle", context={"kind": "append"}).values.tolist() == [-float(i) for i in range(n)]
        assert run.sequence("bulk").count == 5 * (n // 500)


FORK_SCRIPT = """
import multiprocessing as mp, sys
from runstore import Repo, Run


def child(path, q):
    try:
        run = Run(repo=Repo(path))
        run.track(2.0, name="child")
        run.close()
        q.put(run.id)
    except Exception as exc:  # report instead of hanging the parent
        q.put(repr(exc))


if __name__ == "__main__":
    repo = Repo(sys.argv[1])
    parent = Run(repo=repo)
    parent.track(1.0, name="parent")
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=child, args=(repo.path, q))
    proc.start()
    child_id = q.get(timeout=60)
    proc.join(60)
    # the parent's handle and its unflushed points are unaffected by the child
    parent.track(3.0, name="parent")
    parent.close()
    print(proc.exitcode, child_id, parent.id)
"""


def test_repository_survives_fork(tmp_path):
    # The fork happens in a fresh interpreter: forked from this pytest process, the child
    # inherits whatever locks the threads of earlier tests hold (a leaked pyarrow Flight
    # client's gRPC destructor hung a child forever when test_server.py ran first).
    script = tmp_path / "fork_parent.py"
    script.write_text(FORK_SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "repo")], capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    code, child_id, parent_id = out.stdout.split()
    assert code == "0" and len(child_id) == 24, out.stdout
    repo = Repo(tmp_path / "repo")
    assert repo.get_run(parent_id).sequence("parent").values.tolist() == [1.0, 3.0]
    assert repo.get_run(child_id).sequence("child").values.tolist() == [2.0]
    assert repo.get_run(parent_id).status == "finished"
    assert repo.check() == []


def test_readers_see_commits_of_a_live_run(tmp_path):
    repo = Repo(tmp_path / "repo")
    run = Run(repo=repo)
    run.track(1.0, name="x")
    run.flush()
    out = subprocess.run(
        [sys.executable, "-c",
         f"from runstore import Repo; r = Repo({str(repo.path)!r}, create=False).get_run({run.id!r}); "
         "print(r.status, r.sequence('x').values.tolist())"],
        capture_output=True, text=True, timeout=60)
    assert out.stdout.split(None, 1) == ["running", "[1.0]\n"], out.stderr
    run.close()
