"""Trackers: plug-ins told about every level's lifecycle, metric, param and artifact.

An :class:`~runstore.experiment.Environment` holds a :class:`TrackerManager` that fans
each call out to its trackers. Every environment level (experiment, trial, trial run)
has its own manager, made by ``create_child``; a tracker decides whether a child is a
new object bound to the child environment (the built-in ones) or itself (the default,
so a simple custom tracker sees every level's events)::

    @Tracker.register("print")
    class PrintTracker(Tracker):
        def track(self, metric, value, step=None, *args, **kwargs):
            print(metric, value, step)

    # env.yaml
    trackers:
      - type: print

The runstore tracker is the record (its errors propagate: a value that cannot be
stored is the caller's mistake). Any other tracker's error is logged once per tracker
and method on the environment's logger and never reaches the training loop, the way
MLflow's autologgers never kill training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from ...errors import ConfigError
from ..levels import Level
from ..serializable import YAMLSerializable

if TYPE_CHECKING:
    from ..environment import Environment

__all__ = ["Tracker", "TrackerManager", "TrackScope", "tracker_class"]

# Tracker type names are matched case-insensitively, with or without "Tracker":
# "mlflow", "MLflow", "MLflowTracker" are one type.
_TRACKERS: dict[str, type] = {}


def _key(name: str) -> str:
    key = str(name).strip().lower().replace("_", "").replace("-", "")
    return key[: -len("tracker")] if key.endswith("tracker") and key != "tracker" else key


class Tracker(YAMLSerializable):
    """Base class: override the events you care about (each does nothing by default)."""

    @classmethod
    def register(cls, type_name: str) -> Any:  # type: ignore[override]
        """Class decorator: the tracker's name in env.yaml's ``trackers: - type: NAME``."""

        def decorator(subclass: type) -> type:
            _TRACKERS[_key(type_name)] = subclass
            YAMLSerializable._registry[type_name] = subclass
            return subclass

        return decorator

    @classmethod
    def from_config(cls, config: Any, env: Environment | None = None) -> Tracker:  # type: ignore[override]
        """Build from the tracker's env.yaml entry (``type`` removed); ``env`` is the root environment."""
        try:
            return cls(**dict(config or {}))
        except TypeError as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from None

    def create_child(self, env: Environment) -> Tracker:
        """The tracker for a child environment (default: this same object)."""
        return self

    # -- the lifecycle of every level --
    def on_create(self, level: Level, *args: Any, **kwargs: Any) -> None:
        """An entity at ``level`` was created."""

    def on_start(self, level: Level, *args: Any, **kwargs: Any) -> None:
        """An entity at ``level`` starts (an epoch gets ``epoch=``)."""

    def on_end(self, level: Level, *args: Any, **kwargs: Any) -> None:
        """An entity at ``level`` ended (``status=`` a RunStatus when known)."""

    # -- data --
    def track(self, metric: Any, value: Any, step: int | None = None, *args: Any, **kwargs: Any) -> None:
        """One metric value (a Metric or a name)."""

    def track_dict(self, metrics: dict[Any, Any], step: int | None = None, *args: Any, **kwargs: Any) -> None:
        """Several metrics at once; by default one :meth:`track` per entry."""
        for metric, value in metrics.items():
            self.track(metric, value, step, *args, **kwargs)

    def log_params(self, params: dict[str, Any]) -> None:
        """Parameters (hyperparameters) of the current level."""

    def on_add_artifact(self, level: Level, artifact_path: str, artifact_type: str | None = None,
                        *args: Any, **kwargs: Any) -> None:
        """A file belonging to ``level`` (experiment, trial, trial run, epoch)."""

    def on_checkpoint(self, network: Any, checkpoint_path: str, metrics: dict | None = None,
                      *args: Any, **kwargs: Any) -> None:
        """A checkpoint of ``network`` was written to ``checkpoint_path``."""

    def close(self) -> None:
        """The environment this tracker belongs to is done (release files, connections)."""


def tracker_class(type_name: str) -> type:
    """The tracker class registered under ``type_name`` (see :meth:`Tracker.register`)."""
    from . import log_tracker, mlflow_tracker, runstore_tracker  # noqa: F401 - register the built-ins

    found = _TRACKERS.get(_key(type_name))
    if found is None:
        known = ", ".join(sorted(_TRACKERS))
        raise ConfigError(
            f"unknown tracker type {type_name!r} (known: {known}); register a custom one with "
            f"@Tracker.register({type_name!r}) before the experiment is created"
        )
    return found


class TrackerManager:
    """Fans every tracker call out to several trackers (the Experiment Manager's name)."""

    def __init__(self, trackers: Iterable[Tracker] = (), env: Environment | None = None) -> None:
        self.trackers: list[Tracker] = list(trackers)
        self.env = env
        self._warned: set[tuple[int, str]] = set()

    def add_tracker(self, tracker: Tracker) -> None:
        self.trackers.append(tracker)

    def create_child(self, env: Environment) -> TrackerManager:
        return TrackerManager([t.create_child(env) for t in self.trackers], env)

    def _each(self, method: str, *args: Any, **kwargs: Any) -> None:
        from .runstore_tracker import RunstoreTracker

        for tracker in self.trackers:
            if isinstance(tracker, RunstoreTracker):
                getattr(tracker, method)(*args, **kwargs)  # the record: its errors are real errors
                continue
            try:
                getattr(tracker, method)(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a side tracker must never stop training
                key = (id(tracker), method)
                if key not in self._warned:
                    self._warned.add(key)
                    logger = getattr(self.env, "logger", None)
                    message = (f"{type(tracker).__name__}.{method} failed ({type(exc).__name__}: {exc}); "
                               "training goes on, later failures of this call are not reported")
                    if logger is not None:
                        logger.warning(message)

    def on_create(self, level: Level, *args: Any, **kwargs: Any) -> None:
        self._each("on_create", level, *args, **kwargs)

    def on_start(self, level: Level, *args: Any, **kwargs: Any) -> None:
        self._each("on_start", level, *args, **kwargs)

    def on_end(self, level: Level, *args: Any, **kwargs: Any) -> None:
        self._each("on_end", level, *args, **kwargs)

    def track(self, metric: Any, value: Any, step: int | None = None, *args: Any, **kwargs: Any) -> None:
        self._each("track", metric, value, step, *args, **kwargs)

    def track_dict(self, metrics: dict[Any, Any], step: int | None = None, *args: Any, **kwargs: Any) -> None:
        self._each("track_dict", metrics, step, *args, **kwargs)

    def log_params(self, params: dict[str, Any]) -> None:
        self._each("log_params", params)

    def on_add_artifact(self, level: Level, artifact_path: str, artifact_type: str | None = None,
                        *args: Any, **kwargs: Any) -> None:
        self._each("on_add_artifact", level, artifact_path, artifact_type, *args, **kwargs)

    def on_checkpoint(self, network: Any, checkpoint_path: str, metrics: dict | None = None,
                      *args: Any, **kwargs: Any) -> None:
        self._each("on_checkpoint", network, checkpoint_path, metrics, *args, **kwargs)

    def close(self) -> None:
        self._each("close")

    def get_tracker(self, cls: type) -> Any:
        """The first tracker that is an instance of ``cls`` (None if there is none)."""
        return next((t for t in self.trackers if isinstance(t, cls)), None)


class TrackScope:
    """``with TrackScope(manager, Level.TRIAL): ...`` calls ``on_start`` on entry and
    ``on_end`` on exit (with ``status="failed"`` when the block raised)."""

    def __init__(self, tracker_manager: TrackerManager, level: Level, *args: Any, **kwargs: Any) -> None:
        self.manager = tracker_manager
        self.level = Level(level)
        self.args = args
        self.kwargs = kwargs

    def __enter__(self) -> TrackerManager:
        self.manager.on_start(self.level, *self.args, **self.kwargs)
        return self.manager

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        from ..pipeline import RunStatus

        status = RunStatus.COMPLETED if exc_type is None else (
            RunStatus.ABORTED if issubclass(exc_type, KeyboardInterrupt) else RunStatus.FAILED)
        self.manager.on_end(self.level, status=status)
        return False
