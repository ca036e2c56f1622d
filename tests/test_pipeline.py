"""Pipelines and callbacks: status mapping, epoch tracking, early stopping, checkpoints, CSV."""

from __future__ import annotations

import csv
import importlib.util

import numpy as np
import pytest

from runstore import Repo, Run
from runstore.errors import ConfigError
from runstore.experiment import Callback, Checkpoint, EarlyStopping, MetricsCSV, Pipeline, RunStatus


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "repo")


class Scripted(Pipeline):
    """Plays back a fixed list of per-epoch metrics; optionally fails at one epoch."""

    def __init__(self, run, values, callbacks=(), fail_at=None, interrupt_at=None, plain_loop=False, final=None):
        super().__init__({"epochs": len(values)}, run, seed=1, callbacks=callbacks)
        self.values = values
        self.fail_at = fail_at
        self.interrupt_at = interrupt_at
        self.plain_loop = plain_loop
        self.final = final or {"test_acc": 0.75}
        self.bodies_run = 0

    @Pipeline.run_step
    def run(self):
        epochs = range(len(self.values)) if self.plain_loop else self.epochs(len(self.values))
        for epoch in epochs:
            self.run_epoch(epoch)
        self.run_metrics.update(self.final)

    @Pipeline.epoch_step
    def run_epoch(self, epoch):
        self.bodies_run += 1
        if epoch == self.fail_at:
            raise ValueError(f"boom at {epoch}")
        if epoch == self.interrupt_at:
            raise KeyboardInterrupt
        for name, value in self.values[epoch].items():
            self.epoch_metrics[name] = value


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_start(self):
        self.calls.append("start")

    def on_epoch_end(self, epoch, metrics):
        self.calls.append(("epoch", epoch, sorted(metrics)))
        return True

    def on_end(self, metrics):
        self.calls.append(("end", dict(metrics)))


def losses(*values, name="val_loss"):
    return [{name: v, "train_loss": v + 1.0} for v in values]


# -- status mapping ------------------------------------------------------------------------------
def test_run_status_mapping():
    assert RunStatus.COMPLETED.run_status == "finished"
    assert RunStatus.STOPPED.run_status == "finished"
    assert RunStatus.FAILED.run_status == "failed"
    assert RunStatus.ABORTED.run_status == "killed"
    assert RunStatus.RUNNING.run_status == "running"
    assert RunStatus.SKIPPED.run_status is None
    assert {s.name for s in RunStatus} == {"RUNNING", "COMPLETED", "STOPPED", "FAILED", "ABORTED", "SKIPPED"}


def test_completed_pipeline_tracks_epochs_and_closes_run(repo):
    run = Run(repo=repo, experiment="p")
    rec = Recorder()
    pipe = Scripted(run, losses(0.9, 0.8, 0.7), callbacks=[rec])
    assert pipe.run() is RunStatus.COMPLETED
    stored = repo.get_run(run.id)
    assert stored.status == "finished"
    assert stored.params["results"] == {"test_acc": 0.75}
    assert stored.params["stopped_early"] is False
    seq = stored.sequence("val_loss")
    assert seq.values.tolist() == [0.9, 0.8, 0.7]
    assert seq.steps.tolist() == [0, 1, 2]
    assert seq.epochs.tolist() == [0.0, 1.0, 2.0]
    assert stored.sequence("train_loss").values.tolist() == pytest.approx([1.9, 1.8, 1.7])
    assert rec.calls[0] == "start"
    assert [c[1] for c in rec.calls if c[0] == "epoch"] == [0, 1, 2]
    assert rec.calls[-1] == ("end", {"test_acc": 0.75})
    assert [h["epoch"] for h in pipe.history] == [0, 1, 2]


def test_step_can_differ_from_epoch_and_non_numbers_only_reach_callbacks(repo):
    class Batches(Pipeline):
        @Pipeline.run_step
        def run(self):
            for epoch in self.epochs(3):
                self.run_epoch(epoch)

        @Pipeline.epoch_step
        def run_epoch(self, epoch):
            self.step = (epoch + 1) * 100  # e.g. the number of batches seen
            self.epoch_metrics["loss"] = np.float32(1.0 / (epoch + 1))
            self.epoch_metrics["model"] = object()

    seen = []

    class Spy(Callback):
        def on_epoch_end(self, epoch, metrics):
            seen.append(type(metrics["model"]).__name__)

    run = Run(repo=repo)
    Batches(None, run, callbacks=[Spy()]).run()
    seq = repo.get_run(run.id).sequence("loss")
    assert seq.steps.tolist() == [100, 200, 300]
    assert seq.epochs.tolist() == [0.0, 1.0, 2.0]
    assert [name for name, _ in repo.get_run(run.id).sequences()] == ["loss"]
    assert seen == ["object"] * 3  # None return counts as "continue"


def test_exception_marks_failed_calls_every_on_end_and_reraises(repo):
    run = Run(repo=repo)
    a, b = Recorder(), Recorder()

    class BrokenEnd(Callback):
        def on_end(self, metrics):
            raise RuntimeError("on_end broke too")

    pipe = Scripted(run, losses(0.5, 0.4, 0.3), callbacks=[a, BrokenEnd(), b], fail_at=1)
    with pytest.raises(ValueError, match="boom at 1") as info:
        pipe.run()
    assert pipe.status is RunStatus.FAILED
    assert repo.get_run(run.id).status == "failed"
    assert a.calls[-1][0] == "end" and b.calls[-1][0] == "end"  # the broken callback did not hide b
    assert any("on_end broke too" in note for note in getattr(info.value, "__notes__", []))
    assert repo.get_run(run.id).sequence("val_loss").values.tolist() == [0.5]  # epoch 0 was kept


def test_keyboard_interrupt_marks_killed(repo):
    run = Run(repo=repo)
    rec = Recorder()
    pipe = Scripted(run, losses(0.5, 0.4), callbacks=[rec], interrupt_at=1)
    with pytest.raises(KeyboardInterrupt):
        pipe.run()
    assert pipe.status is RunStatus.ABORTED
    assert repo.get_run(run.id).status == "killed"
    assert rec.calls[-1][0] == "end"


def test_failing_on_end_after_success_fails_the_run(repo):
    class Broken(Callback):
        def on_end(self, metrics):
            raise OSError("disk full")

    run = Run(repo=repo)
    with pytest.raises(OSError):
        Scripted(run, losses(0.5), callbacks=[Broken()]).run()
    assert repo.get_run(run.id).status == "failed"


def test_returning_skipped_leaves_no_run(repo):
    class Nothing(Pipeline):
        @Pipeline.run_step
        def run(self):
            return RunStatus.SKIPPED

    run = Run(repo=repo)
    assert Nothing(None, run).run() is RunStatus.SKIPPED
    assert run.id not in repo and len(repo) == 0


def test_pipeline_without_a_run(tmp_path):
    pipe = Scripted(None, losses(0.3, 0.2))
    assert pipe.run() is RunStatus.COMPLETED
    assert len(pipe.history) == 2


# -- early stopping --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mode, values, patience, stop_epoch, best_epoch",
    [
        # best at epoch 2, then 3 epochs without improvement -> stop at 2 + 3 = 5
        ("min", [1.0, 0.8, 0.5, 0.6, 0.55, 0.7, 0.4, 0.3], 3, 5, 2),
        # an improvement (epoch 4) resets the counter
        ("min", [1.0, 0.9, 0.95, 0.99, 0.85, 0.9, 0.9, 0.9, 0.1], 3, 7, 4),
        ("max", [0.1, 0.5, 0.7, 0.6, 0.65, 0.69, 0.9], 2, 4, 2),
        ("max", [0.1, 0.2, 0.3, 0.4, 0.5], 1, None, 4),  # always improving: never stops
    ],
)
def test_early_stopping_stops_at_the_right_epoch(repo, mode, values, patience, stop_epoch, best_epoch):
    metric = "val_loss" if mode == "min" else "val_acc"
    run = Run(repo=repo)
    stopper = EarlyStopping(metric, patience=patience, mode=mode)
    pipe = Scripted(run, losses(*values, name=metric), callbacks=[stopper])
    status = pipe.run()
    stored = repo.get_run(run.id)
    trained = len(values) if stop_epoch is None else stop_epoch + 1
    assert stored.sequence(metric).count == trained
    assert pipe.bodies_run == trained
    assert stopper.best_epoch == best_epoch
    assert stopper.stopped_epoch == stop_epoch
    if stop_epoch is None:
        assert status is RunStatus.COMPLETED and stored.params["stopped_early"] is False
    else:
        assert status is RunStatus.STOPPED
        assert stored.status == "finished"
        assert stored.params["stopped_early"] is True
        assert stored.params["stopped_epoch"] == stop_epoch
    assert stored.params["results"] == {"test_acc": 0.75}  # code after the loop still ran


def test_early_stopping_with_a_plain_for_loop_skips_later_epochs(repo):
    run = Run(repo=repo)
    pipe = Scripted(run, losses(1.0, 1.0, 1.0, 1.0, 1.0), callbacks=[EarlyStopping("val_loss", patience=1)], plain_loop=True)
    assert pipe.run() is RunStatus.STOPPED
    assert pipe.bodies_run == 2  # epoch 0 sets the best, epoch 1 does not improve -> stop
    assert repo.get_run(run.id).sequence("val_loss").count == 2


def test_min_delta_percent_ignores_tiny_improvements():
    stopper = EarlyStopping("loss", patience=2, min_delta_percent=10.0, mode="min")
    # 0.95 and 0.91 are within 10% of 1.0: no improvement; stop at epoch 2
    assert [stopper.on_epoch_end(e, {"loss": v}) for e, v in enumerate([1.0, 0.95, 0.91])] == [True, True, False]
    stopper.on_start()
    assert [stopper.on_epoch_end(e, {"loss": v}) for e, v in enumerate([1.0, 0.85, 0.8, 0.7])] == [True, True, True, True]
    assert stopper.best == 0.7
    up = EarlyStopping("acc", patience=1, min_delta_percent=5.0, mode="max")
    assert up.on_epoch_end(0, {"acc": -2.0}) and up.on_epoch_end(1, {"acc": -1.0})  # works for negative values too
    assert up.on_epoch_end(2, {"acc": -0.99}) is False


def test_nan_never_improves():
    stopper = EarlyStopping("loss", patience=1)
    assert stopper.on_epoch_end(0, {"loss": 1.0})
    assert stopper.on_epoch_end(1, {"loss": float("nan")}) is False


def test_early_stopping_validation():
    with pytest.raises(ConfigError, match="mode"):
        EarlyStopping("x", mode="lowest")
    with pytest.raises(ConfigError, match="patience"):
        EarlyStopping("x", patience=-1)
    with pytest.raises(ConfigError, match="val_loss.*train_loss"):
        EarlyStopping("val_loss").on_epoch_end(0, {"train_loss": 1.0})


# -- MetricsCSV -------------------------------------------------------------------------------------------
def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_metrics_csv_has_the_rows_tracked(repo):
    run = Run(repo=repo)
    values = [{"train_loss": 1 / (e + 3), "val_acc": 0.5 + e / 10} for e in range(6)]
    values[3]["lr"] = 0.01  # a metric that appears late gets its own column
    writer = MetricsCSV()
    Scripted(run, values, callbacks=[writer], final={"test_acc": 0.875, "test_loss": 0.3}).run()
    stored = repo.get_run(run.id)
    arts = {a["name"]: a for a in stored.artifacts}
    assert {"metrics.csv", "results.csv"} <= set(arts) and arts["metrics.csv"]["kind"] == "metrics"
    rows = read_csv(arts["metrics.csv"]["path"])
    assert list(rows[0]) == ["epoch", "step", "train_loss", "val_acc", "lr"]
    for name in ("train_loss", "val_acc"):
        seq = stored.sequence(name)
        assert [float(r[name]) for r in rows] == seq.values.tolist()  # exact: repr round-trips
        assert [int(r["epoch"]) for r in rows] == seq.epochs.astype(int).tolist()
        assert [int(r["step"]) for r in rows] == seq.steps.tolist()
    assert [r["lr"] for r in rows] == ["", "", "", "0.01", "", ""]
    results = read_csv(arts["results.csv"]["path"])
    assert results == [{"test_acc": "0.875", "test_loss": "0.3", "status": "completed"}]


def test_metrics_csv_is_written_after_a_failure_and_into_a_directory(tmp_path):
    writer = MetricsCSV(directory=tmp_path / "out")
    with pytest.raises(ValueError):
        Scripted(None, losses(0.5, 0.4, 0.3), callbacks=[writer], fail_at=2).run()
    rows = read_csv(tmp_path / "out" / "metrics.csv")
    assert [float(r["val_loss"]) for r in rows] == [0.5, 0.4]
    assert read_csv(tmp_path / "out" / "results.csv")[0]["status"] == "failed"


# -- Checkpoint ----------------------------------------------------------------------------------------------
def test_checkpoint_every_interval_is_an_artifact(repo):
    run = Run(repo=repo)
    saved = []

    def save(path, pipeline):
        saved.append(pipeline.epoch)
        np.save(path, np.arange(pipeline.epoch + 1))

    ckpt = Checkpoint(interval=2, save=save, filename="w-{epoch}.npy")
    Scripted(run, losses(*[1.0] * 7), callbacks=[ckpt]).run()
    assert saved == [1, 3, 5]
    stored = repo.get_run(run.id)
    arts = [a for a in stored.artifacts if a["kind"] == "checkpoint"]
    assert [a["name"] for a in arts] == ["w-1.npy", "w-3.npy", "w-5.npy"]
    for art in arts:
        assert (stored.artifacts_dir / art["name"]).is_file()
    assert np.load(stored.artifacts_dir / "w-5.npy").tolist() == list(range(6))


def test_checkpoint_that_writes_nothing_is_an_error(repo):
    ckpt = Checkpoint(interval=1, save=lambda path, p: np.save(str(path), [1]), filename="w-{epoch}")  # numpy adds .npy
    with pytest.raises(ConfigError, match="nothing was written"):
        Scripted(Run(repo=repo), losses(1.0), callbacks=[ckpt]).run()


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="PyTorch is installed")
def test_checkpoint_without_save_needs_torch():
    with pytest.raises(ConfigError, match="save="):
        Checkpoint(interval=1)


def test_checkpoint_validation():
    with pytest.raises(ConfigError, match="interval"):
        Checkpoint(interval=0, save=lambda p, q: None)
