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

import io
import json
import math
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from .errors import MatchError, RepositoryError, RunNotFoundError, RunstoreError
from .export import export as export_runs
from .export import flat_table as _flat_table
from .export import flatten_structs as _flatten_structs
from .repo import Repo, default_path
from .run import Run

__all__ = ["cli"]

# Fixed help width so `--help` is identical on every terminal; docs/cli.md
# embeds it and a test compares the two.
HELP_WIDTH = 88
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": HELP_WIDTH, "terminal_width": HELP_WIDTH}


class _State:
    def __init__(self, repo_path: str | None, debug: bool) -> None:
        self.repo_path = repo_path
        self.debug = debug

    def repo(self) -> Repo:
        """The existing repository (never creates one)."""
        return Repo(self.repo_path, create=False)


class _Group(click.Group):
    """Lists commands in the order they are defined and turns library errors into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

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
            click.echo(f"Error: {message}", err=True)
            ctx.exit(1)


def _console() -> Console:
    # Created per command so it writes to the stdout of this invocation (the
    # test runner swaps sys.stdout).  markup=False: run names, keys such as
    # "loss[subset=val].last" and tags must print as typed, not as rich styles.
    return Console(highlight=False, markup=False)


def _state() -> _State:
    return click.get_current_context().find_object(_State)


# -- formatting ------------------------------------------------------------------


def _fmt_time(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalar
        return _fmt_value(value.item())
    if isinstance(value, datetime):  # Arrow timestamps (UTC) are shown in local time
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list) and all(isinstance(v, str) for v in value):  # tags
        return ", ".join(value) or "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def _fmt_context(context: dict, prefix: str = "") -> str:
    """``subset=val, fold=1``: the spelling of keys like ``loss[subset=val].last``."""
    parts = []
    for key, value in context.items():
        if isinstance(value, dict) and value:
            parts.append(_fmt_context(value, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}={_fmt_value(value)}")
    return ", ".join(parts) if parts else ("" if prefix else "-")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _split_columns(spec: str | None) -> list[str]:
    return [c.strip() for c in spec.split(",") if c.strip()] if spec else []


# -- resolving run ids -------------------------------------------------------------

_ID_LENGTH = 24


def _resolve(repo: Repo, prefix: str) -> Run:
    """The run whose id is ``prefix`` or starts with it (must be unique, like git)."""
    prefix = prefix.strip().lower()
    if len(prefix) == _ID_LENGTH:
        return repo.get_run(prefix)
    if not prefix:
        raise click.BadParameter("a run id (or a unique prefix of one) is required")
    matches = [run for run in repo.runs() if run.id.startswith(prefix)]
    if not matches:
        raise RunNotFoundError(f"no run id starts with {prefix!r} in {repo.path}; list them with `runstore ls`")
    if len(matches) > 1:
        shown = ", ".join(run.id for run in matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise RunNotFoundError(
            f"run id prefix {prefix!r} is ambiguous: {len(matches)} runs match ({shown}); type more characters"
        )
    return matches[0]


def _resolve_all(repo: Repo, prefixes: Iterable[str]) -> list[Run]:
    runs: list[Run] = []
    for prefix in prefixes:
        run = _resolve(repo, prefix)
        if run not in runs:
            runs.append(run)
    return runs


# -- Arrow helpers (tables of runs or sequences) -------------------------------------


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


TABLE_ROWS = 1000  # a screen table beyond this is unreadable and slow; csv/json/parquet have no limit


def _table_to_rich(table, title: str | None = None) -> Table:
    flat = _flatten_structs(table.slice(0, TABLE_ROWS))
    out = Table(title=title, header_style="bold")
    for name in flat.column_names:
        out.add_column(name, overflow="fold", no_wrap=name in ("id", "run_id"))
    # The long form has unix-second timestamps and NaN for "no epoch".
    special = {"timestamp": lambda v: _fmt_time(v) if v is not None else "-",
               "epoch": lambda v: "-" if v is None or math.isnan(v) else _fmt_value(v)}
    formats = [special.get(name, _fmt_value) for name in flat.column_names]
    for row in flat.to_pylist():
        out.add_row(*(fmt(v) for fmt, v in zip(formats, row.values())))
    return out


def _write_table(table, fmt: str, output: str | None) -> None:
    """Write an Arrow table as table/csv/json/parquet/arrow to ``output`` or stdout."""
    import pyarrow as pa

    if fmt == "table":
        if output:
            with open(output, "w", encoding="utf-8") as f:
                Console(file=f, width=10_000, highlight=False, markup=False).print(_table_to_rich(table))
        else:
            _console().print(_table_to_rich(table))
        if table.num_rows > TABLE_ROWS:
            click.echo(f"showing the first {TABLE_ROWS} of {table.num_rows} rows; "
                       "use --format csv/json/parquet for all of them", err=True)
        return
    if fmt in ("parquet", "arrow") and output is None and sys.stdout.isatty():
        raise click.UsageError(f"refusing to write binary {fmt} to a terminal; use -o FILE or redirect stdout")
    sink: Any = output if output else io.BytesIO()
    if fmt == "csv":
        from pyarrow import csv as pacsv

        pacsv.write_csv(_flat_table(table), sink)
    elif fmt == "json":
        rows = [_json_safe(row) for row in table.to_pylist()]
        text = json.dumps(rows, indent=1, default=str) + "\n"
        if output:
            Path(output).write_text(text, encoding="utf-8")
        else:
            sink.write(text.encode())
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, sink)
    elif fmt == "arrow":
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    if not output:
        stream = sys.stdout.buffer  # click's get_binary_stream is deprecated (click 8.5)
        stream.write(sink.getvalue())
        stream.flush()


# -- the command group ---------------------------------------------------------------


@click.group(cls=_Group, context_settings=CONTEXT)
@click.option(
    "--repo",
    "repo_path",
    metavar="PATH",
    envvar="RUNSTORE_REPO",
    show_envvar=True,
    help="Repository directory [default: ./.runstore].",
)
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
@click.version_option(package_name="runstore", message="runstore %(version)s")
@click.pass_context
def cli(ctx: click.Context, repo_path: str | None, debug: bool) -> None:
    """runstore: an embedded repository of machine-learning runs.

    Run ids may be shortened to any unique prefix, as in git.
    """
    ctx.obj = _State(repo_path, debug)


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
        click.echo(f"{repo.path} is already a runstore repository ({_plural(len(repo), 'run')})")
    except RepositoryError:
        if target.exists() and not target.is_dir():
            raise RepositoryError(f"{target} exists and is not a directory; choose another path") from None
        repo = Repo(target)
        click.echo(f"Initialized an empty runstore repository in {repo.path}")


# -- ls / show / query / export -------------------------------------------------------

_LS_FIXED = ("id", "name", "experiment", "status", "created", "duration")


@cli.command(context_settings=CONTEXT)
@click.argument("query", required=False, default="")
@click.option("--columns", "-c", metavar="KEYS", help="Extra columns, comma separated: hparams.lr,loss.last,...")
@click.option("--sort", "sort_key", metavar="KEY", help="Sort by a column key (e.g. loss.last, created_at).")
@click.option("--reverse", "-r", is_flag=True, help="Reverse the order.")
@click.option("--limit", "-n", type=click.IntRange(min=0), metavar="N", help="Show at most N runs.")
@click.option("--all", "-a", "show_all", is_flag=True, help="Include archived runs.")
def ls(query: str, columns: str | None, sort_key: str | None, reverse: bool, limit: int | None,
       show_all: bool) -> None:
    """List runs (matching QUERY) as a table.

    QUERY uses the query language, e.g. "run.hparams.lr < 0.01 and run.status == 'finished'".
    Column and sort keys use the run.get spelling: a param path (hparams.lr), a run
    attribute (status), or a sequence summary (loss.last, loss[subset=val].max).
    """
    keys = _split_columns(columns)
    repo = _state().repo()
    runs = repo.query(query or None)
    if not show_all:
        runs = runs.filter(archived=False)
    try:
        if sort_key:
            runs = runs.sort(sort_key, reverse=reverse)
        elif reverse:
            runs = runs[::-1]
        if limit is not None:
            runs = runs[:limit]
        extra = {key: _column(runs, key) for key in keys}
    except (KeyError, MatchError) as exc:  # unknown or ambiguous key: the message names the candidates
        raise click.BadParameter(str(exc.args[0] if exc.args else exc), param_hint="--columns/--sort") from None
    fixed = {key: runs.to_list(key, default=None)
             for key in ("id", "name", "experiment", "status", "archived", "created_at", "duration")}
    table = Table(header_style="bold")
    for name in _LS_FIXED:
        table.add_column(name, no_wrap=name in ("id", "created"), overflow="fold")
    for key in keys:
        table.add_column(key, overflow="fold", justify="right")
    for i in range(len(runs)):
        status = fixed["status"][i] + (" (archived)" if fixed["archived"][i] else "")
        row = [fixed["id"][i], fixed["name"][i] or "-", fixed["experiment"][i], status,
               _fmt_time(fixed["created_at"][i]), _fmt_duration(fixed["duration"][i])]
        row += [_fmt_value(extra[key][i]) for key in keys]
        table.add_row(*row)
    console = _console()
    console.print(table)
    console.print(_plural(len(runs), "run"), style="dim")


def _column(runs, key: str) -> list:
    """Values of ``key`` (None where a run lacks it); an error if no run has it (a typo)."""
    values = runs.to_list(key, default=None)
    if values and all(v is None for v in values):
        runs.to_list(key)  # raises KeyError with the library's suggestions when the key is unknown
    return values


@cli.command(context_settings=CONTEXT)
@click.argument("run_id")
def show(run_id: str) -> None:
    """Show one run: attributes, params, sequences and artifacts.

    RUN_ID may be any unique prefix of the id.
    """
    repo = _state().repo()
    run = _resolve(repo, run_id)
    console = _console()

    attrs = Table(show_header=False, box=None, pad_edge=False, title=f"run {run.id}", title_justify="left")
    attrs.add_column(style="bold")
    attrs.add_column(overflow="fold")
    children = [child.id for child in run.children]
    for key, value in (
        ("id", run.id),
        ("name", run.name or "-"),
        ("experiment", run.experiment),
        ("status", run.status),
        ("tags", ", ".join(run.tags) or "-"),
        ("description", run.description or "-"),
        ("parent", run.parent or "-"),
        ("children", ", ".join(children) or "-"),
        ("archived", "yes" if run.archived else "no"),
        ("created", _fmt_time(run.created_at)),
        ("ended", _fmt_time(run.ended_at)),
        ("duration", _fmt_duration(run.duration)),
        ("host", f"{run.hostname} (pid {run.pid})"),
    ):
        attrs.add_row(key, value)
    console.print(attrs)

    console.print()
    tree = Tree(Text("params", style="bold"))
    _params_tree(tree, run.params)
    if not run.params:
        tree.add(Text("(none)"))
    console.print(tree)

    console.print()
    seqs = Table(title="sequences", title_justify="left", header_style="bold")
    for name in ("name", "context", "count", "steps", "last", "min", "max"):
        seqs.add_column(name, overflow="fold", justify="right" if name in ("count", "last", "min", "max") else "left")
    # One query reads every summary of the run (run.sequence() per name would rescan).
    for seq in repo.query_sequences(f"run.id == '{run.id}'"):
        steps = "-" if seq.count == 0 else f"{seq.first_step}..{seq.last_step}"
        seqs.add_row(seq.name, _fmt_context(seq.context), str(seq.count), steps,
                     _fmt_value(seq.last), _fmt_value(seq.min), _fmt_value(seq.max))
    console.print(seqs if seqs.row_count else Text("sequences: (none)", style="bold"))

    console.print()
    arts = Table(title="artifacts", title_justify="left", header_style="bold")
    for name in ("name", "kind", "size", "created", "path"):
        arts.add_column(name, overflow="fold")
    for art in run.artifacts:
        path = art.get("path") or "-"
        if path.startswith(str(repo.path) + os.sep):  # inside the repository: shorter, and still exact
            path = os.path.relpath(path, repo.path)
        arts.add_row(art["name"], art.get("kind") or "-", _fmt_bytes(art.get("size") or 0),
                     _fmt_time(art.get("created_at")), path)
    console.print(arts if arts.row_count else Text("artifacts: (none)", style="bold"))


def _params_tree(node: Tree, params: Any) -> None:
    if isinstance(params, dict):
        for key, value in params.items():
            if isinstance(value, dict) and value:
                _params_tree(node.add(Text(str(key), style="bold")), value)
            else:
                node.add(Text(f"{key} = {_fmt_value(value)}"))


FORMATS = ("table", "csv", "json", "parquet", "arrow")


@cli.command(context_settings=CONTEXT)
@click.argument("query")
@click.option("--sequences", "-s", is_flag=True, help="Output matching sequences in long form (one row per point).")
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write to FILE instead of stdout.")
def query(query: str, sequences: bool, fmt: str, output: str | None) -> None:
    """Print the runs (or with --sequences the points) matching QUERY.

    An empty QUERY ("") matches everything, archived runs included.  Runs come one row
    per run: id, name, experiment, status, tags, created_at, ended_at and every param as
    a dotted column.  Sequences come in long form, one row per point: run_id, name,
    context.<key> columns, step, value, epoch (NaN: none), timestamp (unix seconds).
    """
    repo = _state().repo()
    collection = repo.query_sequences(query or None) if sequences else repo.query(query or None)
    _write_table(collection.to_arrow(), fmt, output)
    if output:
        noun = ("sequence" if sequences else "run") + ("" if len(collection) == 1 else "s")
        click.echo(f"wrote {len(collection)} {noun} to {output}", err=True)


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
    repo = _state().repo()
    target = Path(dest)
    with _progress() as progress:
        task = progress.add_task("reading sequences", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, description="writing", completed=done, total=total)

        result = export_runs(repo, target, query or None, format=fmt, partition_by=partition_by,
                             overwrite=overwrite, on_progress=advance)
    click.echo(f"exported {_plural(result.runs, 'run')}, {_plural(result.sequences, 'sequence')} "
               f"({_plural(result.points, 'point')}) to {target}")


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    # On stderr, so `runstore export ... > log` keeps stdout clean; transient so
    # the finished bar does not linger above the summary line.
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)


# -- editing runs -------------------------------------------------------------------


@cli.command(context_settings=CONTEXT)
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID...")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def rm(run_ids: tuple[str, ...], yes: bool) -> None:
    """Delete runs, with their sequences and artifacts."""
    repo = _state().repo()
    runs = _resolve_all(repo, run_ids)
    if not yes:
        for run in runs:
            click.echo(f"  {run.id}  {run.name or '-'}  ({run.experiment}, {run.status})")
        noun = "run" if len(runs) == 1 else f"{len(runs)} runs"
        click.confirm(f"Delete {'this' if len(runs) == 1 else 'these'} {noun}?", abort=True)
    for run in runs:
        repo.delete_run(run.id)
        click.echo(f"deleted {run.id}")


def _set_archived(run_ids: tuple[str, ...], value: bool) -> None:
    repo = _state().repo()
    for run in _resolve_all(repo, run_ids):
        run.archived = value
        click.echo(f"{'archived' if value else 'unarchived'} {run.id}")


@cli.command(context_settings=CONTEXT)
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID...")
def archive(run_ids: tuple[str, ...]) -> None:
    """Archive runs: hidden from `ls` unless --all, kept in queries and exports."""
    _set_archived(run_ids, True)


@cli.command(context_settings=CONTEXT)
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID...")
def unarchive(run_ids: tuple[str, ...]) -> None:
    """Unarchive runs."""
    _set_archived(run_ids, False)


@cli.command(context_settings=CONTEXT)
@click.argument("run_id")
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
    click.echo(f"{run.id} tags: {', '.join(run.tags) or '(none)'}")


# -- maintenance ---------------------------------------------------------------------


@cli.command(context_settings=CONTEXT)
def check() -> None:
    """Verify the repository's integrity (exit code 1 when problems are found)."""
    repo = _state().repo()
    problems = repo.check()
    for problem in problems:
        click.echo(f"problem: {problem}")
    if problems:
        click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found in {repo.path}", err=True)
        raise click.exceptions.Exit(1)
    click.echo(f"ok: {_plural(len(repo), 'run')} in {repo.path}, no problems found")


@cli.command(context_settings=CONTEXT)
def compact() -> None:
    """Reclaim the space of deleted runs (needs the repository to itself)."""
    repo = _state().repo()
    before, after = repo.compact()
    click.echo(f"compacted {repo.path}: {_fmt_bytes(before)} -> {_fmt_bytes(after)}")


@cli.command(context_settings=CONTEXT)
def demo() -> None:
    """Train a small model into the repository, then query it.

    Logistic regression in NumPy at several learning rates, tracked into --repo (or
    $RUNSTORE_REPO, or ./.runstore, created if missing), then a query over the runs.
    """
    from .demo import run_demo

    run_demo(path=_state().repo_path)
