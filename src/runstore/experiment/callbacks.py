"""Callbacks: code that watches a :class:`~runstore.Pipeline` epoch by epoch.

A callback is registered on a pipeline (``pipeline.register_callback(cb)`` or the
``callbacks=`` argument) and then sees ``self.pipeline`` and ``self.run``. The
pipeline's wrapped steps call ``on_start()`` before training, ``on_epoch_end(epoch,
metrics)`` after every epoch (returning False stops training) and ``on_end(metrics)``
with the final metrics -- also when training failed.
"""

from __future__ import annotations

import csv
import enum
import importlib.util
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = ["Callback", "Checkpoint", "CheckpointCallback", "EarlyStopping", "MetricsCSV", "MetricsTracker"]


class Callback:
    """Base class: override any of the three hooks."""

    #: Set by ``Pipeline.register_callback``.
    pipeline: Pipeline | None = None

    @property
    def run(self) -> Any:
        """The run the pipeline tracks into (None outside a pipeline or without a run)."""
        return self.pipeline.tracker if self.pipeline is not None else None

    def on_start(self) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        """Called after every epoch with its metrics; return False to stop training."""
        return True

    def on_end(self, metrics: dict[str, Any]) -> None:
        """Called once at the end (also after a failure) with the final metrics."""


class EarlyStopping(Callback):
    """Stop when ``metric`` has not improved for ``patience`` epochs.

    An epoch improves on the best value so far when it beats it by more than
    ``min_delta_percent`` percent of the best value's magnitude (``mode="min"``: lower
    is better, ``"max"``: higher is better). Training stops at the end of the epoch
    that makes ``patience`` epochs in a row without improvement, i.e. at epoch
    ``best_epoch + patience``. NaN never improves.
    """

    def __init__(
        self,
        metric: Any = None,
        patience: int = 5,
        min_delta_percent: float = 0.0,
        mode: str = "min",
        *args: Any,
        env: Any = None,
    ) -> None:
        from .environment import Environment

        if isinstance(metric, Environment):
            # The Experiment Manager's order: EarlyStopping(env, metric, patience, min_delta_percent, mode).
            env, rest = metric, [patience, min_delta_percent, mode, *args]
            metric, patience = rest[0], rest[1] if len(rest) > 1 else 5
            min_delta_percent = rest[2] if len(rest) > 2 else 0.0
            mode = rest[3] if len(rest) > 3 else "min"
        elif args:
            raise TypeError(f"EarlyStopping takes at most 4 positional arguments ({4 + len(args)} given)")
        if metric is None:
            raise ConfigError("EarlyStopping needs the metric to monitor, e.g. EarlyStopping('val_loss') "
                              "or EarlyStopping(env, Metric.VAL_LOSS)")
        self.env = env
        if mode not in ("min", "max"):
            raise ConfigError(f"EarlyStopping mode must be 'min' or 'max', not {mode!r}")
        if int(patience) != patience or patience < 0:
            raise ConfigError(f"EarlyStopping patience must be a whole number >= 0, not {patience!r}")
        if not min_delta_percent >= 0:
            raise ConfigError(f"EarlyStopping min_delta_percent must be >= 0, not {min_delta_percent!r}")
        #: The key monitored (a Metric or a name; either spelling is found in the epoch's metrics).
        self.metric = metric if isinstance(metric, enum.Enum) else str(metric)
        self.patience = int(patience)
        self.min_delta_percent = float(min_delta_percent)
        self.mode = mode
        self.on_start()

    def on_start(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def improves(self, value: float) -> bool:
        """Whether ``value`` counts as an improvement on the best value so far."""
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        margin = abs(self.best) * self.min_delta_percent / 100.0
        if self.mode == "min":
            return value < self.best - margin
        return value > self.best + margin

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        from .levels import metric_name

        if self.metric in metrics:
            value = float(metrics[self.metric])
        else:
            by_name = {metric_name(k): v for k, v in metrics.items()}
            wanted = metric_name(self.metric)
            if wanted not in by_name:
                raise ConfigError(
                    f"EarlyStopping monitors {wanted!r} but epoch {epoch} produced only "
                    f"{sorted(by_name) or 'no metrics'}; put it in epoch_metrics or fix the name"
                )
            value = float(by_name[wanted])
        if self.improves(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            if self.env is not None:
                self.env.logger.info(f"early stopping at epoch {epoch}: no improvement of "
                                     f"{self.metric} since epoch {self.best_epoch} (best {self.best:.6g})")
            return False
        return True


class _FileCallback(Callback):
    """Shared by callbacks that write files: into ``directory`` if given, else a temporary
    folder; either way each file is recorded as an artifact of the run when there is one."""

    def __init__(self, directory: str | os.PathLike[str] | None, kind: str) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.kind = kind
        #: Paths written (inside ``directory``) or artifact records (inside the repository).
        self.files: list[Path] = []

    def _write(self, filename: str, write: Callable[[Path], None]) -> Path:
        if self.directory is None and self.run is None:
            raise ConfigError(
                f"{type(self).__name__} has nowhere to write {filename!r}: the pipeline has no run; "
                "pass directory=... or give the pipeline a run"
            )
        with tempfile.TemporaryDirectory(prefix="runstore-") as tmp:
            target_dir = self.directory if self.directory is not None else Path(tmp)
            target_dir.mkdir(parents=True, exist_ok=True)
            path = target_dir / filename
            write(path)
            if not path.is_file():
                raise ConfigError(
                    f"{type(self).__name__}: nothing was written to {path} (a save function that adds "
                    "its own suffix, like numpy.save, needs the filename to end with it)"
                )
            if self.run is not None:
                record = self.run.log_artifact(path, kind=self.kind, name=filename)
                result = Path(record["path"]) if isinstance(record, dict) and "path" in record else path
            else:
                result = path
            if self.directory is not None:
                result = path
        self.files.append(result)
        return result


class Checkpoint(_FileCallback):
    """Save a checkpoint every ``interval`` epochs and record it as an artifact.

    ``save(path, pipeline)`` writes the file; without it, ``torch.save`` stores the
    ``state_dict()`` of ``pipeline.model`` (or of ``metrics["model"]``), which needs
    PyTorch. ``filename`` is formatted with ``epoch``. Epochs are 0-based, so
    ``interval=5`` saves after epochs 4, 9, 14, ...
    """

    def __init__(
        self,
        interval: int = 1,
        save: Callable[[Path, Any], None] | None = None,
        filename: str = "checkpoint-epoch{epoch:04d}.pt",
        directory: str | os.PathLike[str] | None = None,
        kind: str = "checkpoint",
    ) -> None:
        if int(interval) != interval or interval < 1:
            raise ConfigError(f"Checkpoint interval must be a whole number >= 1, not {interval!r}")
        if save is None and importlib.util.find_spec("torch") is None:
            raise ConfigError(
                "Checkpoint needs save=fn(path, pipeline) because PyTorch is not installed "
                "(without save=, checkpoints are written with torch.save)"
            )
        super().__init__(directory, kind)
        self.interval = int(interval)
        self.save = save
        self.filename = filename

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        if (epoch + 1) % self.interval == 0:
            self._write(self.filename.format(epoch=epoch), lambda path: self._save(path, metrics))
        return True

    def _save(self, path: Path, metrics: dict[str, Any]) -> None:
        if self.save is not None:
            self.save(path, self.pipeline)
            return
        import torch  # checked in __init__

        from .levels import Metric

        model = metrics.get(Metric.NETWORK, metrics.get("model", getattr(self.pipeline, "model", None)))
        if model is None:
            raise ConfigError(
                "Checkpoint without save= needs the model: set self.model on the pipeline "
                "or put it in epoch_metrics['model'] (or epoch_metrics[Metric.NETWORK])"
            )
        torch.save(model.state_dict() if hasattr(model, "state_dict") else model, path)


class MetricsCSV(_FileCallback):
    """Write the epoch metrics (one row per epoch) and the final metrics as CSV artifacts.

    ``filename`` gets the columns ``epoch, step`` and every numeric metric in order of
    first appearance; ``results_filename`` one row with the final metrics and the
    pipeline's status. Both are written at the end, including after a failure, so a
    failed run still has its curves as a file.
    """

    def __init__(
        self,
        filename: str = "metrics.csv",
        results_filename: str = "results.csv",
        directory: str | os.PathLike[str] | None = None,
        kind: str = "metrics",
    ) -> None:
        super().__init__(directory, kind)
        self.filename = filename
        self.results_filename = results_filename
        self.rows: list[dict[str, Any]] = []

    def on_start(self) -> None:
        self.rows = []

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        from .pipeline import scalar

        step = getattr(self.pipeline, "step", None)
        row: dict[str, Any] = {"epoch": epoch, "step": epoch if step is None else int(step)}
        from .levels import Metric, metric_name

        for key, value in metrics.items():  # what the pipeline tracks: numbers, tensors, dicts of numbers
            if isinstance(key, Metric) and not key.tracked:
                continue
            name = metric_name(key)
            if isinstance(value, dict):
                row.update({f"{name}@label={k}": scalar(v) for k, v in value.items() if scalar(v) is not None})
            elif scalar(value) is not None:
                row[name] = scalar(value)
        self.rows.append(row)
        return True

    def on_end(self, metrics: dict[str, Any]) -> None:
        from .pipeline import scalar

        columns: list[str] = []
        for row in self.rows:
            columns.extend(k for k in row if k not in columns)
        if not columns:
            columns = ["epoch", "step"]
        self._write(self.filename, lambda path: _write_csv(path, columns, self.rows))
        from .levels import metric_name

        final = {metric_name(k): scalar(v) for k, v in metrics.items() if scalar(v) is not None}
        status = getattr(self.pipeline, "status", None)
        final["status"] = status.value if status is not None else ""
        self._write(self.results_filename, lambda path: _write_csv(path, list(final), [final]))


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            # repr() keeps every digit of a float, so the CSV round-trips the tracked values.
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})



# -- the Experiment Manager's callbacks, built on an Environment ----------------------------
class MetricsTracker(MetricsCSV):
    """``MetricsTracker(env)``: the epoch metrics and final values as CSV in
    ``<artifact_dir>/metrics.log``, recorded as an artifact of the trial run.

    One row per epoch (``epoch, step, <metrics>``) and a last row whose epoch is
    ``final`` with the final metrics and the status. Without a workspace the file goes
    straight into the run's artifacts."""

    def __init__(self, env: Any = None, filename: str = "metrics.log") -> None:
        directory = env.artifact_dir if env is not None and env.workspace is not None else None
        super().__init__(filename=filename, results_filename="", directory=directory, kind="metrics")
        self.env = env

    def on_end(self, metrics: dict[str, Any]) -> None:
        from .levels import Level, metric_name
        from .pipeline import scalar

        final: dict[str, Any] = {"epoch": "final", "step": ""}
        final.update({metric_name(k): scalar(v) for k, v in metrics.items() if scalar(v) is not None})
        status = getattr(self.pipeline, "status", None)
        final["status"] = status.value if status is not None else ""
        rows = self.rows + [final]
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        if self.env is not None and self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / self.filename
            _write_csv(path, columns, rows)
            self.files.append(path)
            self.env.tracker_manager.on_add_artifact(Level.TRIAL_RUN, str(path), "metrics")
            return
        self._write(self.filename, lambda path: _write_csv(path, columns, rows))


class CheckpointCallback(Callback):
    """``CheckpointCallback(interval, env)``: every ``interval`` epochs save the model in
    ``epoch_metrics[Metric.NETWORK]`` (or ``pipeline.model``) with ``torch.save`` into
    ``<artifact_dir>/checkpoints/`` and tell the trackers (``on_checkpoint``): the
    runstore tracker records it as an epoch-level artifact of the trial run, MLflow
    uploads it. ``save(path, pipeline)`` replaces torch.save; a final checkpoint is
    written when training ends (``final.pth``), as the Experiment Manager does."""

    def __init__(self, interval: int = 1, env: Any = None, save: Callable[[Path, Any], None] | None = None,
                 filename: str = "checkpoint_epoch_{epoch}.pth", final: bool = True) -> None:
        if int(interval) != interval or interval < 1:
            raise ConfigError(f"CheckpointCallback interval must be a whole number >= 1, not {interval!r}")
        if env is None:
            raise ConfigError("CheckpointCallback needs the environment: CheckpointCallback(interval, env)")
        if save is None and importlib.util.find_spec("torch") is None:
            raise ConfigError("CheckpointCallback needs save=fn(path, pipeline) because PyTorch is not installed")
        self.interval = int(interval)
        self.env = env
        self.save = save
        self.filename = filename
        self.final = final
        self.files: list[Path] = []
        self._last_metrics: dict[Any, Any] = {}

    def _directory(self) -> Path:
        if self.env.workspace is not None:
            folder = self.env.artifact_dir / "checkpoints"
        else:
            run = self.run
            if run is None:
                raise ConfigError("CheckpointCallback has nowhere to write: no workspace and no run")
            folder = Path(tempfile.mkdtemp(prefix="runstore-ckpt-"))
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _save(self, path: Path, metrics: dict[Any, Any], announce: bool = True) -> Any:
        from .levels import Metric

        model = metrics.get(Metric.NETWORK, metrics.get("model", getattr(self.pipeline, "model", None)))
        if self.save is not None:
            self.save(path, self.pipeline)
        else:
            if model is None:
                raise ConfigError("CheckpointCallback needs the model: put it in epoch_metrics[Metric.NETWORK] "
                                  "or set self.model on the pipeline")
            import torch

            torch.save(model.state_dict() if hasattr(model, "state_dict") else model, path)
        if not path.is_file():
            raise ConfigError(f"CheckpointCallback: nothing was written to {path}")
        self.files.append(path)
        if announce:
            numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            self.env.tracker_manager.on_checkpoint(model, str(path), numbers)
        return path

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        self._last_metrics = dict(metrics)
        if (epoch + 1) % self.interval == 0:
            self._save(self._directory() / self.filename.format(epoch=epoch), metrics)
        return True

    def on_end(self, metrics: dict[str, Any]) -> None:
        status = getattr(self.pipeline, "status", None)
        if self.final and status is not None and status.finished and self._last_metrics:
            from .levels import Level

            path = self._directory() / "final.pth"
            self._save(path, self._last_metrics, announce=False)
            self.env.tracker_manager.on_add_artifact(Level.TRIAL_RUN, str(path), "model")


# -- built from YAML: Factory.create("EarlyStopping", {"metric": "val_loss", "patience": 3}, env) ------------
def _from_config(make: Callable[..., Any]) -> Any:
    def from_config(cls: type, config: Any, env: Any = None, *args: Any) -> Any:
        from omegaconf import OmegaConf

        options = OmegaConf.to_container(config, resolve=True) if OmegaConf.is_config(config) else dict(config or {})
        options.pop("type", None)
        try:
            return make(cls, env, options)
        except TypeError as exc:
            raise ConfigError(f"{cls.__name__} from config {options}: {exc}") from None

    return classmethod(from_config)


def _register_builtins() -> None:
    from .serializable import YAMLSerializable

    EarlyStopping.from_config = _from_config(lambda cls, env, o: cls(env=env, **o))  # type: ignore[attr-defined]
    MetricsTracker.from_config = _from_config(lambda cls, env, o: cls(env, **o))  # type: ignore[attr-defined]
    CheckpointCallback.from_config = _from_config(lambda cls, env, o: cls(env=env, **o))  # type: ignore[attr-defined]
    for cls in (EarlyStopping, MetricsTracker, CheckpointCallback, Checkpoint, MetricsCSV):
        YAMLSerializable.register(cls.__name__)(cls)


_register_builtins()
