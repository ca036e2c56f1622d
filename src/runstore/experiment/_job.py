"""One Hydra job of ``@runstore.main``: validate, match earlier runs, run, record.

Hydra composes the config (defaults list, config groups, overrides) and launches
the jobs (basic launcher in this process, joblib/submitit in others); this module
is the task function it calls once per job. Everything it needs travels in a
picklable :class:`JobSpec`, because launchers such as joblib pickle the task
function into worker processes.

Per job: the composed config is validated against the schema (errors name the
field, its value and the override, config group or file that set it); ``update``
may derive values; the result is compared with the runs of the experiment
(HydraFlow's semantics: identical finished config -> skipped; failed or killed ->
resumed in place as a new attempt); the run stores the config as ``hparams``,
the command-line overrides as ``overrides`` and the config-group choices as
``choices``, Hydra's ``.hydra/`` folder as the artifact ``hydra``, and a
``runstore.json`` in the job's output folder points back at the run
(:func:`runstore.iter_run_dirs`, :meth:`runstore.Run.load`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError
from . import _announce
from ._history import effective_status, is_live, runs_of, same_config
from .config import to_container
from .rundirs import write_marker

# Runs used by the jobs that ran in this process (the basic launcher's), in order;
# main()'s wrapper sets it to a list for the duration of one call and returns it.
collected: list[Any] | None = None

# The ConfigStore group that carries ``--config FILE`` (see main._config_file_overrides).
FILES_GROUP = "runstore_files"


@dataclasses.dataclass
class JobSpec:
    """What a job needs, picklable (launchers ship it to other processes)."""

    fn: Callable[[Any, Any], Any]
    schema: Any
    repo: str | None  # absolute path or URL; None: Repo()'s default
    experiment: str | None  # None: Hydra's job name (the script's name)
    params_key: str
    name: str | None
    tags: list[str] | None
    chdir: bool
    force_new_run: bool
    rerun_finished: bool
    match_overrides: bool
    update: Callable[[Any], Any] | None
    dry_run: bool
    quiet: bool
    script: str
    primary: str  # what the primary config is, for errors ("conf/config.yaml")
    files: dict[str, str]  # runstore_files option -> the --config file it holds
    from_command_line: bool
    loose: bool = False  # untyped without a config folder: main() turned key=value into ++key=value


def run_job(spec: JobSpec, cfg: DictConfig) -> Any:
    """The task function Hydra calls; returns what ``fn`` returned (a sweeper such as
    Optuna's reads its objective from it) or, for a skipped job, what the finished
    run's function returned (the param ``result``)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    raw_overrides = [str(o) for o in hc.overrides.task]
    overrides = [_show_override(o, spec.files, spec.loose) for o in raw_overrides]
    choices = {
        str(k): v for k, v in hc.runtime.choices.items()
        if not str(k).startswith("hydra/") and not str(k).startswith(FILES_GROUP)
    }
    label = " ".join(overrides) or "(defaults)"
    try:
        value = validate(cfg, spec.schema, overrides, choices, spec.primary)
        if spec.update is not None:
            value = _apply_update(spec, value, overrides, choices)
        params = to_container(value)
    except ConfigError as exc:
        if spec.from_command_line and str(hc.mode) == "RunMode.RUN":
            # one config, one mistake: a message, not a traceback
            print(f"{spec.script}: error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        raise
    if spec.dry_run:
        multirun = str(hc.mode) == "RunMode.MULTIRUN"
        print((f"# {label}\n" if multirun else "") + OmegaConf.to_yaml(params), end="", flush=True)
        return None

    from .. import Repo, Run

    repo = Repo(spec.repo)
    experiment = spec.experiment or hc.job.name
    with _claim(repo):
        action, previous = decide(repo, experiment, spec, params, overrides)
        if action == "skip":
            _announce.say(_skip_message(label, previous, experiment), spec.quiet)
            _collect(previous)
            return previous.params.get("result")
        if action == "resume":
            attempt = int(previous.params.get("attempt", 1)) + 1
            run = Run(repo=repo, run_id=previous.id)
        else:
            attempt = 1
            run = Run(repo=repo, experiment=experiment, name=spec.name or (" ".join(overrides) or None),
                      tags=spec.tags)
        try:
            # Still under the lock: a process deciding next must see this run's config,
            # or it would start the same job again.
            stored = {spec.params_key: params, "overrides": overrides, "attempt": attempt}
            if choices:
                stored["choices"] = choices
            if type(run) is Run:
                run.update_params(stored)  # one transaction
            else:  # a server's RemoteRun ships each param itself
                for key, value in stored.items():
                    run[key] = value
        except BaseException:
            run.close("failed")
            raise
    try:
        _record_output_dir(run, hc, experiment)
    except BaseException:
        run.close("failed")
        raise
    _collect(run)
    if action == "resume":
        _announce.say(f"{label}: resuming run {previous.id} ({effective_status(previous)}) as attempt {attempt}",
                      spec.quiet)
    _announce.say(_announce.start_line(spec.script, run, repo, resumed=action == "resume"), spec.quiet)
    from ..tracking.active import activated

    try:
        # The run is the fluent API's active run while fn runs, so runstore.log_metric(...)
        # inside it lands here, as mlflow.log_metric does inside hydraflow.main.
        with activated(run), _working_dir(run.artifacts_dir if spec.chdir else None):
            result = spec.fn(run, value)
    except KeyboardInterrupt:
        run.close("killed")
        finished = sum(1 for r in collected or () if r is not run and r.status == "finished")
        raise _announce.interrupted(finished, 1) from None
    except SystemExit as exc:  # sys.exit() in the function: its code says how it went
        run.close("finished" if exc.code in (0, None) else "failed")
        _announce.say(_announce.end_line(spec.script, run), spec.quiet)
        raise
    except BaseException:
        run.close("failed")
        _announce.say(_announce.end_line(spec.script, run), spec.quiet)
        raise
    if isinstance(result, (int, float, str)) and not run.closed:
        run["result"] = result  # a skipped rerun returns it to the sweeper
    if not run.closed:
        run.close("finished")
    _announce.say(_announce.end_line(spec.script, run), spec.quiet)
    return result


# -- validation ------------------------------------------------------------------------------
def validate(cfg: DictConfig, schema: Any, overrides: list[str], choices: dict[str, Any], primary: str) -> Any:
    """The composed config checked against ``schema`` and resolved.

    Returns an instance of the schema (a resolved DictConfig without one). Errors
    name the field, its value and where it came from.
    """
    if schema is None:
        plain = cfg.copy()
        try:
            OmegaConf.resolve(plain)
        except OmegaConfBaseException as exc:
            raise _error(exc, cfg, overrides, choices, primary, "cannot resolve") from None
        return plain
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    except OmegaConfBaseException as exc:
        raise _error(exc, cfg, overrides, choices, primary, "does not fit the schema", schema) from None
    missing = sorted(OmegaConf.missing_keys(typed))
    if missing:
        key = missing[0]
        raise ConfigError(
            f"required field {key!r} of {schema.__name__} has no value (not set by {primary} "
            f"or any override); set it on the command line as {key}=... or in the config"
        )
    try:
        OmegaConf.resolve(typed)
        return OmegaConf.to_object(typed)
    except OmegaConfBaseException as exc:
        raise _error(exc, cfg, overrides, choices, primary, "cannot resolve", schema) from None


def _error(exc: OmegaConfBaseException, cfg: DictConfig, overrides: list[str], choices: dict[str, Any],
           primary: str, what: str, schema: Any = None) -> ConfigError:
    key = getattr(exc, "full_key", None) or ""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = origin(key, overrides, choices, primary) if key else primary
    if schema is not None and "not in" in message and "Key" in message:
        known = [f.name for f in dataclasses.fields(schema)] if "." not in key else []
        return ConfigError(
            f"unknown field {key!r} (set by {where}), not in the schema {schema.__name__}"
            + (f" (known here: {', '.join(known)})" if known else "")
            + "; add it to the schema, or remove it"
        )
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=False) if key else None
        value = OmegaConf.to_container(value, resolve=False) if isinstance(value, (DictConfig,)) else value
    except OmegaConfBaseException:
        value = None
    shown = f" = {value!r}" if key else ""
    return ConfigError(f"field {key or '?'!r}{shown} (set by {where}) {what}: {message}")


def origin(key: str, overrides: list[str], choices: dict[str, Any], primary: str) -> str:
    """Where a dotted key's value came from: an override, a config group, else the primary config."""
    for text in reversed(overrides):
        target = text.lstrip("+~").split("=", 1)[0].split("@", 1)[0]
        dotted = target.replace("/", ".")
        if key == dotted or key.startswith(dotted + "."):
            if target in choices:  # a config group selected on the command line
                option = choices[target]
                return f"the config group {target}={option} ({target}/{option}.yaml, chosen by the override {text!r})"
            return f"the override {text!r}"
    for group, option in choices.items():
        dotted = group.replace("/", ".")
        if key == dotted or key.startswith(dotted + "."):
            return f"the config group {group}={option} ({group}/{option}.yaml)"
    return primary


def _apply_update(spec: JobSpec, value: Any, overrides: list[str], choices: dict[str, Any]) -> Any:
    """``update(cfg)`` may change cfg in place or return a new one (HydraFlow's contract)."""
    result = spec.update(value)
    if result is None:
        result = value
    if spec.schema is None:
        return OmegaConf.create(to_container(result))
    try:
        # the derived config is validated like the composed one
        checked = OmegaConf.merge(OmegaConf.structured(spec.schema), OmegaConf.create(to_container(result)))
        return OmegaConf.to_object(checked)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(f"update() returned a config that does not fit {spec.schema.__name__}: field {key!r}: "
                          f"{str(exc).strip().splitlines()[0]}") from None


# -- matching earlier runs ----------------------------------------------------------------------
def decide(repo: Any, experiment: str, spec: JobSpec, params: Any, overrides: list[str]) -> tuple[str, Any]:
    """("new" | "skip" | "resume", the earlier run it concerns)."""
    if spec.force_new_run:
        return "new", None
    if spec.match_overrides:
        wanted = sorted(overrides)
        matches = [r for r in runs_of(repo, experiment) if sorted(r.params.get("overrides") or []) == wanted]
    else:
        matches = [r for r in runs_of(repo, experiment) if same_config(r.params.get(spec.params_key), params)]
    if not matches:
        return "new", None
    finished = [r for r in matches if r.status == "finished"]
    if finished:
        return ("resume" if spec.rerun_finished else "skip"), finished[-1]
    live = [r for r in matches if is_live(r)]
    if live:
        return "skip", live[-1]
    return "resume", matches[-1]


@contextlib.contextmanager
def _claim(repo: Any) -> Iterator[None]:
    """Hold a file lock while deciding and creating, so two processes on one sweep
    never both start the same configuration (each sees the other's running run)."""
    path = getattr(repo, "path", None)
    if path is None or not Path(path).is_dir():
        yield
        return
    import fcntl

    with open(Path(path) / "main.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _skip_message(label: str, previous: Any, experiment: str) -> str:
    if previous.status == "finished":
        return (
            f"{label}: skipped, finished run {previous.id} in experiment {experiment!r} has the same "
            "config (rerun_finished=True or --rerun-finished runs it again, --new-run starts a new run)"
        )
    return (
        f"{label}: skipped, run {previous.id} with the same config is running in process "
        f"{previous.pid} on {previous.hostname} (--new-run starts a new run anyway)"
    )


# -- recording ------------------------------------------------------------------------------------
def _record_output_dir(run: Any, hc: Any, experiment: str) -> None:
    output_dir = Path(hc.runtime.output_dir)
    subdir = hc.output_subdir
    if subdir is not None and (output_dir / subdir).is_dir():
        run.log_artifact(output_dir / subdir, kind="hydra", name="hydra")
    write_marker(output_dir, run, experiment)


def _show_override(text: str, files: dict[str, str], loose: bool = False) -> str:
    """``+runstore_files/0@_global_=file`` (how --config travels) -> ``--config=conf.yaml``."""
    if text.startswith(f"+{FILES_GROUP}/"):
        group = text[1:].split("@", 1)[0]
        return f"--config={files.get(group, group)}"
    if loose and text.startswith("++"):
        return text[2:]  # as the user typed it
    return text


def _collect(run: Any) -> None:
    if collected is not None:
        collected.append(run)


@contextlib.contextmanager
def _working_dir(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)
