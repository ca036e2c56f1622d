"""The Experiment Manager's log files: one ``logs/tracker.log`` per level's workspace.

Each line is ``<time> <LEVEL> <event> ...``: starts and ends of the level (with the
status), metrics (``epoch 3: train_loss=0.412 val_acc=0.87``), params and artifacts.
The experiment's file gets the experiment's events, a trial's file the trial's, a
trial run's file the trial run's, its pipeline's and its epochs'.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ...errors import ConfigError
from ..levels import Level, metric_name
from .._points import metric_points
from .base import Tracker

if TYPE_CHECKING:
    from ..environment import Environment

__all__ = ["LogTracker"]


@Tracker.register("log")
class LogTracker(Tracker):
    """Appends a line per event to ``<workspace>/logs/<filename>``."""

    def __init__(self, env: Environment | None = None, filename: str = "tracker.log") -> None:
        super().__init__()
        self.env = env
        self.filename = str(filename)
        self._file: TextIO | None = None
        self.epoch: int | None = None

    @classmethod
    def from_config(cls, config: Any, env: Environment | None = None) -> LogTracker:  # type: ignore[override]
        cfg = {k: v for k, v in dict(config or {}).items() if k != "type"}
        unknown = sorted(set(cfg) - {"filename"})
        if unknown:
            raise ConfigError(f"the log tracker takes only filename (got {', '.join(unknown)})")
        if env is not None and env.workspace is None:
            raise ConfigError("the log tracker writes under the workspace: set workspace: in env.yaml")
        return cls(env, **cfg)

    def create_child(self, env: Environment) -> LogTracker:
        return LogTracker(env, self.filename)

    @property
    def path(self) -> Path | None:
        if self.env is None or self.env.workspace is None:
            return None
        return self.env.log_dir / self.filename

    def _write(self, text: str) -> None:
        if self._file is None:
            path = self.path
            if path is None:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")
        stamp = datetime.datetime.now().isoformat(sep=" ", timespec="milliseconds")
        level = self.env.level.name if self.env is not None and self.env.level is not None else "-"
        self._file.write(f"{stamp} {level} {text}\n")
        self._file.flush()  # a crash keeps every line written before it

    def on_create(self, level: Level, *args: Any, **kwargs: Any) -> None:
        self._write(f"create {Level(level).name}" + (f" {args[0]}" if args else ""))

    def on_start(self, level: Level, *args: Any, epoch: int | None = None, **kwargs: Any) -> None:
        if Level(level) is Level.EPOCH:
            self.epoch = epoch
            return  # one line per epoch: its metrics
        self._write(f"start {Level(level).name}")

    def on_end(self, level: Level, *args: Any, status: Any = None, **kwargs: Any) -> None:
        if Level(level) is Level.EPOCH:
            return
        shown = getattr(status, "value", status)
        self._write(f"end {Level(level).name}" + (f" ({shown})" if shown is not None else ""))

    def track(self, metric: Any, value: Any, step: int | None = None, *args: Any, **kwargs: Any) -> None:
        self.track_dict({metric: value}, step)

    def track_dict(self, metrics: dict[Any, Any], step: int | None = None, *args: Any, **kwargs: Any) -> None:
        parts = []
        for key, value in metrics.items():
            for name, ctx, number in metric_points(key, value, "LogTracker") or []:
                label = name + ("[" + ",".join(f"{k}={v}" for k, v in ctx.items()) + "]" if ctx else "")
                parts.append(f"{label}={number:.6g}")
        if parts:
            where = f"epoch {self.epoch}" if self.epoch is not None else f"step {step}"
            self._write(f"{where}: " + " ".join(parts))

    def log_params(self, params: dict[str, Any]) -> None:
        from ..config import to_container

        plain = {str(k): to_container(v) if hasattr(v, "keys") else v for k, v in dict(params).items()}
        self._write("params " + json.dumps(plain, default=str, sort_keys=True))

    def on_add_artifact(self, level: Level, artifact_path: str, artifact_type: str | None = None,
                        *args: Any, **kwargs: Any) -> None:
        self._write(f"artifact {Level(level).name} {artifact_type or '-'} {artifact_path}")

    def on_checkpoint(self, network: Any, checkpoint_path: str, metrics: dict | None = None,
                      *args: Any, **kwargs: Any) -> None:
        shown = " ".join(f"{metric_name(k)}={v:.6g}" for k, v in (metrics or {}).items()
                         if isinstance(v, (int, float)))
        self._write(f"checkpoint {checkpoint_path}" + (f" ({shown})" if shown else ""))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
