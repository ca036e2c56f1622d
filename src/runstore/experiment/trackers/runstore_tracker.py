"""The default tracker: writes every event into the runstore repository.

One instance per environment. Inside an :class:`~runstore.experiment.Experiment`
the runs of the three outer levels are made by the experiment (it decides what to
resume) and handed over as ``env.run``; used on its own (an Environment and manual
``on_create``/``on_start``/``on_end`` calls, as in the Experiment Manager's docs) the
tracker creates them itself: a run per EXPERIMENT/TRIAL/TRIAL_RUN, each the parent of
the next, closed by ``on_end``.

PIPELINE, EPOCH and BATCH are not runs but where a point lands inside the trial
run's run: an EPOCH scope gives its points ``epoch=`` (and ``step=`` the epoch unless
one is given), a BATCH scope adds the context ``{"level": "batch"}``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import ConfigError
from .._points import metric_points
from ..levels import Level, Metric
from .base import Tracker

if TYPE_CHECKING:
    from ..environment import Environment

__all__ = ["RunstoreTracker"]

_RUN_LEVELS = (Level.EXPERIMENT, Level.TRIAL, Level.TRIAL_RUN)
_KINDS = {Level.EXPERIMENT: "experiment", Level.TRIAL: "trial", Level.TRIAL_RUN: "repeat"}


@Tracker.register("runstore")
class RunstoreTracker(Tracker):
    """Writes metrics, params and artifacts into the repository of ``env``."""

    def __init__(self, env: Environment | None = None) -> None:
        super().__init__()
        self.env = env
        self._own: dict[Level, Any] = {}  # runs this tracker created (manual use)
        self._active: list[Level] = []
        self.epoch: int | None = None

    @classmethod
    def from_config(cls, config: Any, env: Environment | None = None) -> RunstoreTracker:  # type: ignore[override]
        extra = sorted(k for k in dict(config or {}) if k != "type")
        if extra:
            raise ConfigError(f"the runstore tracker takes no settings (got {', '.join(extra)}); "
                              "the repository is env.yaml's repo:")
        return cls(env)

    def create_child(self, env: Environment) -> RunstoreTracker:
        return RunstoreTracker(env)

    # -- which run ---------------------------------------------------------------------
    def run_at(self, level: Level) -> Any:
        """The run holding ``level`` (PIPELINE/EPOCH/BATCH: the trial run's run)."""
        level = Level(level)
        if level > Level.TRIAL_RUN:
            level = Level.TRIAL_RUN
        env = self.env
        while env is not None:
            if env.level == level and env.run is not None:
                return env.run
            env = env.parent
        if level in self._own:
            return self._own[level]
        return None

    @property
    def run(self) -> Any:
        """The innermost run: this environment's, else the deepest one this tracker made."""
        if self.env is not None and self.env.run is not None:
            return self.env.run
        for level in reversed(_RUN_LEVELS):
            if level in self._own:
                return self._own[level]
        return None

    def _require_run(self, what: str) -> Any:
        run = self.run
        if run is None:
            raise ConfigError(
                f"RunstoreTracker.{what}: there is no run at this level yet; call "
                "on_create(Level.TRIAL_RUN) (or run inside an Experiment) first"
            )
        return run

    # -- lifecycle -----------------------------------------------------------------------
    def on_create(self, level: Level, *args: Any, **kwargs: Any) -> None:
        level = Level(level)
        if level not in _RUN_LEVELS or self.run_at(level) is not None:
            return
        from ...tracking.run import Run

        if self.env is None:
            raise ConfigError("RunstoreTracker needs an environment to know the repository")
        parent = None
        for outer in reversed(_RUN_LEVELS[: _RUN_LEVELS.index(level)]):
            parent = self.run_at(outer)
            if parent is not None:
                break
        name = str(args[0]) if args else kwargs.get("name") or self.env.name
        run = Run(repo=self.env.repository, experiment=self.env.experiment_name, name=name,
                  parent=parent.id if parent is not None else None)
        run["kind"] = _KINDS[level]
        self._own[level] = run

    def on_start(self, level: Level, *args: Any, epoch: int | None = None, **kwargs: Any) -> None:
        level = Level(level)
        if level <= Level.TRIAL_RUN:
            self.on_create(level, *args, **kwargs)  # a TrackScope without on_create still gets its run
        if level > Level.TRIAL_RUN:
            self._active.append(level)
        if level is Level.EPOCH:
            self.epoch = int(epoch) if epoch is not None else (self.epoch + 1 if self.epoch is not None else 0)

    def on_end(self, level: Level, *args: Any, status: Any = None, **kwargs: Any) -> None:
        level = Level(level)
        if level > Level.TRIAL_RUN:
            if level in self._active:
                del self._active[len(self._active) - 1 - self._active[::-1].index(level)]
            return
        run = self._own.pop(level, None)
        if run is not None and not run.closed:
            mapped = getattr(status, "run_status", None) if status is not None else "finished"
            run.close(mapped or "finished")

    # -- data --------------------------------------------------------------------------
    def track(self, metric: Any, value: Any, step: int | None = None, *args: Any,
              context: dict | None = None, epoch: int | None = None, **kwargs: Any) -> None:
        points = metric_points(metric, value, "RunstoreTracker.track")
        if not points:
            return
        run = self._require_run("track")
        if epoch is None and Level.EPOCH in self._active:
            epoch = self.epoch
        batch = Level.BATCH in self._active
        if step is None and epoch is not None and not batch:
            step = int(epoch)
        for name, ctx, number in points:
            merged = dict(context or {})
            merged.update(ctx or {})
            if batch:
                merged.setdefault("level", "batch")
            run.track(number, name=name, step=step, epoch=epoch, context=merged or None)
        if metric is Metric.CONFUSION:
            self._track_matrix(run, value, step, epoch, context)

    @staticmethod
    def _track_matrix(run: Any, value: Any, step: Any, epoch: Any, context: dict | None) -> None:
        """The whole matrix as one ``Array`` object sequence ``confusion_matrix`` too, when
        this runstore has object sequences (the cells above are what queries and SQL read)."""
        import runstore

        array_type = getattr(runstore, "Array", None)
        if array_type is None:
            return
        matrix = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
        run.track(array_type(matrix), name="confusion_matrix", step=step, epoch=epoch, context=context or None)

    def log_params(self, params: dict[str, Any]) -> None:
        from ..config import to_container

        run = self._require_run("log_params")
        for key, value in dict(params).items():
            run[str(key)] = to_container(value) if hasattr(value, "keys") or isinstance(value, list) else value

    def on_add_artifact(self, level: Level, artifact_path: str, artifact_type: str | None = None,
                        *args: Any, link: bool = False, name: str | None = None, epoch: int | None = None,
                        **kwargs: Any) -> None:
        level = Level(level)
        run = self.run_at(level) or self._require_run("on_add_artifact")
        if level >= Level.EPOCH and epoch is None:
            epoch = self.epoch
        run.log_artifact(os.fspath(artifact_path), kind=artifact_type, name=name, level=level.label,
                         epoch=epoch if level >= Level.EPOCH else None, link=link)

    def on_checkpoint(self, network: Any, checkpoint_path: str, metrics: dict | None = None,
                      *args: Any, **kwargs: Any) -> None:
        level = Level.EPOCH if Level.EPOCH in self._active or self.epoch is not None else Level.TRIAL_RUN
        self.on_add_artifact(level, checkpoint_path, "checkpoint", **kwargs)

    def close(self) -> None:
        for level in reversed(_RUN_LEVELS):
            run = self._own.pop(level, None)
            if run is not None and not run.closed:
                run.close("finished")
