"""Forwards the experiment to an MLflow tracking server or store (``runstore[mlflow]``).

The hierarchy becomes nested MLflow runs in one MLflow experiment: a run for the
experiment, a child run per trial, a grandchild per trial run (``mlflow.parentRunId``
tags, so MLflow's UI nests them). Metrics, params and artifacts go to the run of the
level they belong to; epoch metrics use the epoch as MLflow's step. MLflow's client
API is used (never the fluent ``mlflow.start_run`` state), so the tracker does not
disturb other MLflow code in the process.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ..levels import Level
from .._points import metric_points
from .base import Tracker

if TYPE_CHECKING:
    from ..environment import Environment

__all__ = ["MLflowTracker"]

_STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


def _mlflow() -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ImportError("the mlflow tracker needs MLflow: pip install 'runstore[mlflow]'") from None
    return MlflowClient


@Tracker.register("mlflow")
class MLflowTracker(Tracker):
    """``tracking_uri`` (e.g. ``sqlite:///mlruns.db``) and ``experiment_name`` as in env.yaml."""

    def __init__(self, tracking_uri: str | None = None, experiment_name: str | None = None,
                 env: Environment | None = None, parent: MLflowTracker | None = None) -> None:
        super().__init__()
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.env = env
        self.parent = parent
        self.run_id: str | None = None
        self.epoch: int | None = None
        self._client: Any = None
        self._experiment_id: str | None = None

    @classmethod
    def from_config(cls, config: Any, env: Environment | None = None) -> MLflowTracker:  # type: ignore[override]
        cfg = {k: v for k, v in dict(config or {}).items() if k != "type"}
        unknown = sorted(set(cfg) - {"tracking_uri", "experiment_name"})
        if unknown:
            raise ConfigError(f"the mlflow tracker takes tracking_uri and experiment_name (got {', '.join(unknown)})")
        _mlflow()  # a missing MLflow is an error before anything runs
        return cls(cfg.get("tracking_uri"), cfg.get("experiment_name"), env)

    def create_child(self, env: Environment) -> MLflowTracker:
        return MLflowTracker(self.tracking_uri, self.experiment_name, env, parent=self)

    # -- shared state lives at the root --
    @property
    def root(self) -> MLflowTracker:
        return self.parent.root if self.parent is not None else self

    @property
    def client(self) -> Any:
        root = self.root
        if root._client is None:
            root._client = _mlflow()(tracking_uri=root.tracking_uri)
        return root._client

    def _experiment(self) -> str:
        root = self.root
        if root._experiment_id is None:
            name = root.experiment_name or (self.env.experiment_name if self.env is not None else None) or "Default"
            found = self.client.get_experiment_by_name(name)
            root._experiment_id = found.experiment_id if found is not None else self.client.create_experiment(name)
        return root._experiment_id

    def _target(self) -> str | None:
        node: MLflowTracker | None = self
        while node is not None:
            if node.run_id is not None:
                return node.run_id
            node = node.parent
        return None

    # -- lifecycle --
    def on_start(self, level: Level, *args: Any, epoch: int | None = None, **kwargs: Any) -> None:
        level = Level(level)
        if level is Level.EPOCH:
            self.epoch = epoch
            return
        mine = self.env.level if self.env is not None else None
        if level > Level.TRIAL_RUN or self.run_id is not None or (mine is not None and mine != level):
            return
        tags = {"runstore.level": level.label}
        parent = self.parent._target() if self.parent is not None else None
        if parent is not None:
            tags["mlflow.parentRunId"] = parent
        run = self.env.run if self.env is not None else None
        if run is not None:
            tags["runstore.run_id"] = run.id
        name = self.env.name if self.env is not None else level.label
        created = self.client.create_run(self._experiment(), run_name=name, tags=tags)
        self.run_id = created.info.run_id

    def on_end(self, level: Level, *args: Any, status: Any = None, **kwargs: Any) -> None:
        level = Level(level)
        if level is Level.EPOCH:
            self.epoch = None
            return
        mine = self.env.level if self.env is not None else None
        if self.run_id is None or level > Level.TRIAL_RUN or (mine is not None and mine != level):
            return
        mapped = getattr(status, "run_status", None) if status is not None else "finished"
        self.client.set_terminated(self.run_id, _STATUS.get(mapped or "finished", "FINISHED"))

    # -- data --
    def track(self, metric: Any, value: Any, step: int | None = None, *args: Any, **kwargs: Any) -> None:
        self.track_dict({metric: value}, step)

    def track_dict(self, metrics: dict[Any, Any], step: int | None = None, *args: Any, **kwargs: Any) -> None:
        from mlflow.entities import Metric as MLflowMetric

        target = self._target()
        if target is None:
            return
        if step is None:
            step = self.epoch if self.epoch is not None else 0
        now = int(time.time() * 1000)
        batch = []
        for key, value in metrics.items():
            for name, ctx, number in metric_points(key, value, "MLflowTracker") or []:
                # MLflow keys allow letters, digits, _-./ and spaces: contexts become path parts.
                full = name + "".join(f"/{v}" for v in (ctx or {}).values())
                batch.append(MLflowMetric(full, number, now, int(step)))
        if batch:
            self.client.log_batch(target, metrics=batch)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        target = self._target()
        if target is None:
            return
        flat: dict[str, Any] = {}
        _flatten(params, "", flat)
        self.client.log_batch(target, params=[Param(k, str(v)[:6000]) for k, v in flat.items()])

    def on_add_artifact(self, level: Level, artifact_path: str, artifact_type: str | None = None,
                        *args: Any, **kwargs: Any) -> None:
        target = self._target()
        if target is None or not os.path.exists(artifact_path):
            return
        self.client.log_artifact(target, os.fspath(artifact_path), artifact_path=artifact_type or None)

    def on_checkpoint(self, network: Any, checkpoint_path: str, metrics: dict | None = None,
                      *args: Any, **kwargs: Any) -> None:
        self.on_add_artifact(Level.EPOCH, checkpoint_path, "checkpoints")


def _flatten(tree: Any, prefix: str, out: dict[str, Any]) -> None:
    if hasattr(tree, "items"):
        for key, value in tree.items():
            _flatten(value, f"{prefix}{key}.", out)
    elif prefix:
        out[prefix[:-1]] = tree
