"""``runstore`` command line: look at a repository from a terminal or a job script.

Thin on purpose (as sqlite-utils' ``cli.py`` over ``db.py``): each command
parses its arguments, calls the public library API (``Repo``, ``Run``,
``repo.query``, the collections' ``to_arrow``) and formats the answer with
rich.  Library errors become one ``Error: ...`` line on stderr and exit code 1
(``--debug`` re-raises them so the traceback shows); usage errors exit with 2.

The repository is ``--repo PATH``, else ``$RUNSTORE_REPO``, else
``./.runstore``.  Every command except ``init`` and ``demo`` opens it with
``create=False``, so a mistyped path is an error instead of a new, empty
repository that silently answers "no runs".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import click
from rich.console import Console

from . import table as T
from ..errors import RepositoryError, RunLockedError, RunstoreError
from ..export import export as export_runs
from ..tracking.repo import Repo, default_path
from ..tracking.run import Run

__all__ = ["cli"]

# Help is wrapped to the terminal (click measures it; $COLUMNS wins), at most
# 100 columns so paragraphs stay readable; docs/cli.md embeds it at 80 columns
# and a test compares the two.
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _State:
    def __init__(self, repo_path: str | None, debug: bool, color: bool = True) -> None:
        self.repo_path = repo_path
        self.debug = debug
        self.color = color

    def repo(self, readonly: bool = False) -> Repo:
        """The existing repository (never creates one); read-only commands never write."""
        try:
            return Repo(self.repo_path, create=False, readonly=readonly)
        except RepositoryError as exc:
            hint = _nearby_repository() if self.repo_path is None else None
            if hint is None:
                raise
            raise RepositoryError(f"{exc}; did you mean --repo {hint}?") from None


def _nearby_repository() -> str | None:
    """A subdirectory of the current one that is a repository (``Repo("runs")`` in a script)."""
    from ..storage.env import is_repository

    try:
        found = sorted(p.name for p in Path.cwd().iterdir() if p.is_dir() and is_repository(p))
    except OSError:
        return None
    return found[0] if found else None


COMMAND_ORDER = ("init", "ls", "show", "query", "diff", "tail", "plot", "experiments", "sql", "ui", "server", "sync",
                 "merge", "export", "import", "rm", "archive", "unarchive", "tag", "check", "compact", "demo")


class _Group(click.Group):
    """Lists commands in the order they are defined and turns library errors into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        order = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(self.commands, key=lambda name: order.get(name, len(order)))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (RunstoreError, OSError) as exc:
            state = ctx.obj
            if state is not None and state.debug:
                raise
            message = str(exc) or type(exc).__name__
            if isinstance(exc, OSError) and not isinstance(exc, RunstoreError) and exc.filename:
                message = f"{exc.strerror or exc}: {exc.filename}"
            T.echo(f"Error: {message}", err=True)
            ctx.exit(1)


def _console() -> Console:
    # Created per command so it writes to the stdout of this invocation (the
    # test runner swaps sys.stdout).  markup=False: run names, keys such as
    # "loss[subset=val].last" and tags must print as typed, not as rich styles.
    return T.SafeConsole(highlight=False, markup=False)


def _state() -> _State:
    return click.get_current_context().find_object(_State)


def _shown(repo: Repo) -> str:
    """The repository's path as short as it is exact: relative when it is under the current directory."""
    try:
        rel = os.path.relpath(repo.path)
    except ValueError:
        return str(repo.path)
    return rel if not rel.startswith("..") else str(repo.path)


# -- resolving run ids -------------------------------------------------------------

def _resolve(repo: Repo, text: str) -> Run:
    """The run named by a full id, a handle or a unique prefix of either (repo.get_run does it)."""
    if not text.strip():
        raise click.BadParameter("a run id or handle is required")
    return repo.get_run(text)


def _resolve_all(repo: Repo, texts: Iterable[str]) -> list[Run]:
    runs: list[Run] = []
    for text in texts:
        run = _resolve(repo, text)
        if run not in runs:
            runs.append(run)
    return runs


# -- the command group ---------------------------------------------------------------


@click.group(name="runstore", cls=_Group, context_settings=CONTEXT)
@click.option(
    "--repo",
    "repo_path",
    metavar="PATH",
    envvar="RUNSTORE_REPO",
    show_envvar=True,
    help="Repository directory [default: ./.runstore].",
)
@click.option("--no-color", is_flag=True, help="No colour (also when $NO_COLOR is set or output is not a "
              "terminal).")
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
@click.version_option(package_name="runstore", message="runstore %(version)s")
@click.pass_context
def cli(ctx: click.Context, repo_path: str | None, no_color: bool, debug: bool) -> None:
    """runstore: an embedded repository of machine-learning runs.

    A run is named by its 8-character handle (the id column of `runstore ls`), its
    full id, or any unique prefix of either.
    """
    ctx.obj = _State(repo_path, debug, color=not no_color)
    _show_query_warnings()


def _show_query_warnings() -> None:
    """Print a QueryWarning as one plain line on stderr (not Python's file:line form),
    every time: a typo in two commands deserves two hints."""
    import warnings

    from ..errors import QueryWarning

    previous = warnings.showwarning
    if getattr(previous, "_runstore", False):  # installed by an earlier command in this process
        return

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if issubclass(category, QueryWarning):
            T.echo(f"warning: {message}", err=True)
        else:
            previous(message, category, filename, lineno, file, line)

    show._runstore = True  # type: ignore[attr-defined]
    warnings.showwarning = show
    warnings.simplefilter("always", QueryWarning)


@cli.command(context_settings=CONTEXT)
@click.argument("path", required=False, type=click.Path(file_okay=False))
def init(path: str | None) -> None:
    """Create a repository at PATH.

    PATH defaults to --repo, else $RUNSTORE_REPO, else ./.runstore.  An existing
    repository is left as it is.
    """
    target = Path(path) if path is not None else Path(_state().repo_path or default_path())
    try:
        repo = Repo(target, create=False)
        T.echo(f"{_shown(repo)} is already a runstore repository ({T.plural(len(repo), 'run')})")
        return
    except RepositoryError:
        if target.exists() and not target.is_dir():
            raise RepositoryError(f"{target} exists and is not a directory; choose another path") from None
    existed = target.is_dir()
    repo = Repo(target, create=True)  # asked for by name: a non-empty directory is fine here
    made = sorted(p.name for p in repo.path.iterdir() if p.name in ("data.mdb", "lock.mdb", "repo.lock", "artifacts"))
    where = "the existing directory" if existed else "a new directory"
    shown = str(target)
    T.echo(f"Initialized an empty runstore repository in {where}:\n  {repo.path}\n  ({', '.join(made)})")
    look = f"`runstore --repo {shown} ls`" if (path is not None or _state().repo_path) else "`runstore ls` here"
    T.echo(f"Track runs with Run(repo={shown!r}); look at them with {look}")


# -- ls / show / query / export -------------------------------------------------------

@cli.command(context_settings=CONTEXT)
@click.argument("dest", type=click.Path(file_okay=False))
@click.argument("query", required=False, default="")
@click.option("--format", "-f", "fmt", type=click.Choice(("parquet", "csv")), default="parquet", show_default=True,
              help="File format.")
@click.option("--partition-by", type=click.Choice(("run", "experiment")), default="run", show_default=True,
              help="Directory partitioning of the sequences.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in DEST.")
def export(dest: str, query: str, fmt: str, partition_by: str, overwrite: bool) -> None:
    """Export runs and their sequences as Parquet or CSV files.

    Writes the runs matching QUERY (all runs without one) and their sequences under DEST,
    in a layout that DuckDB, Polars and Spark read directly.

    \b
    Layout (hive partitioning, which those engines discover by themselves):
      DEST/runs.parquet                                  one row per run
      DEST/sequences/run_id=<id>/part-0.parquet          --partition-by run
      DEST/sequences/experiment=<name>/<id>.parquet      --partition-by experiment
    """
    repo = _state().repo(readonly=True)
    target = Path(dest)
    with _progress() as progress:
        task = progress.add_task("reading sequences", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, description="writing", completed=done, total=total)

        # The text as given: Path("") would be "." and an empty DEST must be refused.
        result = export_runs(repo, dest, query or None, format=fmt, partition_by=partition_by,
                             overwrite=overwrite, on_progress=advance)
    objects = f", {T.plural(result.objects, 'object')}" if result.objects else ""
    T.echo(f"exported {T.plural(result.runs, 'run')}, {T.plural(result.sequences, 'sequence')} "
               f"({T.plural(result.points, 'point')}{objects}) to {target}")


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    # On stderr, so `runstore export ... > log` keeps stdout clean; transient so
    # the finished bar does not linger above the summary line.
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)


# -- editing runs -------------------------------------------------------------------


@cli.command(context_settings=CONTEXT)
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Delete runs that a live process is still writing.")
def rm(run_ids: tuple[str, ...], yes: bool, force: bool) -> None:
    """Delete runs, with their sequences and artifacts.

    A run that a live process is still writing is refused (its writer lease);
    --force deletes it anyway, and that writer stops at its next flush."""
    repo = _state().repo()
    runs = _resolve_all(repo, run_ids)
    if not yes:
        for run in runs:
            name = run.name or "-"
            name = name if len(name) <= 32 else name[:31] + "…"  # one run per line, within 80 columns
            T.echo(f"  {run.handle}  {name}  ({run.experiment}, {run.status})")
        noun = "run" if len(runs) == 1 else f"{len(runs)} runs"
        click.confirm(f"Delete {'this' if len(runs) == 1 else 'these'} {noun}?", abort=True)
    refused = 0
    for run in runs:
        try:
            repo.delete_run(run.id, force=force)
        except RunLockedError as exc:
            refused += 1
            T.echo(f"Error: {exc}", err=True)
            continue
        T.echo(f"deleted {run.handle} ({run.id})")
    if refused:
        raise click.exceptions.Exit(1)


def _set_archived(run_ids: tuple[str, ...], value: bool) -> None:
    repo = _state().repo()
    for run in _resolve_all(repo, run_ids):
        run.archived = value
        T.echo(f"{'archived' if value else 'unarchived'} {run.handle} ({run.id})")


@cli.command(context_settings=CONTEXT)
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...")
def archive(run_ids: tuple[str, ...]) -> None:
    """Archive runs: hidden from `ls` unless --all, kept in queries and exports."""
    _set_archived(run_ids, True)


@cli.command(context_settings=CONTEXT)
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...")
def unarchive(run_ids: tuple[str, ...]) -> None:
    """Unarchive runs."""
    _set_archived(run_ids, False)


@cli.command(context_settings=CONTEXT)
@click.argument("run_id", metavar="RUN")
@click.argument("tags", nargs=-1, required=True, metavar="TAG...")
@click.option("--remove", is_flag=True, help="Remove the tags instead of adding them.")
def tag(run_id: str, tags: tuple[str, ...], remove: bool) -> None:
    """Add TAGs to a run (or remove them with --remove)."""
    run = _resolve(_state().repo(), run_id)
    for name in tags:
        if remove:
            run.remove_tag(name)
        else:
            run.add_tag(name)
    T.echo(f"{run.handle} tags: {', '.join(run.tags) or '(none)'}")


# -- maintenance ---------------------------------------------------------------------


@cli.command(context_settings=CONTEXT)
def check() -> None:
    """Verify the repository's integrity (exit code 1 when problems are found)."""
    repo = _state().repo(readonly=True)
    problems = repo.check()
    for problem in problems:
        T.echo(f"problem: {problem}")
    for note in getattr(problems, "notes", ()):
        T.echo(f"note: {note}")
    if problems:
        T.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found in {_shown(repo)}", err=True)
        raise click.exceptions.Exit(1)
    T.echo(f"ok: {T.plural(len(repo), 'run')} in {_shown(repo)}, no problems found")


@cli.command(context_settings=CONTEXT)
def compact() -> None:
    """Reclaim the space of deleted runs (needs the repository to itself)."""
    repo = _state().repo()
    before, after = repo.compact()
    T.echo(f"compacted {_shown(repo)}: {T.fmt_bytes(before)} -> {T.fmt_bytes(after)}")


@cli.command(context_settings=CONTEXT)
@click.option("--fresh", is_flag=True, help="Train a new set of runs even if the demo's runs are there (as "
              "experiment demo-2, ...).")
def demo(fresh: bool) -> None:
    """Train a small model into the repository, then query it.

    Logistic regression in NumPy at several learning rates, tracked into --repo (or
    $RUNSTORE_REPO, or ./.runstore, created if missing), then a query over the runs and
    the commands to try next.  Run it again and it only shows the runs it made before.
    """
    from .demo import run_demo

    state = _state()
    run_demo(path=state.repo_path, fresh=fresh, repo_hint=state.repo_path)


# Commands that live in their own modules (registered in the order `--help` lists them).
from . import compare as _cli_compare, live as _cli_live, runs as _cli_runs, show as _cli_show, sql as _cli_sql  # noqa: E402

cli.add_command(_cli_runs.ls)
cli.add_command(_cli_runs.query)
cli.add_command(_cli_show.show)
cli.add_command(_cli_compare.diff)
cli.add_command(_cli_live.tail)
cli.add_command(_cli_live.plot)
cli.add_command(_cli_compare.experiments)
cli.add_command(_cli_sql.sql)

from ..ui._command import ui as _ui_command  # noqa: E402  (imports click only; the UI loads when it runs)

cli.add_command(_ui_command)

from ..server import _command as _server_commands  # noqa: E402  (Flight is imported when one runs)

cli.add_command(_server_commands.server)
cli.add_command(_server_commands.sync)
cli.add_command(_server_commands.merge)

from . import imports as _cli_import  # noqa: E402

_cli_import.register(cli)
