"""``runstore sql "SELECT ..."``: DuckDB SQL over the repository, printed as a table.

Thin over ``repo.sql`` (see ``sql.py``); the repository is opened read-only, so a
query can never change it (DuckDB's own tables live in memory and vanish).
"""

from __future__ import annotations

import datetime
from typing import Any

import click

from . import table as T
from .runs import color_on, emit, state


@click.command(short_help="Run SQL (DuckDB) over the runs, params, sequences and points.")
@click.argument("query", required=False)
@click.option("--format", "-f", "fmt", type=click.Choice(("table", "plain", "csv", "json")), default=None,
              help="Output format (default: a table fitted to the terminal; plain when piped).")
@click.option("--wide", "-w", is_flag=True, help="Keep every column, even when lines get longer than the terminal.")
@click.option("--tables", is_flag=True, help="List the tables and views with their columns, then exit.")
def sql(query: str | None, fmt: str | None, wide: bool, tables: bool) -> None:
    """Run QUERY (DuckDB SQL) over the repository.

    Tables: runs, params, sequences, points, artifacts; views: experiments, trials,
    trial_runs, results, epochs.  Filters on points read only the sequences they
    reach.  Needs runstore[sql] (DuckDB).

    \b
    runstore sql "SELECT name, status FROM runs LIMIT 5"
    runstore sql -f csv "SELECT step, value FROM points WHERE name = 'acc'"
    """
    repo = state().repo(readonly=True)
    if tables:
        _print_tables(repo)
        return
    if not query or not query.strip():
        raise click.UsageError('give a query, e.g. runstore sql "SELECT * FROM runs LIMIT 5" (or --tables)')
    result = repo.sql(query)
    table = result.to_arrow()
    names = list(table.column_names)
    raw = {n: table.column(n).to_pylist() for n in names}
    if fmt in ("csv", "json"):
        emit([], [], fmt=fmt, wide=wide, color=False, raw={n: [_plain(v) for v in raw[n]] for n in names})
        return
    columns = []
    for i, name in enumerate(names):
        values = raw[name]
        numeric = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
        cells = [_cell(v) for v in values]
        columns.append(T.Column(name, cells, i, fixed=numeric, justify="right" if numeric else "left"))
    footer = [T.plural(len(table), "row")]
    emit(columns, footer, fmt="plain" if fmt == "plain" else None, wide=wide, color=color_on())


def _print_tables(repo: Any) -> None:
    from ..analysis.sql import TABLES, VIEWS

    out = T.console(color=False)
    for name in list(TABLES) + list(VIEWS):
        cols = repo.sql(f"SELECT * FROM {name} LIMIT 0").columns
        kind = "table" if name in TABLES else "view"
        out.print(f"{name} ({kind}): {', '.join(cols)}")


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return value


def _cell(value: Any) -> str:
    if isinstance(value, datetime.datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return T.fmt_number(value, 12)
    return T.fmt_value(value, 12)
