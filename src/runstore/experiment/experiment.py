"""Experiments: trials, each repeated with distinct seeds, resumable.

An experiment directory holds four YAML files (as in the Experiment Manager)::

    env.yaml         repo: ../runs        # where runs go (relative to this folder)
                     seed: 0              # base seed of every trial's repeats
                     progress: true
    experiment.yaml  name: iris           # the runs' experiment
                     description: ...
                     settings: {epochs: 20}
    base.yaml        settings: {lr: 0.1}  # shared by all trials
    trials.yaml      - name: small
                       repeat: 3
                       settings: {hidden: 8}

A trial's settings are experiment settings <- base <- trial. Each repeat is one
run holding the params ``trial``, ``repeat``, ``seed``, ``attempt`` and the
settings under ``hparams``; a parent run per trial (params ``kind: trial``) holds
``summary``: mean and std of every final metric over the trial's finished repeats.
The children point at it with ``run.parent``. Running again resumes: finished
repeats are skipped, failed or killed ones run again in a new run (the old one is
archived), so a trial always has one live run per repeat.

Above the trials, one run of ``kind: experiment`` records experiment.yaml (name, id,
desc, settings) and is the trials' parent. env.yaml may also set the Experiment
Manager's ``workspace``, ``verbose``, ``debug`` and ``trackers`` (see environment.py);
``Experiment.create(config_dir, factory)`` takes its ``PipelineFactory`` classes.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import random
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from omegaconf import MISSING, OmegaConf

from ..errors import ConfigError
from ._history import effective_status, is_live, runs_of, same_config
from ._progress import Progress
from .config import load_yaml, merge_layers, to_container
from .environment import EnvFile, Environment
from .factory import factory_in_use, is_seed_factory, is_seed_pipeline, make_pipeline, pipeline_name
from .levels import Level
from .pipeline import Pipeline, RunStatus

__all__ = ["Experiment", "Trial", "TrialResult"]

PipelineFactory = Callable[[Any, Any, int], Pipeline]


# -- what the YAML files may contain (their schemas give errors naming the file) -----------
@dataclasses.dataclass
class _ExperimentFile:
    name: str = MISSING
    description: Optional[str] = None
    desc: Optional[str] = None  # the Experiment Manager's spelling
    id: Optional[Any] = None
    settings: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _BaseFile:
    settings: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _TrialEntry:
    name: str = MISSING
    id: Optional[Any] = None
    description: Optional[str] = None
    repeat: int = 1
    seed: Optional[int] = None
    seeds: Optional[List[int]] = None
    settings: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One configuration of an experiment, run ``repeat`` times with ``seeds``."""

    name: str
    settings: dict[str, Any]
    repeat: int = 1
    seeds: tuple[int, ...] = ()
    description: str | None = None
    #: trials.yaml's ``id`` (kept on the trial's run as the param ``id``).
    id: Any = None

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"a trial needs a non-empty name, got {self.name!r}")
        if self.repeat < 1:
            raise ConfigError(f"trial {self.name!r}: repeat must be >= 1, got {self.repeat}")
        seeds = tuple(int(s) for s in self.seeds) if self.seeds else tuple(range(self.repeat))
        if len(seeds) != self.repeat:
            raise ConfigError(
                f"trial {self.name!r}: {len(seeds)} seeds given for {self.repeat} repeats; give one per repeat"
            )
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"trial {self.name!r}: the seeds {list(seeds)} repeat a value; each repeat needs its own")
        object.__setattr__(self, "seeds", seeds)


@dataclasses.dataclass
class TrialResult:
    """What :meth:`Experiment.run` did for one trial."""

    trial: str
    parent_id: str
    #: The run holding each repeat (None if the pipeline returned SKIPPED).
    run_ids: list[str | None]
    #: What happened to each repeat in this call (SKIPPED: it had finished before).
    statuses: list[RunStatus]
    #: ``{metric: {"mean": ..., "std": ..., "n": ...}}`` over the finished repeats.
    summary: dict[str, dict[str, float]]

    @property
    def executed(self) -> int:
        """How many repeats actually ran in this call."""
        return sum(s is not RunStatus.SKIPPED for s in self.statuses)


class Experiment:
    """A set of trials run by one pipeline factory into one repository.

    ``pipeline_factory(config, run, seed)`` returns the :class:`Pipeline` of one repeat
    (a Pipeline subclass itself works). ``config`` is the trial's resolved settings:
    an instance of ``schema`` if one is given, else a DictConfig.
    """

    def __init__(
        self,
        name: str,
        trials: list[Trial],
        pipeline_factory: PipelineFactory,
        *,
        repo: Any = None,
        description: str | None = None,
        schema: Any = None,
        params_key: str = "hparams",
        progress: bool = True,
        environment: Environment | None = None,
        experiment_id: Any = None,
        settings: dict[str, Any] | None = None,
        config_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not name:
            raise ConfigError("an experiment needs a name")
        names = [t.name for t in trials]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"experiment {name!r}: trial names must be unique, repeated: {', '.join(duplicates)}")
        self.name = name
        self.trials = list(trials)
        self.pipeline_factory = pipeline_factory
        self.repo = repo
        self.description = description
        self.schema = schema
        self.params_key = params_key
        self.progress = progress
        #: The root environment (env.yaml): workspace, logger, trackers.
        self.environment = environment
        #: experiment.yaml's ``id`` and ``settings``, kept on the experiment's run.
        self.experiment_id = experiment_id
        self.settings = dict(settings or {})
        self.config_dir = Path(config_dir) if config_dir is not None else None

    @classmethod
    def from_dir(
        cls,
        path: str | os.PathLike[str],
        pipeline_factory: PipelineFactory,
        *,
        repo: Any = None,
        schema: Any = None,
        params_key: str = "hparams",
    ) -> Experiment:
        """Read ``env.yaml`` (optional), ``experiment.yaml``, ``base.yaml`` (optional) and
        ``trials.yaml`` from a directory. ``repo`` overrides env.yaml's ``repo``, which is
        relative to the directory. ``schema`` (a dataclass) validates every trial's settings."""
        folder = Path(path)
        if not folder.is_dir():
            raise ConfigError(f"experiment directory {str(path)!r} does not exist")
        env = _read(folder / "env.yaml", EnvFile, optional=True)
        exp = _read(folder / "experiment.yaml", _ExperimentFile)
        base = _read(folder / "base.yaml", _BaseFile, optional=True)
        trials_path = folder / "trials.yaml"
        entries = load_yaml(trials_path)
        if not OmegaConf.is_list(entries) or len(entries) == 0:
            raise ConfigError(f"{trials_path}: must hold a non-empty list of trials (- name: ..., settings: ...)")
        trials = []
        for index, entry in enumerate(entries):
            label = f"{trials_path}, trial {index + 1}"
            if OmegaConf.is_dict(entry) and "name" in entry:
                label += f" ({entry['name']!r})"
            if not OmegaConf.is_dict(entry):
                raise ConfigError(f"{label}: each trial must be a mapping with name, settings and repeat")
            trial, _ = merge_layers(_TrialEntry, [(label, entry)], resolve=False)
            settings, _ = merge_layers(
                schema,
                [
                    (f"{folder / 'experiment.yaml'} settings", _raw(exp.settings)),
                    (f"{folder / 'base.yaml'} settings", _raw(base.settings)),
                    (f"{label} settings", _raw(trial.settings)),
                ],
            )
            first = trial.seed if trial.seed is not None else env.seed
            seeds = list(trial.seeds) if trial.seeds is not None else [first + i for i in range(trial.repeat)]
            try:
                trials.append(Trial(trial.name, to_container(settings), trial.repeat, tuple(seeds), trial.description,
                                    _plain_id(trial.id)))
            except ConfigError as exc:
                raise ConfigError(f"{label}: {exc}") from None
        env_path = folder / "env.yaml"
        environment = Environment.from_config(env_path if env_path.exists() else {}, repo=repo)
        return cls(
            exp.name,
            trials,
            pipeline_factory,
            repo=environment._repo,
            description=exp.description or exp.desc,
            schema=schema,
            params_key=params_key,
            progress=env.progress,
            environment=environment,
            experiment_id=_plain_id(exp.id),
            settings=to_container(OmegaConf.create(_raw(exp.settings))),
            config_dir=folder,
        )

    @classmethod
    def create(cls, config_dir: str | os.PathLike[str], factory: Any, **kwargs: Any) -> Experiment:
        """The Experiment Manager's name for :meth:`from_dir`: ``Experiment.create("configs", MyFactory)``."""
        return cls.from_dir(config_dir, factory, **kwargs)

    # -- running ------------------------------------------------------------------------------
    def run(self, *, rerun_finished: bool = False) -> list[TrialResult]:
        """Run every trial's missing repeats; returns one :class:`TrialResult` per trial.

        A repeat that failed is logged (its error and traceback kept on its run) and the
        experiment goes on; KeyboardInterrupt marks the current runs killed and stops.
        ``rerun_finished=True`` runs finished repeats again as well.
        """
        from ..tracking.repo import Repo

        root = self.environment if self.environment is not None else Environment(repo=self.repo, trackers=[])
        store = self.repo if isinstance(self.repo, Repo) else root.repository
        root._repo = store
        total = sum(t.repeat for t in self.trials)
        results = []
        self._finished_now = 0  # repeats finished by this call, for the Ctrl-C line
        env = root.create_child(self.name, Level.EXPERIMENT)
        record = self._experiment_run(store)
        env.run = record
        self._save_configs(env, record)
        manager = env.tracker_manager
        manager.on_create(Level.EXPERIMENT, self.name)
        manager.on_start(Level.EXPERIMENT)
        env.logger.info(f"experiment {self.name!r} started: {len(self.trials)} trials, {total} trial runs, "
                        f"run {record.id} in {store.path}")
        status = RunStatus.FAILED
        try:
            with Progress(total, f"experiment {self.name}", enabled=self.progress) as bar:
                for trial in self.trials:
                    results.append(self._run_trial(store, env, trial, bar, rerun_finished))
                for result in results:
                    bar.note(_summary_line(result))
            status = RunStatus.COMPLETED
            env.logger.info(f"experiment {self.name!r} ended")
        except KeyboardInterrupt:
            from ._announce import interrupted

            status = RunStatus.ABORTED
            raise interrupted(self._finished_now, 1) from None
        finally:
            done = status is RunStatus.COMPLETED and all(
                _finished(store, rid) for r in results for rid in r.run_ids if rid is not None)
            manager.on_end(Level.EXPERIMENT, status=status if status is not RunStatus.COMPLETED or done
                           else RunStatus.FAILED)
            if not record.closed:
                record.close("finished" if done else "killed" if status is RunStatus.ABORTED else "failed")
            env.close()
        return results

    def _experiment_run(self, repo: Any) -> Any:
        """The run of kind ``experiment`` (reopened when the experiment ran before)."""
        from ..tracking.run import Run

        earlier = [r for r in runs_of(repo, self.name) if r.params.get("kind") == "experiment" and not r.archived]
        if earlier:
            record = Run(repo=repo, run_id=earlier[-1].id)
        else:
            record = Run(repo=repo, experiment=self.name, name=self.name, description=self.description)
            record["kind"] = "experiment"
        # experiment.yaml's id is kept as ``yaml_id``: a param named ``id`` (or ``name``)
        # would shadow the run's own id/name attribute in keys such as ``runstore ls``'s.
        if self.experiment_id is not None:
            record["yaml_id"] = self.experiment_id
        if self.description is not None:
            record["desc"] = self.description
        if self.settings or "settings" not in record.params:
            record["settings"] = self.settings
        return record

    def _save_configs(self, env: Environment, record: Any) -> None:
        """Copy the YAML files into the experiment's configs/ (with a workspace) and keep
        them as experiment-level artifacts of its run."""
        if self.config_dir is None:
            return
        for name in ("env.yaml", "experiment.yaml", "base.yaml", "trials.yaml"):
            src = self.config_dir / name
            if not src.is_file():
                continue
            if env.workspace is not None:
                (env.config_dir / name).write_bytes(src.read_bytes())
            record.log_artifact(src, kind="config", level=Level.EXPERIMENT.label)

    def _run_trial(self, repo: Any, exp_env: Environment, trial: Trial, bar: Progress,
                   rerun_finished: bool) -> TrialResult:
        from ..tracking.run import Run

        key = self.params_key
        mine = [
            r for r in runs_of(repo, self.name)
            if r.params.get("trial") == trial.name and same_config(r.params.get(key), trial.settings)
        ]
        parents = [r for r in mine if r.params.get("kind") == "trial" and not r.archived]
        if parents:
            parent = Run(repo=repo, run_id=parents[-1].id)
            if parent.parent != exp_env.run.id:
                parent.parent = exp_env.run.id
        else:
            parent = Run(repo=repo, experiment=self.name, name=trial.name,
                         description=trial.description or self.description, parent=exp_env.run.id)
            parent["kind"] = "trial"
            parent["trial"] = trial.name
            parent[key] = trial.settings
        if trial.id is not None:
            parent["yaml_id"] = trial.id
        parent["repeats"] = trial.repeat
        parent["seeds"] = list(trial.seeds)

        env = exp_env.create_child(trial.name, Level.TRIAL)
        env.run = parent
        if env.workspace is not None:
            OmegaConf.save(OmegaConf.create({"name": trial.name, "id": trial.id, "repeat": trial.repeat,
                                             "settings": trial.settings}), env.config_dir / "trial.yaml")
        manager = env.tracker_manager
        manager.on_create(Level.TRIAL, trial.name)
        manager.on_start(Level.TRIAL)
        manager.log_params({key: trial.settings})
        env.logger.info(f"trial {trial.name!r} started: {trial.repeat} repeats, run {parent.id}")
        run_ids: list[str | None] = []
        statuses: list[RunStatus] = []
        try:
            for index, seed in enumerate(trial.seeds):
                earlier = [
                    r for r in mine
                    if r.params.get("kind") == "repeat" and r.params.get("repeat") == index and not r.archived
                ]
                bar.describe(f"{trial.name} repeat {index + 1}/{trial.repeat}")
                status, run_id = self._run_repeat(repo, env, trial, index, seed, parent, earlier, bar,
                                                  rerun_finished)
                run_ids.append(run_id)
                statuses.append(status)
        except KeyboardInterrupt:
            parent["summary"] = self._summary(repo, run_ids)
            parent.close("killed")
            manager.on_end(Level.TRIAL, status=RunStatus.ABORTED)
            env.close()
            raise
        summary = self._summary(repo, run_ids)
        parent["summary"] = summary
        done = all(_finished(repo, rid) for rid in run_ids if rid is not None)
        parent.close("finished" if done else "failed")
        manager.on_end(Level.TRIAL, status=RunStatus.COMPLETED if done else RunStatus.FAILED)
        env.close()
        return TrialResult(trial.name, parent.id, run_ids, statuses, summary)

    def _run_repeat(
        self, repo: Any, trial_env: Environment, trial: Trial, index: int, seed: int, parent: Any,
        earlier: list[Any], bar: Progress, rerun_finished: bool,
    ) -> tuple[RunStatus, str | None]:
        from ..tracking.run import Run

        label = f"{trial.name} repeat {index}"
        finished = [r for r in earlier if r.status == "finished"]
        if finished and not rerun_finished:
            bar.advance(f"{label}: skipped, finished before in run {finished[-1].id}")
            if finished[-1].parent != parent.id:
                repo.get_run(finished[-1].id).parent = parent.id
            return RunStatus.SKIPPED, finished[-1].id
        live = [r for r in earlier if is_live(r)]
        if live:
            bar.advance(f"{label}: skipped, run {live[-1].id} is running in process {live[-1].pid}")
            return RunStatus.SKIPPED, live[-1].id
        # Earlier attempts (failed, killed, or finished when rerunning) are archived, not
        # deleted: their curves and artifacts stay inspectable, and the trial keeps one
        # live run per repeat for queries.
        for old in earlier:
            if old.status == "running":  # its process died without a word (SIGKILL, power loss)
                Run(repo=repo, run_id=old.id).close("killed")
            repo.get_run(old.id).archived = True
        attempt = 1 + max((int(r.params.get("attempt", 1)) for r in earlier), default=0)

        run = Run(repo=repo, experiment=self.name, name=f"{trial.name}-{index}", parent=parent.id)
        run["kind"] = "repeat"
        run["trial"] = trial.name
        run["repeat"] = index
        run["seed"] = seed
        run["attempt"] = attempt
        run[self.params_key] = trial.settings
        env = trial_env.create_child(f"run_{index + 1}", Level.TRIAL_RUN)
        env.run = run
        env.seed = seed
        manager = env.tracker_manager
        manager.on_create(Level.TRIAL_RUN, run.name)
        manager.on_start(Level.TRIAL_RUN)
        env.logger.info(f"{label} started: seed {seed}, attempt {attempt}, run {run.id}")
        seed_everything(seed)
        status = RunStatus.FAILED
        try:
            config = OmegaConf.structured(self.schema) if self.schema is not None else None
            config = OmegaConf.merge(config, trial.settings) if config is not None else OmegaConf.create(trial.settings)
            config = OmegaConf.to_object(config) if self.schema is not None else config
            pipeline = self._make_pipeline(config, run, seed, env, trial)
            if not isinstance(pipeline, Pipeline):
                raise ConfigError(
                    f"the pipeline factory returned {type(pipeline).__name__}, not a runstore Pipeline"
                )
            if pipeline.env is None:
                pipeline.env = env  # env.yaml's trackers see runstore-native pipelines too
            status = _execute(pipeline, config)
        except KeyboardInterrupt:
            status = RunStatus.ABORTED
            if not run.closed:
                run.close("killed")
            bar.advance(f"{label}: aborted, run {run.id}")
            raise
        except Exception as exc:  # noqa: BLE001 - one failed repeat must not stop the others
            if "error" not in run.params:
                run["error"] = {"type": type(exc).__name__, "message": str(exc)[:2000],
                                "traceback": "".join(traceback.format_exception(exc))[-20000:]}
            if not run.closed:
                run.close("failed")
            env.logger.error(f"{label} failed: {type(exc).__name__}: {exc}")
            bar.note("".join(traceback.format_exception(exc)).rstrip())
            bar.advance(f"{label}: failed ({type(exc).__name__}: {exc}), run {run.id}")
            return RunStatus.FAILED, run.id
        finally:
            manager.on_end(Level.TRIAL_RUN, status=status)
            env.close()
        if status is RunStatus.SKIPPED:
            bar.advance(f"{label}: the pipeline skipped it")
            return status, None
        if not run.closed:
            run.close(status.run_status or "finished")
        env.logger.info(f"{label} ended: {status.value}")
        if run.status == "finished":
            self._finished_now = getattr(self, "_finished_now", 0) + 1
        results = pipeline.run_metrics
        shown = ", ".join(f"{_label(k)}={float(v):.4g}" for k, v in list(results.items())[:3] if _number(v))
        bar.advance(f"{label}: {status.value}{' (' + shown + ')' if shown else ''}, run {run.id}")
        return status, run.id

    def _make_pipeline(self, config: Any, run: Any, seed: int, env: Environment, trial: Trial) -> Any:
        """The trial run's pipeline from a runstore factory ``(config, run, seed)``, an
        Experiment Manager ``PipelineFactory`` or a Pipeline class written either way."""
        factory = self.pipeline_factory
        if is_seed_factory(factory):
            with factory_in_use(factory):  # where create(None, ...) finds the pipeline (factory.py)
                return factory.create(pipeline_name(config), config, env, trial.id)
        if is_seed_pipeline(factory):
            return make_pipeline(factory, env, config)
        return factory(config, run, seed)

    def _summary(self, repo: Any, run_ids: list[str | None]) -> dict[str, dict[str, float]]:
        """Mean and sample std (ddof=1; 0.0 for a single repeat) of each final metric."""
        values: dict[str, list[float]] = {}
        for run_id in run_ids:
            if run_id is None or not _finished(repo, run_id):
                continue
            for name, value in (repo.get_run(run_id).params.get("results") or {}).items():
                if _number(value):
                    values.setdefault(name, []).append(float(value))
        summary = {}
        for name, vals in values.items():
            arr = np.asarray(vals, dtype=np.float64)
            std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
            summary[name] = {"mean": float(arr.mean()), "std": std, "n": len(arr)}
        return summary


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and PyTorch if it is loaded."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:  # never import torch just for this
        torch.manual_seed(seed)


def _execute(pipeline: Pipeline, config: Any = None) -> RunStatus:
    method = pipeline.run
    if not getattr(method, "_runstore_run_step", False):
        # An undecorated run() still gets the lifecycle (status, callbacks, closing).
        method = Pipeline.run_step(type(pipeline).run).__get__(pipeline)
    # The Experiment Manager's pipelines take the config: run(self, config).
    status = method(config) if _takes_config(type(pipeline).run) else method()
    return status if isinstance(status, RunStatus) else RunStatus.COMPLETED


def _takes_config(fn: Any) -> bool:
    fn = inspect.unwrap(fn)
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
    return bool(params)


def _plain_id(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _label(key: Any) -> str:
    from .levels import metric_name

    return metric_name(key)


def _read(path: Path, schema: Any, optional: bool = False) -> Any:
    """A file checked against its schema, interpolations left for the merged settings."""
    if optional and not path.exists():
        return OmegaConf.structured(schema)
    layer = load_yaml(path)
    if not OmegaConf.is_dict(layer):
        raise ConfigError(f"{path}: must hold a mapping at the top level")
    cfg, _ = merge_layers(schema, [(str(path), layer)], resolve=False)
    return cfg


def _raw(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=False)


def _finished(repo: Any, run_id: str) -> bool:
    return effective_status(repo.get_run(run_id)) == "finished"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _summary_line(result: TrialResult) -> str:
    parts = [f"{name} {s['mean']:.4g} ± {s['std']:.2g} (n={s['n']})" for name, s in result.summary.items()]
    return f"{result.trial}: " + ("; ".join(parts) if parts else "no finished repeats")
