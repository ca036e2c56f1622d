"""The MLflow-style fluent API (issue 6): start_run / log_* / end_run, nesting, threads."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runstore
from runstore import Repo, Run
from runstore import fluent as rs
from runstore.errors import ActiveRunError, InvalidParamError, ParamChangedError, RunstoreError


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "repo")


@pytest.fixture(autouse=True)
def no_active_runs():
    """Every test starts and ends with an empty active-run stack in this thread."""
    while rs.active_run() is not None:
        rs.end_run()
    yield
    while rs.active_run() is not None:
        rs.end_run()


def reopen(repo: Repo, run: Run) -> Run:
    return repo.get_run(run.id)


# --- the issue's example ------------------------------------------------------


def test_issue_example(repo, tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    with rs.start_run(name="training_run", experiment="mnist", repo=repo) as run:
        assert isinstance(run, Run)
        rs.log_params({"learning_rate": 0.001, "batch_size": 64})
        rs.log_metrics({"loss": 0.5, "accuracy": 0.95}, step=1)
        rs.log_metric("loss", 0.4, step=2, context={"subset": "val"})
        rs.set_tags({"team": "vision"})
        rs.log_artifact(model)
        with rs.start_run(name="fold-1", nested=True) as child:
            rs.log_metric("loss", 0.7)
    stored = reopen(repo, run)
    assert stored.status == "finished"
    assert stored.name == "training_run" and stored.experiment == "mnist"
    assert stored.params == {"learning_rate": 0.001, "batch_size": 64}
    assert stored.sequence("loss").values.tolist() == [0.5]
    assert stored.sequence("accuracy").steps.tolist() == [1]
    assert stored.sequence("loss", context={"subset": "val"}).steps.tolist() == [2]
    assert "team=vision" in stored.tags
    assert [a["name"] for a in stored.artifacts] == ["model.pt"]
    kid = reopen(repo, child)
    assert kid.parent == run.id and kid.status == "finished"
    assert kid.sequence("loss").values.tolist() == [0.7]
    assert kid.experiment == "mnist"  # inherited from the parent
    assert ("loss", {}) in stored.sequences() and len(kid.sequences()) == 1


def test_public_names_reexported():
    for name in rs.__all__:
        assert getattr(runstore, name) is getattr(rs, name), name


# --- start_run / active_run / end_run -----------------------------------------


def test_start_run_without_with_and_end_run(repo):
    assert rs.active_run() is None
    run = rs.start_run(name="plain", repo=repo, tags=["cnn"])
    assert isinstance(run, Run)
    assert rs.active_run() is run
    assert run.status == "running"
    assert run.tags == ["cnn"]
    rs.end_run()
    assert rs.active_run() is None
    assert run.closed
    assert reopen(repo, run).status == "finished"


@pytest.mark.parametrize("status", ["failed", "killed", "finished"])
def test_end_run_status(repo, status):
    run = rs.start_run(repo=repo)
    rs.end_run(status=status)
    assert reopen(repo, run).status == status


def test_end_run_rejects_unknown_status(repo):
    run = rs.start_run(repo=repo)
    with pytest.raises(ValueError, match="finished"):
        rs.end_run(status="done")
    assert rs.active_run() is run  # still active: nothing was ended


def test_end_run_without_active_run_is_a_noop():
    rs.end_run()
    assert rs.active_run() is None


def test_with_block_exit_makes_parent_active_again(repo):
    with rs.start_run(repo=repo) as outer:
        with rs.start_run(nested=True) as inner:
            assert rs.active_run() is inner
        assert rs.active_run() is outer
        assert inner.closed and not outer.closed
    assert rs.active_run() is None


def test_exception_marks_failed_and_reraises(repo):
    with pytest.raises(ZeroDivisionError):
        with rs.start_run(repo=repo) as run:
            rs.log_metric("loss", 1.0)
            1 / 0
    assert reopen(repo, run).status == "failed"
    assert rs.active_run() is None


def test_keyboard_interrupt_marks_killed(repo):
    with pytest.raises(KeyboardInterrupt):
        with rs.start_run(repo=repo) as run:
            raise KeyboardInterrupt
    assert reopen(repo, run).status == "killed"
    assert rs.active_run() is None


def test_exception_in_nested_run_fails_child_only_if_caught(repo):
    with rs.start_run(repo=repo) as parent:
        with pytest.raises(RuntimeError):
            with rs.start_run(nested=True) as child:
                raise RuntimeError("fold crashed")
        assert rs.active_run() is parent
    assert reopen(repo, child).status == "failed"
    assert reopen(repo, parent).status == "finished"


def test_second_run_without_nested_raises_and_says_how_to_fix(repo):
    with rs.start_run(name="first", repo=repo) as first:
        with pytest.raises(ActiveRunError) as info:
            rs.start_run(name="second", repo=repo)
        message = str(info.value)
        assert first.id in message
        assert "nested=True" in message and "end_run()" in message
        assert isinstance(info.value, RunstoreError) and isinstance(info.value, RuntimeError)
        assert rs.active_run() is first
    assert len(repo) == 1  # the refused run was never created


def test_nested_without_active_run_is_top_level(repo):
    with rs.start_run(repo=repo, nested=True) as run:
        assert run.parent is None


def test_nesting_two_levels_deep(repo):
    with rs.start_run(name="sweep", experiment="exp", repo=repo) as top:
        rs.log_metric("score", 1.0)
        with rs.start_run(name="trial", nested=True) as mid:
            rs.log_metric("score", 2.0)
            with rs.start_run(name="fold", nested=True, experiment="other") as leaf:
                assert rs.active_run() is leaf
                rs.log_metric("score", 3.0)
            assert rs.active_run() is mid
            rs.log_metric("score", 2.5)
        rs.log_metric("score", 1.5)
    top_s, mid_s, leaf_s = (reopen(repo, r) for r in (top, mid, leaf))
    assert (top_s.parent, mid_s.parent, leaf_s.parent) == (None, top.id, mid.id)
    assert top_s.sequence("score").values.tolist() == [1.0, 1.5]
    assert mid_s.sequence("score").values.tolist() == [2.0, 2.5]
    assert leaf_s.sequence("score").values.tolist() == [3.0]
    assert mid_s.experiment == "exp" and leaf_s.experiment == "other"
    assert leaf.repo.path == repo.path  # inherited from the parent
    assert [r.id for r in top_s.children] == [mid.id]
    assert [r.id for r in mid_s.children] == [leaf.id]
    assert list(leaf_s.children) == []


def test_hierarchy_is_queryable(repo):
    with rs.start_run(repo=repo) as parent:
        kids = []
        for fold in range(3):
            with rs.start_run(name=f"fold-{fold}", nested=True) as kid:
                kids.append(kid.id)
    with rs.start_run(repo=repo):
        pass
    found = repo.query(f"run.parent == '{parent.id}'")
    assert sorted(r.id for r in found) == sorted(kids)


def test_closing_outer_run_directly_ends_open_children(repo):
    outer = rs.start_run(repo=repo)
    inner = rs.start_run(nested=True)
    outer.close(status="killed")  # e.g. a callback that aborts the whole sweep
    assert rs.active_run() is None
    assert inner.closed
    assert reopen(repo, inner).status == "killed"
    rs.start_run(repo=repo)  # not refused: nothing is active any more
    rs.end_run()


def test_resume_by_run_id(repo):
    with rs.start_run(name="resumable", repo=repo) as run:
        rs.log_metric("loss", 1.0, step=0)
        rs.log_param("lr", 0.1)
    with rs.start_run(run_id=run.id, repo=repo, tags={"phase": "2"}) as again:
        assert again.id == run.id
        assert again.status == "running"
        rs.log_metric("loss", 0.5, step=1)
        rs.log_param("lr", 0.1)  # same value: no-op even after resuming
        with pytest.raises(ParamChangedError):
            rs.log_param("lr", 0.2)
    stored = reopen(repo, run)
    assert stored.sequence("loss").steps.tolist() == [0, 1]
    assert stored.name == "resumable" and "phase=2" in stored.tags
    assert stored.status == "finished"


def test_start_run_accepts_a_path_as_repo(tmp_path):
    with rs.start_run(repo=tmp_path / "by-path") as run:
        rs.log_metric("x", 1.0)
    assert Repo(tmp_path / "by-path", create=False).get_run(run.id).status == "finished"


def test_logging_without_active_run_starts_one(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNSTORE_REPO", str(tmp_path / "default"))
    rs.log_metric("loss", 0.3, step=5)
    run = rs.active_run()
    assert run is not None and run.status == "running"
    rs.log_params({"lr": 0.01})
    rs.set_tag("auto", True)
    rs.end_run()
    stored = Repo(tmp_path / "default", create=False).get_run(run.id)
    assert stored.sequence("loss").steps.tolist() == [5]
    assert stored.params == {"lr": 0.01} and "auto=True" in stored.tags


# --- metrics ------------------------------------------------------------------


def test_log_metric_step_epoch_context(repo):
    with rs.start_run(repo=repo) as run:
        for step in range(4):
            rs.log_metric("loss", 1.0 / (step + 1), step=step * 10, epoch=step // 2,
                          context={"subset": "train"})
        rs.log_metric("loss", np.float32(0.25), context={"subset": "val"})
    train = reopen(repo, run).sequence("loss", context={"subset": "train"})
    assert train.steps.tolist() == [0, 10, 20, 30]
    assert train.epochs.tolist() == [0, 0, 1, 1]
    assert train.values.tolist() == pytest.approx([1, 0.5, 1 / 3, 0.25])
    val = reopen(repo, run).sequence("loss", context={"subset": "val"})
    assert val.values.tolist() == [0.25] and val.count == 1


def test_log_metrics_shares_step_and_context(repo):
    with rs.start_run(repo=repo) as run:
        rs.log_metrics({"loss": 0.5, "acc": 0.8}, step=3, epoch=1, context={"subset": "val"})
        rs.log_metrics({"loss": 0.4, "acc": 0.9}, step=4, epoch=1, context={"subset": "val"})
    stored = reopen(repo, run)
    for name, values in {"loss": [0.5, 0.4], "acc": [0.8, 0.9]}.items():
        seq = stored.sequence(name, context={"subset": "val"})
        assert seq.values.tolist() == values and seq.steps.tolist() == [3, 4]
        assert seq.epochs.tolist() == [1, 1]


def test_log_metric_bad_value_raises_core_error(repo):
    with rs.start_run(repo=repo):
        with pytest.raises(RunstoreError):
            rs.log_metric("loss", "not a number")


# --- params -------------------------------------------------------------------


def test_log_param_dotted_keys_are_nested(repo):
    with rs.start_run(repo=repo) as run:
        rs.log_param("optimizer.lr", 0.1)
        rs.log_param("optimizer.name", "adam")
        rs.log_params({"model.layers": 4, "model.head.dim": 128, "seed": 7})
    assert reopen(repo, run).params == {
        "optimizer": {"lr": 0.1, "name": "adam"},
        "model": {"layers": 4, "head": {"dim": 128}},
        "seed": 7,
    }


def test_same_value_again_is_a_noop(repo):
    with rs.start_run(repo=repo) as run:
        rs.log_params({"lr": 0.1, "opt": {"name": "sgd", "betas": (0.9, 0.99)}, "flag": True})
        rs.log_params({"lr": 0.1, "opt.name": "sgd", "opt.betas": [0.9, 0.99], "flag": True})
        rs.log_param("opt", {"name": "sgd"})  # subset of what is there: nothing changes
        rs.log_param("lr", np.float64(0.1))
        rs.log_param("nan", float("nan"))
        rs.log_param("nan", float("nan"))
    params = reopen(repo, run).params
    assert params["opt"] == {"name": "sgd", "betas": [0.9, 0.99]}
    assert math.isnan(params["nan"])


def test_different_value_raises_naming_key_old_and_new(repo):
    with rs.start_run(repo=repo) as run:
        rs.log_param("optimizer.lr", 0.1)
        with pytest.raises(ParamChangedError) as info:
            rs.log_param("optimizer.lr", 0.2)
        message = str(info.value)
        assert "'optimizer.lr'" in message and "0.1" in message and "0.2" in message
        assert isinstance(info.value, ValueError)
    assert reopen(repo, run).params == {"optimizer": {"lr": 0.1}}


@pytest.mark.parametrize(
    "first, second",
    [
        ({"flag": True}, {"flag": 1}),          # True is not 1
        ({"n": 1}, {"n": "1"}),                  # types matter (MLflow would stringify)
        ({"opt": "adam"}, {"opt.lr": 0.1}),      # scalar cannot grow children
        ({"opt.lr": 0.1}, {"opt": "adam"}),      # a subtree cannot become a scalar
        ({"xs": [1, 2]}, {"xs": [1, 2, 3]}),
        ({"none": None}, {"none.child": 1}),
    ],
)
def test_changes_are_refused(repo, first, second):
    with rs.start_run(repo=repo) as run:
        rs.log_params(first)
        with pytest.raises(ParamChangedError):
            rs.log_params(second)
    assert reopen(repo, run).params == runstore_params_of(first)


def runstore_params_of(flat: dict) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def test_log_params_is_all_or_nothing(repo):
    with rs.start_run(repo=repo) as run:
        rs.log_param("lr", 0.1)
        with pytest.raises(ParamChangedError):
            rs.log_params({"batch": 32, "lr": 0.5, "epochs": 3})
        with pytest.raises(ParamChangedError):  # conflict inside one call
            rs.log_params({"a.b": 1, "a": {"b": 2}})
    assert reopen(repo, run).params == {"lr": 0.1}


def test_bad_param_keys(repo):
    with rs.start_run(repo=repo):
        for key in ("a..b", ".a", "a.", ""):
            with pytest.raises(InvalidParamError, match="empty part"):
                rs.log_param(key, 1)
        with pytest.raises(InvalidParamError):
            rs.log_param(3, 1)


def test_fluent_params_immutable_but_run_setitem_overwrites(repo):
    with rs.start_run(repo=repo) as run:
        rs.log_param("lr", 0.1)
        run["lr"] = 0.5  # the Run's dict-like API overwrites on purpose
        assert run.params["lr"] == 0.5
        with pytest.raises(ParamChangedError, match="0.5"):
            rs.log_param("lr", 0.1)  # the fluent API compares with what is stored now
        rs.log_param("lr", 0.5)


def test_log_params_accepts_omegaconf_and_dataclass(repo):
    import dataclasses

    from omegaconf import OmegaConf

    @dataclasses.dataclass
    class Optim:
        lr: float = 0.01
        name: str = "adam"

    with rs.start_run(repo=repo) as run:
        rs.log_params({"model": OmegaConf.create({"layers": 2, "act": "relu"})})
        rs.log_param("optim", Optim())
        rs.log_param("optim.lr", 0.01)
        rs.log_param("model", {"layers": 2})
    assert reopen(repo, run).params == {
        "model": {"layers": 2, "act": "relu"},
        "optim": {"lr": 0.01, "name": "adam"},
    }


_keys = st.text(alphabet="abcxyz", min_size=1, max_size=3)
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
)
_trees = st.dictionaries(
    _keys, st.recursive(_scalars, lambda inner: st.dictionaries(_keys, inner, max_size=3), max_leaves=6),
    min_size=1, max_size=4,
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=_trees)
def test_log_params_round_trip_and_relog_is_noop(tmp_path_factory, tree):
    repo = Repo(tmp_path_factory.mktemp("prop") / "repo")
    with rs.start_run(repo=repo) as run:
        rs.log_params(tree)
        rs.log_params(tree)
    assert reopen(repo, run).params == tree  # empty dicts are kept, as logged


# --- tags ---------------------------------------------------------------------


def test_set_tag_and_set_tags(repo):
    with rs.start_run(repo=repo, tags=["baseline"]) as run:
        rs.set_tag("team", "vision")
        rs.set_tags({"owner": "ana", "priority": 2})
        rs.set_tag("team", "nlp")  # tags are mutable: the old value is replaced
        rs.set_tag("team", "nlp")  # and setting the same one again changes nothing
    assert sorted(reopen(repo, run).tags) == ["baseline", "owner=ana", "priority=2", "team=nlp"]


def test_start_run_accepts_mlflow_style_tag_dict(repo):
    with rs.start_run(repo=repo, tags={"team": "vision", "stage": "dev"}) as run:
        pass
    assert sorted(reopen(repo, run).tags) == ["stage=dev", "team=vision"]


def test_key_value_tags_are_queryable(repo):
    with rs.start_run(repo=repo) as tagged:
        rs.set_tag("team", "vision")
    with rs.start_run(repo=repo):
        rs.set_tag("team", "nlp")
    assert [r.id for r in repo.query("'team=vision' in run.tags")] == [tagged.id]


@pytest.mark.parametrize("key", ["", "a=b", 5])
def test_bad_tag_keys(repo, key):
    with rs.start_run(repo=repo) as run:
        with pytest.raises(InvalidParamError, match="tag key"):
            rs.set_tags({"ok": 1, key: "x"})
    assert reopen(repo, run).tags == []  # validated before anything is written


# --- artifacts ----------------------------------------------------------------


def test_log_artifact(repo, tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x00" * 100)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with rs.start_run(repo=repo) as run:
        record = rs.log_artifact(path, kind="model")
        rs.log_artifact(str(notes))
    assert record["kind"] == "model" and record["size"] == 100
    artifacts = reopen(repo, run).artifacts
    assert [(a["name"], a["kind"]) for a in artifacts] == [("weights.bin", "model"), ("notes.txt", None)]
    copied = run.artifacts_dir / artifacts[0]["name"]
    assert copied.read_bytes() == b"\x00" * 100


def test_log_artifact_missing_file(repo, tmp_path):
    with rs.start_run(repo=repo):
        with pytest.raises((RunstoreError, FileNotFoundError)):
            rs.log_artifact(tmp_path / "nope.bin")


# --- threads ------------------------------------------------------------------


def test_threads_have_separate_active_runs(repo):
    barrier = threading.Barrier(3)
    seen: dict[int, tuple] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            assert rs.active_run() is None  # the main thread's run is not visible here
            with rs.start_run(name=f"worker-{i}", repo=repo) as run:
                barrier.wait(timeout=10)  # all three runs are active at once
                for step in range(20):
                    rs.log_metric("loss", float(i), step=step)
                rs.log_param("worker", i)
                with rs.start_run(name=f"child-{i}", nested=True) as child:
                    rs.log_metric("loss", 10.0 + i)
                seen[i] = (run.id, child.id, child.parent, rs.active_run() is run)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    with rs.start_run(name="main", repo=repo) as main:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        barrier.wait(timeout=10)
        rs.log_metric("loss", -1.0)
        for t in threads:
            t.join(timeout=30)
        assert rs.active_run() is main
    assert not errors, errors
    for i, (run_id, child_id, parent, was_active) in seen.items():
        stored = repo.get_run(run_id)
        assert stored.parent is None  # not nested under the main thread's run
        assert set(stored.sequence("loss").values.tolist()) == {float(i)}
        assert stored.params == {"worker": i}
        assert parent == run_id and was_active
        assert repo.get_run(child_id).sequence("loss").values.tolist() == [10.0 + i]
    assert repo.get_run(main.id).sequence("loss").values.tolist() == [-1.0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_starts_with_no_active_run(tmp_path):
    # Forked in a fresh interpreter: forked from this pytest process, the child inherits
    # the locks that threads of earlier tests hold (a leaked pyarrow Flight client's gRPC
    # destructor hung the child when test_server.py ran first; see test_concurrency.py).
    script = textwrap.dedent(
        f"""
        import os
        import runstore.fluent as rs
        with rs.start_run(repo={str(tmp_path / 'repo')!r}) as run:
            pid = os.fork()
            if pid == 0:  # the child must not touch the parent's run (LMDB handles do not cross fork)
                os._exit(0 if rs.active_run() is None else 1)
            _, status = os.waitpid(pid, 0)
            print(os.WEXITSTATUS(status), rs.active_run() is run, flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # the child saw no active run; the parent is unaffected
    assert proc.stdout.split() == ["0", "True"], proc.stdout + proc.stderr


# --- process exit -------------------------------------------------------------


@pytest.mark.parametrize(
    "ending, status",
    [("pass", "finished"), ("raise SystemExit(0)", "finished"), ("raise RuntimeError('boom')", "failed")],
)
def test_runs_never_ended_are_ended_at_exit(tmp_path, ending, status):
    script = textwrap.dedent(
        f"""
        import runstore.fluent as rs
        run = rs.start_run(repo={str(tmp_path / 'repo')!r})
        child = rs.start_run(nested=True)
        rs.log_metric("loss", 1.0)
        print(run.id, child.id, flush=True)
        {ending}
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=60)
    run_id, child_id = proc.stdout.split()
    repo = Repo(tmp_path / "repo", create=False)
    assert repo.get_run(run_id).status == status
    assert repo.get_run(child_id).status == status
    assert repo.get_run(child_id).sequence("loss").values.tolist() == [1.0]
