"""Environments: the workspace folders, logger, trackers and repository of one level.

``Environment.from_config("configs/env.yaml")`` (or a dict / DictConfig with the same
keys) is the root; an :class:`~runstore.experiment.Experiment` makes a child per
experiment, trial and trial run, laid out as the Experiment Manager lays them out::

    <workspace>/<experiment>/          configs/ logs/ artifacts/
    <workspace>/<experiment>/trials/<trial>/          configs/ logs/ artifacts/
    <workspace>/<experiment>/trials/<trial>/run_<n>/  logs/ artifacts/

env.yaml keys (all optional): ``workspace`` (relative to the current directory, as in
the Experiment Manager), ``verbose`` (log to the console too), ``debug`` (DEBUG level
logs), ``trackers`` (a list of ``{type: ..., ...}``), ``repo`` (the runstore repository,
relative to env.yaml's folder; default ``<workspace>/.runstore`` when a workspace is
set, else ``$RUNSTORE_REPO`` or ``./.runstore``), ``seed`` (first seed of every trial's
repeats) and ``progress`` (the progress bar).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from .levels import Level
from .trackers.base import Tracker, TrackerManager, tracker_class

__all__ = ["Environment"]

_ids = itertools.count()


@dataclasses.dataclass
class EnvFile:
    """What env.yaml may hold (its schema: a misspelt key is an error naming the file)."""

    workspace: Optional[str] = None
    verbose: bool = False
    debug: bool = False
    trackers: List[Any] = dataclasses.field(default_factory=list)
    repo: Optional[str] = None
    seed: int = 0
    progress: bool = True
    settings: Dict[str, Any] = dataclasses.field(default_factory=dict)


class Environment:
    """Workspace, logger, trackers and repository of one level (or of the root)."""

    def __init__(
        self,
        workspace: str | os.PathLike[str] | None = None,
        *,
        verbose: bool = False,
        debug: bool = False,
        trackers: list[Tracker] | None = None,
        repo: Any = None,
        seed: int = 0,
        progress: bool = True,
        level: Level | None = None,
        name: str | None = None,
        parent: Environment | None = None,
        config: Any = None,
    ) -> None:
        self.workspace = Path(workspace) if workspace is not None else None
        self.verbose = bool(verbose)
        self.debug = bool(debug)
        self.seed = int(seed)
        self.progress = bool(progress)
        self.level = Level(level) if level is not None else None
        self.name = name or (self.workspace.name if self.workspace is not None else "root")
        self.parent = parent
        self.config = config if config is not None else OmegaConf.create({})
        #: The runstore run of this level (set by the Experiment or the runstore tracker).
        self.run: Any = None
        self._repo = repo
        self._logger: logging.Logger | None = None
        if self.workspace is not None and self.level is not None:
            self.setup_environment()  # the root's folder is made by its children
        if parent is None:
            from .trackers.runstore_tracker import RunstoreTracker

            trackers = list(trackers or [])
            if not any(isinstance(t, RunstoreTracker) for t in trackers):
                # The repository is always the record; other trackers are copies.
                trackers.insert(0, RunstoreTracker(self))
            self.tracker_manager = TrackerManager(trackers, self)
        else:
            self.tracker_manager = parent.tracker_manager.create_child(self)

    # -- building ---------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Any, *, repo: Any = None) -> Environment:
        """From env.yaml (a path to it or to its folder), a dict or a DictConfig."""
        from .config import load_yaml, merge_layers

        base_dir = Path.cwd()
        source = "env config"
        if isinstance(config, (str, os.PathLike)):
            path = Path(config)
            if path.is_dir():
                path = path / "env.yaml"
            if not path.exists():
                raise ConfigError(f"{path}: no such env.yaml")
            base_dir, source = path.parent, str(path)
            config = load_yaml(path)
        elif isinstance(config, dict):
            config = OmegaConf.create(config)
        elif config is None:
            config = OmegaConf.create({})
        if not OmegaConf.is_dict(config):
            raise ConfigError(f"{source}: must hold a mapping (workspace, verbose, debug, trackers, repo, seed)")
        cfg, _ = merge_layers(EnvFile, [(source, config)])
        if repo is None and cfg.repo is not None:
            repo = base_dir / os.path.expanduser(cfg.repo)
        elif repo is None and cfg.workspace is not None:
            repo = Path(cfg.workspace) / ".runstore"
        env = cls(cfg.workspace, verbose=cfg.verbose, debug=cfg.debug, repo=repo, seed=cfg.seed,
                  progress=cfg.progress, config=cfg, trackers=[])
        from .trackers.runstore_tracker import RunstoreTracker

        for index, entry in enumerate(cfg.trackers):
            tracker = _make_tracker(entry, env, f"{source}, trackers[{index}]")
            if not isinstance(tracker, RunstoreTracker):  # the runstore tracker is always there, once
                env.tracker_manager.add_tracker(tracker)
        return env

    def create_child(self, name: str, level: Level | None = None) -> Environment:
        """The environment of a child level: trials go under ``trials/``, runs directly under the trial."""
        if level is None:
            level = Level.EXPERIMENT if self.level is None else Level(min(self.level + 1, Level.BATCH))
        workspace = None
        if self.workspace is not None:
            workspace = self.workspace / ("trials" if level is Level.TRIAL else "") / name
        return Environment(workspace, verbose=self.verbose, debug=self.debug, repo=self._repo, seed=self.seed,
                           progress=self.progress, level=level, name=name, parent=self, config=self.config)

    def setup_environment(self) -> None:
        """Create the level's folders (configs/ only for the experiment and trials)."""
        assert self.workspace is not None
        for folder in (self.log_dir, self.artifact_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if self.level in (None, Level.EXPERIMENT, Level.TRIAL):
            self.config_dir.mkdir(parents=True, exist_ok=True)

    # -- folders, logger, repository ----------------------------------------------------------
    def _folder(self, name: str) -> Path:
        if self.workspace is not None and self.level is None:
            self.workspace.mkdir(parents=True, exist_ok=True)
        if self.workspace is None:
            raise ConfigError(f"this environment has no workspace, so no {name}/ folder; set workspace: in env.yaml")
        return self.workspace / name

    @property
    def log_dir(self) -> Path:
        return self._folder("logs")

    @property
    def artifact_dir(self) -> Path:
        return self._folder("artifacts")

    @property
    def config_dir(self) -> Path:
        return self._folder("configs")

    @property
    def logger(self) -> logging.Logger:
        """Writes ``logs/<level>.log`` in the workspace and, when verbose, stderr."""
        if self._logger is None:
            logger = logging.getLogger(f"runstore.experiment.env{next(_ids)}.{self.name}")
            logger.propagate = False
            logger.setLevel(logging.DEBUG if self.debug else logging.INFO)
            fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
            if self.workspace is not None:
                label = self.level.label if self.level is not None else "environment"
                self.log_dir.mkdir(parents=True, exist_ok=True)
                handler: logging.Handler = logging.FileHandler(self.log_dir / f"{label}.log", encoding="utf-8")
                handler.setFormatter(fmt)
                logger.addHandler(handler)
            if self.verbose:
                console = logging.StreamHandler(sys.stderr)
                console.setFormatter(logging.Formatter(f"{self.name}: %(message)s"))
                logger.addHandler(console)
            if not logger.handlers:
                logger.addHandler(logging.NullHandler())
            self._logger = logger
        return self._logger

    @property
    def repository(self) -> Any:
        """The runstore :class:`~runstore.Repo` (opened on first use)."""
        from ..tracking.repo import Repo

        if not isinstance(self._repo, Repo):
            self._repo = Repo(self._repo)
            if self.parent is not None and not isinstance(self.parent._repo, Repo):
                self.parent._repo = self._repo
        return self._repo

    @property
    def experiment_name(self) -> str:
        """The name of the experiment this environment belongs to."""
        env: Environment | None = self
        while env is not None:
            if env.level is Level.EXPERIMENT:
                return env.name
            env = env.parent
        return self.name

    def close(self) -> None:
        """Close the log files and the trackers of this level."""
        self.tracker_manager.close()
        if self._logger is not None:
            for handler in list(self._logger.handlers):
                handler.close()
                self._logger.removeHandler(handler)
            self._logger = None

    def __repr__(self) -> str:
        level = self.level.name if self.level is not None else "root"
        return f"<Environment {level} {self.name!r} workspace={str(self.workspace) if self.workspace else None}>"


def _make_tracker(entry: Any, env: Environment, where: str) -> Tracker:
    if isinstance(entry, str):
        entry = {"type": entry}
    if not OmegaConf.is_dict(entry) and not isinstance(entry, dict):
        raise ConfigError(f"{where}: a tracker is a mapping with a type (e.g. - type: mlflow), got {entry!r}")
    config = OmegaConf.to_container(entry, resolve=True) if isinstance(entry, DictConfig) else dict(entry)
    if "type" not in config:
        raise ConfigError(f"{where}: a tracker needs a type (runstore, log, mlflow or a registered name)")
    try:
        cls = tracker_class(str(config["type"]))
        return cls.from_config({k: v for k, v in config.items() if k != "type"}, env)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
