"""The ``main`` decorator: a training function becomes a command-line program.

::

    @runstore.main(Config, experiment="mnist")
    def train(run, cfg: Config):
        ...

    if __name__ == "__main__":
        train()

``python train.py lr=0.01 --config conf.yaml`` builds the config (schema defaults <-
YAML files <- overrides), creates a run in the experiment, stores the resolved
config as the params ``hparams`` and calls ``train(run, cfg)``; the run ends
finished, failed (exception) or killed (Ctrl-C). ``--multirun lr=0.1,0.01 seed=1,2``
runs the cartesian product, one run each. A config that already has a finished run
in the experiment is skipped; one whose run failed or was killed resumes that run.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import itertools
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..tracking.active import activated
from ..errors import ConfigError
from . import _announce
from ._history import effective_status, is_live, runs_of, same_config
from ._progress import Progress
from .config import build_config, parse_override, split_sweep, to_container

__all__ = ["main"]


@dataclasses.dataclass
class _Job:
    overrides: list[str]
    cfg: Any
    params: dict[str, Any]

    @property
    def label(self) -> str:
        return " ".join(self.overrides) or "(defaults)"


def main(
    schema: Any = None,
    *,
    experiment: str | None = None,
    params_key: str = "hparams",
    repo: str | os.PathLike[str] | None = None,
    name: str | None = None,
    tags: Iterable[str] | None = None,
    config_files: Iterable[str | os.PathLike[str]] = (),
) -> Callable[[Callable[[Any, Any], Any]], Callable[..., list[Any]]]:
    """Turn ``fn(run, cfg)`` into a program that takes config overrides on the command line.

    ``schema`` is a dataclass (or None for an untyped config); ``fn`` receives an
    instance of it with every value resolved (a DictConfig without a schema).
    ``experiment`` defaults to the name of the script; ``repo`` to ``$RUNSTORE_REPO``
    or ``./.runstore``; ``config_files`` are read before any ``--config``. The
    decorated function takes an optional ``argv`` list (default ``sys.argv[1:]``) and
    returns the runs it used, one per configuration (skipped ones included).

    Command line: ``key=value ...`` overrides, ``--config FILE`` (repeatable),
    ``--multirun``/``-m`` (comma-separated values sweep), ``--rerun-finished``,
    ``--new-run``, ``--repo PATH``, ``--experiment NAME``, ``--print-config``.
    """
    if schema is not None and not dataclasses.is_dataclass(schema):
        raise ConfigError(f"main() expects a dataclass as the config schema, got {schema!r}")
    if not isinstance(params_key, str) or not params_key or "." in params_key:
        raise ConfigError(f"params_key must be a non-empty string without '.', got {params_key!r}")
    default_files = [Path(f) for f in config_files]

    def decorate(fn: Callable[[Any, Any], Any]) -> Callable[..., list[Any]]:
        script = _script_name(fn)

        @functools.wraps(fn)
        def wrapper(argv: Sequence[str] | None = None) -> list[Any]:
            from_command_line = argv is None
            args = _parser(script, fn, schema).parse_intermixed_args(
                list(sys.argv[1:] if argv is None else argv)
            )
            try:
                jobs = _jobs(schema, [*default_files, *args.config], args.overrides, args.multirun)
            except ConfigError as exc:
                if from_command_line:  # a typo on the command line deserves a message, not a traceback
                    print(f"{script}: error: {exc}", file=sys.stderr)
                    raise SystemExit(2) from None
                raise
            if args.print_config:
                for job in jobs:
                    if len(jobs) > 1:
                        print(f"# {job.label}")
                    print(OmegaConf.to_yaml(job.params), end="")
                return []
            from ..tracking.repo import Repo

            store = Repo(args.repo if args.repo is not None else repo)
            options = _Options(
                experiment=args.experiment or experiment or script,
                params_key=params_key,
                name=name,
                tags=list(tags) if tags is not None else None,
                rerun_finished=args.rerun_finished,
                new_run=args.new_run,
                schema=schema,
                script=script,
                quiet=args.quiet,
            )
            return _run_jobs(fn, store, jobs, options, sweep=args.multirun)

        wrapper.schema = schema  # type: ignore[attr-defined]
        return wrapper

    return decorate


@dataclasses.dataclass
class _Options:
    experiment: str
    params_key: str
    name: str | None
    tags: list[str] | None
    rerun_finished: bool
    new_run: bool
    schema: Any
    script: str = "main"
    quiet: bool = False


def _parser(script: str, fn: Callable[..., Any], schema: Any) -> argparse.ArgumentParser:
    epilog = None
    if schema is not None:
        defaults = to_container(OmegaConf.structured(schema)) if dataclasses.is_dataclass(schema) else {}
        lines = [f"  {key}={value}" for key, value in _flatten(defaults)]
        epilog = "config fields (defaults):\n" + "\n".join(lines)
    parser = argparse.ArgumentParser(
        prog=script,
        description=(inspect.getdoc(fn) or "").split("\n\n")[0] or None,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. lr=0.01 model.layers=4")
    parser.add_argument("--config", "-c", action="append", default=[], metavar="FILE",
                        help="a YAML config file, merged in order (repeatable)")
    parser.add_argument("--multirun", "-m", action="store_true",
                        help="sweep: comma-separated values run the cartesian product, one run each")
    parser.add_argument("--rerun-finished", action="store_true",
                        help="run a config again even if a finished run has it")
    parser.add_argument("--new-run", action="store_true",
                        help="always start a new run (never skip or resume)")
    parser.add_argument("--repo", metavar="PATH", help="the repository (default: $RUNSTORE_REPO or ./.runstore)")
    parser.add_argument("--experiment", metavar="NAME", help="the experiment the runs belong to")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config(s) and exit")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no start and end lines on stderr")
    return parser


def _jobs(schema: Any, files: list[Any], overrides: list[str], multirun: bool) -> list[_Job]:
    """One job per configuration; every config is built (and validated) before anything runs."""
    choices: list[list[str]] = []
    for text in overrides:
        key, value = parse_override(text)
        values = split_sweep(value)
        if len(values) > 1 and not multirun:
            raise ConfigError(
                f"the override {text!r} lists several values; add --multirun to sweep over them, "
                f"or quote the value to keep the commas: {key}='\"{value}\"'"
            )
        if any(v == "" for v in values) and len(values) > 1:
            raise ConfigError(f"the sweep {text!r} has an empty value (a stray comma?)")
        choices.append([f"{key}={v}" for v in values])
    jobs = []
    for combo in itertools.product(*choices):
        cfg, _origins = build_config(files, schema, combo)
        jobs.append(_Job(list(combo), cfg, to_container(cfg)))
    return jobs


def _run_jobs(fn: Callable[[Any, Any], Any], repo: Any, jobs: list[_Job], opts: _Options, sweep: bool) -> list[Any]:
    from ..tracking.run import Run

    runs: list[Any] = []
    failures: list[tuple[_Job, BaseException]] = []
    counts = {"finished": 0, "failed": 0, "skipped": 0}
    with Progress(len(jobs), f"sweep {opts.experiment}", enabled=sweep) as bar:
        for job in jobs:
            bar.describe(job.label)
            action, previous = _decide(repo, job, opts)
            if action == "skip":
                bar.note(_skip_message(job, previous, opts))
                runs.append(previous)
                counts["skipped"] += 1
                bar.advance(f"{job.label}: skipped (run {previous.id})")
                continue
            if action == "resume":
                attempt = int(previous.params.get("attempt", 1)) + 1
                run = Run(repo=repo, run_id=previous.id)
                bar.note(f"{job.label}: resuming run {previous.id} ({effective_status(previous)}) as attempt {attempt}")
            else:
                attempt = 1
                run = Run(repo=repo, experiment=opts.experiment, name=opts.name or (" ".join(job.overrides) or None),
                          tags=opts.tags)
            run[opts.params_key] = job.params
            run["attempt"] = attempt
            runs.append(run)
            _announce.say(_announce.start_line(opts.script, run, repo, resumed=action == "resume"), opts.quiet)
            try:
                # The run is the fluent API's active run while fn runs, so runstore.log_metric(...)
                # inside it lands here, as mlflow.log_metric does inside hydraflow.main.
                with activated(run):
                    fn(run, OmegaConf.to_object(job.cfg) if opts.schema is not None else job.cfg)
            except KeyboardInterrupt:
                run.close("killed")
                raise _announce.interrupted(counts["finished"], 1) from None
            except SystemExit as exc:  # sys.exit() in the function: its code says how it went
                run.close("finished" if exc.code in (0, None) else "failed")
                _announce.say(_announce.end_line(opts.script, run), opts.quiet)
                raise
            except Exception as exc:
                run.close("failed")
                _announce.say(_announce.end_line(opts.script, run), opts.quiet)
                if not sweep:
                    raise
                failures.append((job, exc))
                counts["failed"] += 1
                bar.advance(f"{job.label}: failed ({type(exc).__name__}: {exc}) run {run.id}")
                continue
            if not run.closed:
                run.close("finished")
            _announce.say(_announce.end_line(opts.script, run), opts.quiet)
            counts["finished"] += 1
            bar.advance(f"{job.label}: {run.status} run {run.id}")
        if sweep:
            bar.note(
                f"{len(jobs)} configurations: {counts['finished']} ran, {counts['skipped']} skipped, "
                f"{counts['failed']} failed"
            )
    if failures:
        # The sweep went on after a failure (one bad config should not cost the others);
        # the first error is raised at the end so the program still exits non-zero.
        job, exc = failures[0]
        exc.add_note(f"runstore: {len(failures)} of {len(jobs)} configurations failed, first: {job.label}")
        raise exc
    return runs


def _decide(repo: Any, job: _Job, opts: _Options) -> tuple[str, Any]:
    """("new" | "skip" | "resume", the earlier run it concerns)."""
    if opts.new_run:
        return "new", None
    matches = [
        run for run in runs_of(repo, opts.experiment)
        if same_config(run.params.get(opts.params_key), job.params)
    ]
    if not matches:
        return "new", None
    finished = [r for r in matches if r.status == "finished"]
    if finished:
        return ("resume" if opts.rerun_finished else "skip"), finished[-1]
    live = [r for r in matches if is_live(r)]
    if live:
        return "skip", live[-1]
    return "resume", matches[-1]


def _skip_message(job: _Job, previous: Any, opts: _Options) -> str:
    if previous.status == "finished":
        return (
            f"{job.label}: skipped, finished run {previous.id} in experiment {opts.experiment!r} has the same "
            "config (--rerun-finished runs it again, --new-run starts a new run)"
        )
    return (
        f"{job.label}: skipped, run {previous.id} with the same config is running in process "
        f"{previous.pid} on {previous.hostname} (--new-run starts a new run anyway)"
    )


def _script_name(fn: Callable[..., Any]) -> str:
    try:
        path = inspect.getsourcefile(fn) or inspect.getfile(fn)
    except (TypeError, OSError):
        path = None
    if path and not path.startswith("<"):
        return Path(path).stem
    return Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else fn.__name__


def _flatten(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, dict) and tree:
        out: list[tuple[str, Any]] = []
        for key, value in tree.items():
            out.extend(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return [(prefix, tree)]
