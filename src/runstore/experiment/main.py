"""``@runstore.main``: a training function becomes a Hydra application that tracks its runs.

::

    @runstore.main(Config, experiment="mnist")
    def train(run, cfg: Config):
        ...

    if __name__ == "__main__":
        train()

The decorated function is an ordinary Hydra app (hydra-core's ``hydra.main`` runs
it): config groups and defaults lists (``config_path=``/``config_name=``, or the
structured config ``Config`` registered in Hydra's ConfigStore), the whole
override grammar (``+key=1``, ``~key``, ``lr=range(0,3)``, ``choice(...)``,
``hydra.run.dir=...``), ``--multirun``, ``--cfg job``, ``--info`` and any
installed sweeper or launcher plugin. Each job is one run (see ``_job.py``):
identical finished configs are skipped, failed or killed ones resumed in place.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import _job

__all__ = ["main"]

# runstore's own command-line options, taken out of argv before Hydra parses it.
_FLAGS = {
    "--rerun-finished": "rerun_finished",
    "--new-run": "force_new_run",
    "--print-config": "dry_run",
    "--quiet": "quiet",
    "-q": "quiet",
}
_VALUED = {"--repo": "repo", "--experiment": "experiment", "--config": "config"}

# Overrides that keep a dry run from writing (no .hydra/ files, no log files); the output
# folders Hydra still makes go to a temporary folder, removed afterwards.
_DRY_RUN_OVERRIDES = ["hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none"]


def main(
    schema: Any = None,
    *,
    repo: str | os.PathLike[str] | None = None,
    experiment: str | None = None,
    chdir: bool = False,
    force_new_run: bool = False,
    rerun_finished: bool = False,
    match_overrides: bool = False,
    update: Callable[[Any], Any] | None = None,
    dry_run: bool = False,
    config_path: str | os.PathLike[str] | None = None,
    config_name: str | None = None,
    version_base: str | None = "1.3",
    params_key: str = "hparams",
    name: str | None = None,
    tags: Iterable[str] | None = None,
    config_files: Iterable[str | os.PathLike[str]] = (),
) -> Callable[[Callable[[Any, Any], Any]], Callable[..., list[Any]]]:
    """Turn ``fn(run, cfg)`` into a Hydra application that runs each job as a tracked run.

    ``schema`` is a dataclass (or None for an untyped config); ``fn`` receives an
    instance of it with every value resolved (a DictConfig without a schema).
    Without ``config_path`` the schema is the primary config (stored in Hydra's
    ConfigStore as ``config_name``, default ``"config"``); with it, Hydra composes
    ``config_path/config_name.yaml`` (relative to the script, as in ``hydra.main``)
    and each job's config is validated against the schema.

    ``experiment`` defaults to Hydra's job name (the script's name); ``repo`` to
    ``$RUNSTORE_REPO`` or ``./.runstore``. ``force_new_run``, ``rerun_finished``,
    ``match_overrides``, ``update``, ``chdir`` and ``dry_run`` follow HydraFlow
    (docs/experiments.md). The decorated function takes an optional ``argv`` list
    (default ``sys.argv[1:]``) and returns the runs its jobs used in this process.
    """
    if schema is not None and not (dataclasses.is_dataclass(schema) and isinstance(schema, type)):
        raise ConfigError(f"main() expects a dataclass (the class) as the config schema, got {schema!r}")
    if not isinstance(params_key, str) or not params_key or "." in params_key:
        raise ConfigError(f"params_key must be a non-empty string without '.', got {params_key!r}")
    if update is not None and not callable(update):
        raise ConfigError(f"update must be a function cfg -> cfg | None, got {update!r}")
    default_files = [Path(f) for f in config_files]

    def decorate(fn: Callable[[Any, Any], Any]) -> Callable[..., list[Any]]:
        script = _script_name(fn)

        @functools.wraps(fn)
        def wrapper(argv: Sequence[str] | None = None) -> list[Any]:
            from_command_line = argv is None
            args = list(sys.argv[1:] if argv is None else argv)
            try:
                options, hydra_args = _split_argv(args)
                files = _register(schema, config_name, config_path,
                                  [*default_files, *(Path(f) for f in options["config"])])
            except ConfigError as exc:
                if from_command_line:  # a typo on the command line deserves a message, not a traceback
                    print(f"{script}: error: {exc}", file=sys.stderr)
                    raise SystemExit(2) from None
                raise
            # Hydra's parser wants its flags before the overrides; runstore's always took
            # them anywhere (train.py lr=0.1,0.2 --multirun), so they are moved first.
            hydra_args = [*_flags_first(hydra_args), *(f"+{group}@_global_=file" for group in files)]
            loose = schema is None and config_path is None
            if loose:
                # No schema and no config file: any key is welcome, as before Hydra
                # (Hydra itself would want +lr=0.1 for a key the empty config lacks).
                hydra_args = [_add_or_set(arg) for arg in hydra_args]
            if not any(arg.startswith(("hydra/help=", "+hydra/help=")) for arg in hydra_args):
                _register_help(script, fn)
                hydra_args.append("hydra/help=runstore")
            dry = dry_run or options["dry_run"]
            scratch = None
            if dry:
                scratch = tempfile.mkdtemp(prefix="runstore-dry-run-")
                hydra_args += [*_DRY_RUN_OVERRIDES, f"hydra.run.dir={scratch}", f"hydra.sweep.dir={scratch}"]
            where = options["repo"] if options["repo"] is not None else repo
            spec = _job.JobSpec(
                fn=fn, schema=schema, repo=_absolute(where), experiment=options["experiment"] or experiment,
                params_key=params_key, name=name, tags=list(tags) if tags is not None else None,
                chdir=chdir, force_new_run=force_new_run or options["force_new_run"],
                rerun_finished=rerun_finished or options["rerun_finished"], match_overrides=match_overrides,
                update=update, dry_run=dry, quiet=options["quiet"], script=script,
                primary=_primary(schema, config_path, config_name, fn), files=files,
                from_command_line=from_command_line, loose=loose,
            )
            try:
                return _launch(spec, fn, hydra_args, config_path, config_name, version_base, from_command_line)
            finally:
                if scratch is not None:
                    shutil.rmtree(scratch, ignore_errors=True)

        wrapper.schema = schema  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _launch(spec: _job.JobSpec, fn: Callable[..., Any], hydra_args: list[str], config_path: Any,
            config_name: str | None, version_base: str | None, from_command_line: bool) -> list[Any]:
    import hydra

    # functools.wraps matters: Hydra unwraps __wrapped__ to find the user's script or
    # module, which is where config_path is relative to and what names the job.
    task = functools.wraps(fn)(functools.partial(_job.run_job, spec))
    app = hydra.main(
        config_path=None if config_path is None else str(config_path),
        config_name=config_name or "config",
        version_base=version_base,
    )(task)
    saved_argv, saved_collected = sys.argv, _job.collected
    saved_env = {key: os.environ.get(key) for key in ("HYDRA_FULL_ERROR", "HYDRA_MAIN_MODULE", "PYTHONPATH")}
    _export_script_dir()
    collected: list[Any] = []
    _job.collected = collected
    sys.argv = [sys.argv[0] if sys.argv else spec.script, *hydra_args]
    if not from_command_line:
        # Called from Python: the caller gets the exception itself, not Hydra's report + exit(1).
        os.environ["HYDRA_FULL_ERROR"] = "1"
    if config_path is None and _source_file(fn) is not None:
        # No config folder: everything is in the ConfigStore. Hydra would look for the
        # function's *package* (pkg://), which fails for a top-level module; naming
        # the module "__main__" makes it use the source file (job name = file name).
        os.environ["HYDRA_MAIN_MODULE"] = "__main__"
    try:
        app()
    except Exception as exc:
        failed = [run for run in collected if run.status == "failed"]
        if len(collected) > 1 and failed:
            # Hydra's sweepers run every job, then raise the first failure
            exc.add_note(f"runstore: {len(failed)} of {len(collected)} jobs failed, first: run {failed[0].id}")
        if from_command_line or isinstance(exc, ConfigError):
            raise
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(exc, (HydraException, OmegaConfBaseException)):
            raise ConfigError(_explain(exc)) from exc
        raise
    finally:
        sys.argv, _job.collected = saved_argv, saved_collected
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return collected


def _export_script_dir() -> None:
    """Launchers that start fresh interpreters (submitit, locally or on SLURM) unpickle
    the task there before any of our code runs; a module next to the script
    (``from app_config import Config``) must be importable in them as it is here,
    where Python put the script's folder first on sys.path."""
    first = sys.path[0] if sys.path else None
    if first is None:
        return
    folder = os.path.abspath(first or os.getcwd())
    if not os.path.isdir(folder):
        return
    current = os.environ.get("PYTHONPATH", "")
    if folder not in current.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (folder, current) if p)


def _explain(exc: BaseException) -> str:
    """Hydra's error and its causes on one line ("Error merging override lr=fast: Value
    'fast' of type 'str' could not be converted to Float (full_key: lr)")."""
    parts: list[str] = []
    while exc is not None and len(parts) < 4:
        lines = [line.strip() for line in str(exc).strip().splitlines()
                 if line.strip() and not line.strip().startswith(("See https://", "object_type="))]
        text = " ".join(lines) if lines else type(exc).__name__
        if text not in parts and not any(text in part for part in parts):
            parts.append(text)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return ": ".join(parts)


def _add_or_set(arg: str) -> str:
    """``lr=0.1`` -> ``++lr=0.1`` (add or override); flags, ``+``/``~``/``hydra.`` and group
    selections (``db=mysql`` of a group is not possible without a config folder) stay."""
    key, eq, _ = arg.partition("=")
    if not eq or arg.startswith(("-", "+", "~")) or key.startswith("hydra") or "/" in key or "@" in key:
        return arg
    return "++" + arg


def _flags_first(args: list[str]) -> list[str]:
    """Hydra's flags (with their values) first, then the overrides, each in its order."""
    from hydra._internal.utils import get_args_parser

    takes: dict[str, Any] = {}
    for action in get_args_parser()._actions:
        for option in action.option_strings:
            takes[option] = action
    flags: list[str] = []
    overrides: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        action = takes.get(arg)
        if action is None:
            (flags if arg.startswith("-") else overrides).append(arg)
        else:
            flags.append(arg)
            wants_value = action.nargs is None or (
                action.nargs == "?" and i + 1 < len(args) and action.choices is not None
                and args[i + 1] in action.choices
            )
            if wants_value and i + 1 < len(args):
                i += 1
                flags.append(args[i])
        i += 1
    return [*flags, *overrides]


def _split_argv(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """runstore's options (documented aliases) apart from what Hydra parses."""
    options: dict[str, Any] = {"rerun_finished": False, "force_new_run": False, "dry_run": False, "quiet": False,
                               "repo": None, "experiment": None, "config": []}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        flag, eq, value = arg.partition("=")
        if arg in _FLAGS:
            options[_FLAGS[arg]] = True
        elif flag in _VALUED:
            if not eq:
                if i + 1 >= len(args):
                    raise ConfigError(f"{flag} needs a value, e.g. {flag} {'conf.yaml' if flag == '--config' else 'NAME'}")
                i += 1
                value = args[i]
            if flag == "--config":
                options["config"].append(value)
            else:
                options[_VALUED[flag]] = value
        else:
            rest.append(arg)
        i += 1
    return options, rest


def _register(schema: Any, config_name: str | None, config_path: Any, files: list[Path]) -> dict[str, str]:
    """Put the schema (the primary config when there is no config_path) and the
    ``--config`` files into Hydra's ConfigStore; returns {store option: file}."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import DictConfig

    from .config import load_yaml, merge_layers

    store = ConfigStore.instance()
    if config_path is None:
        store.store(name=config_name or "config", node=schema if schema is not None else {})
    options: dict[str, str] = {}
    for i, path in enumerate(files):
        layer = load_yaml(path)  # errors name the file and line
        if not isinstance(layer, DictConfig):
            raise ConfigError(f"{path}: a config file must hold a mapping of settings at the top level")
        if schema is not None:
            merge_layers(schema, [(str(path), layer)], resolve=False)  # unknown keys, wrong types: named here
        group = f"{_job.FILES_GROUP}/f{i}"  # a group each: Hydra takes one option per group
        store.store(group=group, name="file", node=layer)
        options[group] = str(path)
    return options


_OPTIONS_HELP = """\
== runstore ==
Each job is a run in the repository (--repo PATH, else $$RUNSTORE_REPO, else ./.runstore)
and the experiment (--experiment NAME, else the job name). A config that a finished
run already has is skipped (--rerun-finished runs it again, --new-run starts a new
run); a failed or killed one is resumed. --print-config prints each job's config and
runs nothing; --config FILE merges a YAML file over the config; -q: no start/end lines.
"""


def _register_help(script: str, fn: Callable[..., Any]) -> None:
    """Hydra's --help with the function's docstring on top and runstore's options below."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    summary = (inspect.getdoc(fn) or "").split("\n\n")[0].strip()
    default = Path(inspect.getfile(__import__("hydra.conf", fromlist=["x"]))).parent / "hydra/help/default.yaml"
    node = OmegaConf.load(default)
    if summary:  # literal text through two template engines: OmegaConf's ${...}, then string.Template's $
        node.header = f"{script}: " + summary.replace("$", "$$").replace("${", "\\${") + "\n"
    node.footer = _OPTIONS_HELP + "\n" + node.footer
    ConfigStore.instance().store(group="hydra/help", name="runstore", node=node)


def _primary(schema: Any, config_path: Any, config_name: str | None, fn: Callable[..., Any]) -> str:
    if config_path is None:
        return f"the defaults of {schema.__name__}" if schema is not None else "the config"
    return f"{Path(str(config_path)) / (config_name or 'config')}.yaml"


def _absolute(repo: Any) -> str | None:
    """A repository path that does not depend on the working directory (Hydra's
    ``hydra.job.chdir`` and our ``chdir`` move it; launchers run elsewhere)."""
    if repo is None:
        from ..tracking.repo import default_path

        return str(Path(default_path()).absolute())
    text = str(repo)
    if "://" in text:
        return text
    return str(Path(text).expanduser().absolute())


def _source_file(fn: Callable[..., Any]) -> str | None:
    try:
        path = inspect.getsourcefile(fn) or inspect.getfile(fn)
    except (TypeError, OSError):
        return None
    return path if path and not path.startswith("<") else None


def _script_name(fn: Callable[..., Any]) -> str:
    path = _source_file(fn)
    if path:
        return Path(path).stem
    return Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else fn.__name__
