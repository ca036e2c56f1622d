"""Pipelines: a training loop whose run and epoch steps are wrapped for the user.

A subclass writes the science; the two decorators do the bookkeeping every training
loop repeats::

    class LogisticRegression(Pipeline):
        @Pipeline.run_step
        def run(self):
            for epoch in self.epochs(self.config.epochs):
                self.run_epoch(epoch)
            self.run_metrics["test_acc"] = self.evaluate()

        @Pipeline.epoch_step
        def run_epoch(self, epoch):
            self.epoch_metrics["train_loss"] = self.train_one_epoch()

``run_step`` calls the callbacks' ``on_start``/``on_end``, turns the outcome into a
:class:`RunStatus`, stores the final metrics on the run and closes it with the
matching run status. ``epoch_step`` tracks every numeric value put in
``epoch_metrics`` (with the epoch and step), hands the metrics to the callbacks and
stops the loop when one of them returns False.
"""

from __future__ import annotations

import enum
import functools
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..tracking.active import activated
from ._points import metric_points, scalar
from .levels import Level, Metric, metric_name

if TYPE_CHECKING:
    from .callbacks import Callback
    from .environment import Environment

__all__ = ["Pipeline", "RunStatus"]

F = TypeVar("F", bound=Callable[..., Any])


class RunStatus(enum.Enum):
    """What happened to a pipeline (or a repeat of a trial)."""

    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"  # a callback (early stopping) ended training before the last epoch
    FAILED = "failed"
    ABORTED = "aborted"  # interrupted (Ctrl-C, KeyboardInterrupt)
    SKIPPED = "skipped"  # nothing ran, e.g. a finished repeat when an experiment resumes

    @property
    def run_status(self) -> str | None:
        """The status a run gets for this outcome (None: SKIPPED leaves no run behind)."""
        return _RUN_STATUS[self]

    @property
    def finished(self) -> bool:
        """True when the outcome counts as done (COMPLETED or STOPPED)."""
        return self in (RunStatus.COMPLETED, RunStatus.STOPPED)


# STOPPED maps to "finished": early stopping is a normal way for training to end; the
# run also gets the param ``stopped_early=True`` so the two can be told apart.
_RUN_STATUS = {
    RunStatus.RUNNING: "running",
    RunStatus.COMPLETED: "finished",
    RunStatus.STOPPED: "finished",
    RunStatus.FAILED: "failed",
    RunStatus.ABORTED: "killed",
    RunStatus.SKIPPED: None,
}


class Pipeline:
    """Base class of a training pipeline.

    ``config`` is the (resolved) configuration, ``run`` the :class:`~runstore.Run` to
    track into (available as ``self.tracker``; None tracks nothing), ``seed`` the
    repeat's seed (``self.rng`` is a NumPy generator seeded with it) and ``callbacks``
    are registered in order. A subclass defines ``run()`` decorated with
    :meth:`run_step` and usually an epoch method decorated with :meth:`epoch_step`;
    an :class:`~runstore.Experiment` calls ``run()`` once per repeat.
    """

    #: Class-level default of ``self.untracked_metrics``: ``"model"`` is where
    #: :class:`~runstore.Checkpoint` looks for the model.
    untracked_metrics: frozenset[str] | set[str] = frozenset({"model"})

    def __init__(
        self,
        config: Any = None,
        run: Any = None,
        seed: int | None = None,
        callbacks: Iterable[Callback] = (),
        *,
        env: Environment | None = None,
    ) -> None:
        from .environment import Environment

        if isinstance(config, Environment):
            # The Experiment Manager's signature: Pipeline(env); the subclass sets self.config.
            env, config = config, None
        #: The Experiment Manager's environment (None for a runstore-native pipeline).
        self.env = env
        if env is not None:
            run = run if run is not None else env.run
            seed = seed if seed is not None else env.seed
        self.config = config
        self.tracker = run
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.callbacks: list[Callback] = []
        #: Metrics of the current epoch: tracked, then passed to the callbacks.
        self.epoch_metrics: dict[Any, Any] = {}
        #: Final metrics of the run: stored as the run's ``results`` param.
        self.run_metrics: dict[Any, Any] = {}
        #: One dict of numeric metrics per finished epoch (``{"epoch": e, ...}``).
        self.history: list[dict[str, Any]] = []
        self.status: RunStatus | None = None
        self.epoch: int | None = None
        #: The step epoch metrics are tracked at; None tracks them at the epoch index.
        self.step: int | None = None
        self.stopped_epoch: int | None = None
        #: Epoch metric names only handed to the callbacks, never tracked (a model, a plot).
        self.untracked_metrics: set[Any] = set(type(self).untracked_metrics)
        #: Close the run when ``run()`` ends (an Experiment relies on this).
        self.close_run = True
        self._stop_requested = False
        for callback in callbacks:
            self.register_callback(callback)
        if env is not None:
            env.tracker_manager.on_create(Level.PIPELINE)
            env.logger.info(f"pipeline {type(self).__name__} created")

    # -- user-facing helpers -------------------------------------------------------------
    def register_callback(self, callback: Callback) -> Callback:
        """Add a callback; it sees this pipeline as ``callback.pipeline``."""
        callback.pipeline = self
        self.callbacks.append(callback)
        return callback

    def epochs(self, count: int, start: int = 0) -> Iterator[int]:
        """``range(start, count)`` that ends as soon as a callback asked to stop."""
        for epoch in range(start, int(count)):
            if self._stop_requested:
                return
            yield epoch

    def request_stop(self) -> None:
        """Stop after the current epoch, as if a callback had returned False."""
        self._stop_requested = True
        if self.stopped_epoch is None:
            self.stopped_epoch = self.epoch

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    # -- the wrapped steps -----------------------------------------------------------------
    @staticmethod
    def run_step(fn: F) -> F:
        """Decorate ``run()``: status, callbacks, final metrics and closing the run.

        The wrapped method returns the :class:`RunStatus`. The function may itself return
        a RunStatus (e.g. SKIPPED); otherwise the outcome is COMPLETED, or STOPPED if a
        callback stopped training. An exception marks the run failed (KeyboardInterrupt:
        killed), calls every callback's ``on_end`` and is re-raised.
        """

        @functools.wraps(fn)
        def wrapper(self: Pipeline, *args: Any, **kwargs: Any) -> RunStatus:
            # The pipeline's run is the fluent API's active run meanwhile, so
            # runstore.log_metric(...) in user code lands in it (not in a stray run).
            with activated(self.tracker):
                return _run(self, *args, **kwargs)

        def _run(self: Pipeline, *args: Any, **kwargs: Any) -> RunStatus:
            self.status = RunStatus.RUNNING
            self._stop_requested = False
            self.stopped_epoch = None
            if self.env is not None:
                self.env.tracker_manager.on_start(Level.PIPELINE)
            try:
                for callback in self.callbacks:
                    callback.on_start()
                try:
                    returned = fn(self, *args, **kwargs)
                except StopIteration:
                    # The Experiment Manager's way to end training early from inside run().
                    self._stop_requested = True
                    returned = RunStatus.STOPPED
            except BaseException as exc:
                self.status = RunStatus.ABORTED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
                self._record_error(exc)
                self._end_callbacks(exc)
                self._finish_run()
                raise
            if isinstance(returned, RunStatus) and returned not in (RunStatus.RUNNING, RunStatus.COMPLETED):
                self.status = returned
            elif returned is RunStatus.COMPLETED and not self._stop_requested:
                self.status = returned
            else:
                self.status = RunStatus.STOPPED if self._stop_requested else RunStatus.COMPLETED
            try:
                self._end_callbacks(None)
            except BaseException as exc:
                self.status = RunStatus.FAILED
                self._record_error(exc)
                self._finish_run()
                raise
            self._finish_run()
            return self.status

        wrapper._runstore_run_step = True  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    @staticmethod
    def epoch_step(fn: F) -> F:
        """Decorate the per-epoch method (its first argument is the epoch index).

        Before the call ``epoch_metrics`` is emptied; after it every numeric value in it
        is tracked (``step`` = ``self.step`` if set, else the epoch) and the callbacks'
        ``on_epoch_end`` run. Returns RunStatus.STOPPED when training should stop, and
        skips the body of every later call, so a plain ``for`` loop also stops.
        """

        @functools.wraps(fn)
        def wrapper(self: Pipeline, epoch: int, *args: Any, **kwargs: Any) -> RunStatus:
            if self._stop_requested:
                return RunStatus.STOPPED
            self.epoch = int(epoch)
            self.epoch_metrics = {}
            manager = self.env.tracker_manager if self.env is not None else None
            if manager is not None:
                manager.on_create(Level.EPOCH, epoch=self.epoch)
                manager.on_start(Level.EPOCH, epoch=self.epoch)
            try:
                returned = fn(self, epoch, *args, **kwargs)
                self._end_epoch(self.epoch)
            except BaseException:
                if manager is not None:
                    manager.on_end(Level.EPOCH, status=RunStatus.FAILED)
                raise
            if manager is not None:
                manager.on_end(Level.EPOCH, status=RunStatus.STOPPED if self._stop_requested else RunStatus.COMPLETED)
            if self._stop_requested:
                return RunStatus.STOPPED
            return returned if isinstance(returned, RunStatus) else RunStatus.COMPLETED

        wrapper._runstore_epoch_step = True  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    # The Experiment Manager's names for the same decorators, for code ported from it.
    run_wrapper = run_step
    epoch_wrapper = epoch_step

    def run(self) -> RunStatus:
        """Override and decorate with :meth:`run_step`."""
        raise NotImplementedError(
            f"{type(self).__name__} must define run(), decorated with @Pipeline.run_step"
        )

    # -- internals ----------------------------------------------------------------------------
    def _end_epoch(self, epoch: int) -> None:
        points = self._epoch_points()  # validates everything before anything is tracked
        step = epoch if self.step is None else int(self.step)
        if self.env is not None:
            # Every tracker sees the epoch (runstore, log files, MLflow); the runstore
            # tracker writes into this pipeline's run.
            tracked = {k: v for k, v in self.epoch_metrics.items() if not self._untracked(k)}
            if tracked:
                self.env.tracker_manager.track_dict(tracked, step)
        elif self.tracker is not None and points:
            for name, context, value in points:
                self.tracker.track(value, name=name, step=step, epoch=epoch, context=context)
        numeric = {_column(name, context): value for name, context, value in points}
        self.history.append({"epoch": epoch, **numeric})
        keep_going = True
        for callback in self.callbacks:
            # Every callback sees every epoch (a checkpoint is still written on the epoch
            # early stopping fires); only an explicit False stops.
            if callback.on_epoch_end(epoch, dict(self.epoch_metrics)) is False:
                keep_going = False
        if not keep_going:
            self._stop_requested = True
            self.stopped_epoch = epoch

    def _untracked(self, key: Any) -> bool:
        if isinstance(key, Metric) and not key.tracked:
            return True
        return key in self.untracked_metrics or metric_name(key) in self.untracked_metrics

    def _epoch_points(self) -> list[tuple[str, dict | None, float]]:
        """(name, context, value) of every epoch metric to track.

        Pipelines accept what ``run.track`` accepts (anything with ``.item()``, so 0-d
        torch tensors too); a dict of numbers is one sequence per key with the key in
        the context (``{"label": key}``); ``Metric.CONFUSION`` a matrix (one sequence per
        cell); anything else raises instead of vanishing, unless its name is in
        ``untracked_metrics`` or it is an untracked Metric (NETWORK, DATA, ...)."""
        points: list[tuple[str, dict | None, float]] = []
        for name, value in self.epoch_metrics.items():
            if self._untracked(name):
                continue
            points.extend(metric_points(name, value, type(self).__name__) or [])
        return points

    def _record_error(self, exc: BaseException) -> None:
        """Keep what went wrong on the run: a failed repeat is inspectable later."""
        run = self.tracker
        if run is None or getattr(run, "closed", True) or isinstance(exc, KeyboardInterrupt):
            return
        try:
            run["error"] = {"type": type(exc).__name__, "message": str(exc)[:2000],
                            "traceback": "".join(traceback.format_exception(exc))[-20000:]}
        except Exception:  # noqa: BLE001 - never hide the original error behind this one
            pass

    def _end_callbacks(self, error: BaseException | None) -> None:
        """Call every ``on_end``; the first failure is raised after all ran."""
        first: BaseException | None = None
        for callback in self.callbacks:
            try:
                callback.on_end(dict(self.run_metrics))
            except Exception as exc:  # noqa: BLE001 - one callback must not hide the others
                if error is not None:
                    error.add_note(f"also, {type(callback).__name__}.on_end raised {exc!r}")
                elif first is None:
                    first = exc
        if first is not None:
            raise first

    def _finish_run(self) -> None:
        run = self.tracker
        if run is None or getattr(run, "closed", False):
            return
        status = self.status or RunStatus.FAILED
        if status.finished:
            results = {metric_name(k): scalar(v) for k, v in self.run_metrics.items() if scalar(v) is not None}
            run["results"] = results
            run["stopped_early"] = status is RunStatus.STOPPED
            if status is RunStatus.STOPPED and self.stopped_epoch is not None:
                run["stopped_epoch"] = int(self.stopped_epoch)
        if not self.close_run:
            return
        if status is RunStatus.SKIPPED:
            # SKIPPED means "nothing ran": leave no half-empty run behind.
            run.close(status="finished")
            run.repo.delete_run(run.id)
            return
        run.close(status=status.run_status or "failed")


def _column(name: str, context: dict | None) -> str:
    if not context:
        return name
    return name + "@" + ",".join(f"{k}={v}" for k, v in context.items())
