"""The tracking API of Run, Sequence and Repo (issue 2)."""

import dataclasses
import math
import os

import numpy as np
import pytest
from omegaconf import OmegaConf

from runstore import Repo, Run, RunNotFoundError, SequenceNotFoundError
from runstore.errors import RunClosedError, RunstoreError


def test_repo_creates_directory_and_default_path(tmp_path, monkeypatch):
    repo = Repo(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b" / "data.mdb").is_file()
    assert len(repo) == 0
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNSTORE_REPO", raising=False)
    assert Repo().path == (tmp_path / ".runstore").resolve()
    monkeypatch.setenv("RUNSTORE_REPO", str(tmp_path / "env-repo"))
    assert Repo().path == (tmp_path / "env-repo").resolve()


def test_run_attributes(repo):
    run = Run(repo=repo, experiment="mnist", name="baseline", tags=["cnn"], description="first")
    assert len(run.id) == 24 and run.status == "running"
    assert (run.name, run.experiment, run.tags, run.description) == ("baseline", "mnist", ["cnn"], "first")
    assert run.hostname and run.pid == os.getpid() and run.ended_at is None and run.parent is None
    run.add_tag("best")
    run.add_tag("best")
    run.remove_tag("cnn")
    run.name = "renamed"
    run.close()
    view = repo.get_run(run.id)
    assert view.tags == ["best"] and view.name == "renamed" and view.status == "finished"
    assert view.ended_at >= view.created_at and view.duration >= 0


def test_ids_are_time_ordered(repo):
    ids = [Run(repo=repo).id for _ in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert [r.id for r in repo.runs()] == ids


def test_run_accepts_path_and_none(tmp_path, monkeypatch):
    run = Run(repo=tmp_path / "p")
    run.close()
    assert Repo(tmp_path / "p").get_run(run.id).status == "finished"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNSTORE_REPO", raising=False)
    with Run() as run:
        pass
    assert run.id in Repo(tmp_path / ".runstore")


def test_params_from_dict_omegaconf_dataclass(repo):
    @dataclasses.dataclass
    class Model:
        layers: int = 4
        act: str = "relu"

    @dataclasses.dataclass
    class Config:
        lr: float = 1e-3
        model: Model = dataclasses.field(default_factory=Model)
        sizes: list = dataclasses.field(default_factory=lambda: [1, 2])

    run = Run(repo=repo)
    run["hparams"] = {"lr": 1e-3, "model": {"layers": 4}}
    run["omega"] = OmegaConf.create({"a": 1, "b": "${a}", "c": [1, {"d": 2}]})
    run["dc"] = Config()
    run["np"] = {"x": np.float32(0.5), "arr": np.arange(3)}
    assert run["hparams"]["lr"] == 1e-3
    assert run["hparams.model.layers"] == 4
    assert run["omega"] == {"a": 1, "b": 1, "c": [1, {"d": 2}]}
    assert run["dc"] == {"lr": 1e-3, "model": {"layers": 4, "act": "relu"}, "sizes": [1, 2]}
    assert run["np"] == {"x": 0.5, "arr": [0, 1, 2]}
    copy = run.params
    copy["hparams"]["lr"] = 99
    assert run["hparams"]["lr"] == 1e-3  # read back as copies
    run.close()
    assert repo.get_run(run.id).params == run.params
    assert "hparams" in run and "nope" not in run


def test_track_steps_default_and_explicit(repo):
    run = Run(repo=repo)
    run.track(0.31, name="loss", step=10, epoch=1, context={"subset": "train"})
    run.track(0.29, name="loss", context={"subset": "train"})
    run.track(1.0, name="other")
    run.track(2.0, name="other")
    seq = run.sequence("loss", context={"subset": "train"})
    assert seq.steps.tolist() == [10, 11]
    assert seq.values.tolist() == [0.31, 0.29]
    assert seq.epochs[0] == 1 and math.isnan(seq.epochs[1])
    assert run.sequence("other").steps.tolist() == [0, 1]
    assert seq.count == 2 and seq.last == 0.29 and seq.last_step == 11 and seq.min == 0.29 and seq.max == 0.31
    assert seq.timestamps.dtype == np.float64 and (np.diff(seq.timestamps) >= 0).all()


def test_steps_may_repeat_and_go_backwards(repo):
    run = Run(repo=repo)
    for step, value in [(5, 1.0), (6, 2.0), (3, 3.0), (3, 4.0), (None, 5.0)]:
        run.track(value, name="loss", step=step)
    seq = run.sequence("loss")
    assert seq.steps.tolist() == [5, 6, 3, 3, 4]  # arrival order; default continues from the last step
    assert seq.values.tolist() == [1, 2, 3, 4, 5]


def test_context_key_order_and_nesting(repo):
    run = Run(repo=repo)
    run.track(1.0, name="m", context={"a": 1, "b": {"y": 2, "x": 1}})
    run.track(2.0, name="m", context={"b": {"x": 1, "y": 2}, "a": 1})
    run.track(3.0, name="m", context={})
    run.track(4.0, name="m")
    assert run.sequence("m", context={"b": {"x": 1, "y": 2}, "a": 1}).values.tolist() == [1.0, 2.0]
    assert run.sequence("m").values.tolist() == [3.0, 4.0]
    assert [ctx for _, ctx in run.sequences()] == [{"a": 1, "b": {"x": 1, "y": 2}}, {}]


def test_value_types(repo):
    run = Run(repo=repo)

    class TorchLike:
        def item(self):
            return 0.25

    for v in [1, 2.5, True, np.float32(1.5), np.int64(3), np.array(4.0), TorchLike(), float("nan"), float("inf"), -float("inf")]:
        run.track(v, name="v")
    values = run.sequence("v").values
    assert values[:7].tolist() == [1.0, 2.5, 1.0, 1.5, 3.0, 4.0, 0.25]
    assert math.isnan(values[7]) and values[8] == math.inf and values[9] == -math.inf
    seq = run.sequence("v")
    assert seq.min == -math.inf and seq.max == math.inf  # infinities kept
    run.track(float("nan"), name="only-nan")
    run.track(2.0, name="nan-then", step=0)
    run.track(float("nan"), name="nan-then")
    assert run.sequence("only-nan").min is None  # NaN is ignored by min and max
    assert run.sequence("nan-then").max == 2.0 and math.isnan(run.sequence("nan-then").last)


def test_log_metrics(repo):
    run = Run(repo=repo)
    run.log_metrics({"loss": 0.3, "acc": 0.9}, step=11, context={"subset": "val"})
    run.log_metrics({"loss": 0.2, "acc": 0.95}, context={"subset": "val"})
    assert run.sequence("acc", context={"subset": "val"}).steps.tolist() == [11, 12]
    assert run.sequence("loss", context={"subset": "val"}).values.tolist() == [0.3, 0.2]


def test_track_many_and_order_with_track(repo, small_blocks):
    run = Run(repo=repo)
    run.track(-1.0, name="x")
    run.track_many(np.arange(12.0), name="x")
    run.track(100.0, name="x")
    run.track_many([1, 2, 3], name="x", steps=[50, 51, 52], epochs=[0, 0, 1])
    seq = run.sequence("x")
    assert seq.values.tolist() == [-1.0, *range(12), 100.0, 1, 2, 3]
    assert seq.steps.tolist() == [*range(14), 50, 51, 52]
    assert np.isnan(seq.epochs[:14]).all() and seq.epochs[14:].tolist() == [0, 0, 1]
    run.close()
    assert repo.check() == []


def test_sequence_handle_append(repo):
    run = Run(repo=repo)
    loss = run.sequence("loss", context={"subset": "train"})
    for i in range(10):
        loss.append(float(i), epoch=i // 5)
    loss.append(np.float64(10), step=100)
    run.track(11.0, name="loss", context={"subset": "train"})
    assert loss.steps.tolist() == [*range(10), 100, 101]
    assert loss.epochs[:10].tolist() == [0] * 5 + [1] * 5 and np.isnan(loss.epochs[10:]).all()


def test_delete_sequence(repo):
    run = Run(repo=repo)
    run.track(1.0, name="loss", context={"subset": "train"})
    run.track(2.0, name="loss", context={"subset": "val"})
    run.delete_sequence("loss", context={"subset": "train"})
    assert run.sequences() == [("loss", {"subset": "val"})]
    with pytest.raises(SequenceNotFoundError):
        run.delete_sequence("loss", context={"subset": "train"})
    run.track(3.0, name="loss", context={"subset": "train"})  # a new sequence starts from step 0
    assert run.sequence("loss", context={"subset": "train"}).steps.tolist() == [0]
    run.close()
    assert repo.check() == []


def test_resume_keeps_appending(repo, small_blocks):
    run = Run(repo=repo, experiment="e", name="n")
    for i in range(7):
        run.track(float(i), name="loss", context={"subset": "train"})
    run.close()
    again = Run(repo=repo, run_id=run.id)
    assert again.status == "running" and again.name == "n"
    for i in range(7, 13):
        again.track(float(i), name="loss", context={"subset": "train"})
    again.close()
    seq = repo.get_run(run.id).sequence("loss", context={"subset": "train"})
    assert seq.steps.tolist() == list(range(13)) and seq.values.tolist() == list(map(float, range(13)))
    assert repo.check() == []


def test_context_manager_statuses(repo):
    with Run(repo=repo) as ok:
        ok.track(1.0, name="x")
    assert repo.get_run(ok.id).status == "finished"
    with pytest.raises(ZeroDivisionError):
        with Run(repo=repo) as bad:
            bad.track(1.0, name="x")
            1 / 0
    assert repo.get_run(bad.id).status == "failed"
    assert repo.get_run(bad.id).sequence("x").values.tolist() == [1.0]
    with pytest.raises(KeyboardInterrupt):
        with Run(repo=repo) as killed:
            raise KeyboardInterrupt
    assert repo.get_run(killed.id).status == "killed"


def test_closed_run_rejects_tracking(repo):
    run = Run(repo=repo)
    handle = run.sequence("x")
    run.close()
    with pytest.raises(RunClosedError, match="resume"):
        run.track(1.0, name="x")
    with pytest.raises(RunClosedError):
        handle.append(1.0)
    with pytest.raises(RunClosedError):
        run.track(1.0, name="new")
    with pytest.raises(RunClosedError):
        repo.get_run(run.id).track(1.0, name="x")


def test_get_run_delete_run(repo):
    run = Run(repo=repo)
    run.track(1.0, name="x")
    path = run.artifacts_dir
    run.close()
    assert len(repo) == 1 and run.id in repo
    repo.delete_run(run.id)
    assert len(repo) == 0 and not path.exists()
    with pytest.raises(RunNotFoundError):
        repo.get_run(run.id)
    with pytest.raises(KeyError):  # RunNotFoundError is also a KeyError
        repo.delete_run(run.id)
    with pytest.raises(RunstoreError):
        repo.get_run("not-an-id")
    assert repo.check() == []


def test_visible_before_close(repo):
    run = Run(repo=repo)
    run.track(1.0, name="x")
    run.flush()
    other = Repo(repo.path)
    assert other.get_run(run.id).status == "running"
    view = Run._view(other, run.id)
    assert view.sequence("x").values.tolist() == [1.0]
    run.close()


def test_artifacts(repo, tmp_path):
    src = tmp_path / "model.pt"
    src.write_bytes(b"weights")
    run = Run(repo=repo)
    entry = run.log_artifact(src, kind="checkpoint")
    assert entry["kind"] == "checkpoint" and entry["size"] == 7
    assert (run.artifacts_dir / "model.pt").read_bytes() == b"weights"
    assert run.artifacts_dir.is_relative_to(repo.path)
    run.log_artifact(src, name="copy.pt")
    assert [a["name"] for a in repo.get_run(run.id).artifacts] == ["model.pt", "copy.pt"]
    with pytest.raises(FileNotFoundError):
        run.log_artifact(tmp_path / "missing")
    run.close()


def test_parent_and_children(repo):
    parent = Run(repo=repo)
    child = Run(repo=repo, parent=parent)
    assert child.parent == parent.id
    assert [c.id for c in parent.children] == [child.id]
    with pytest.raises(ValueError):
        parent.parent = parent
