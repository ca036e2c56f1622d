"""The run tables of ``runstore ls`` and ``runstore query``: which columns, in which order, fitted.

Columns are prioritised the way a reader scans a list of runs: id, name and
status first, then what was asked for (``--columns``) or what a reader wants
without knowing key spellings (``ls``: the last values of the most common
metrics; ``query``: the params that vary across the selection), then
experiment, created and duration.  :mod:`runstore.cli.table` drops what does
not fit and says so in a footer.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import math
from typing import Any, Sequence

import click

from . import table as T
from ..tracking.handles import handle
from ..errors import MatchError

# Priorities (lower is kept first when the terminal is narrow).
P_ID, P_NAME, P_STATUS, P_ASKED, P_METRIC, P_PARAM = 0, 1, 2, 10, 30, 40
P_EXPERIMENT, P_CREATED, P_DURATION, P_TAGS = 60, 70, 80, 90
AUTO_METRICS = 6  # at most this many metric columns by default (fewer when they do not fit)


def options(fn):
    """The display options shared by the run tables (ls, query, experiments)."""
    for decorator in reversed([
        click.option("--wide", "-w", is_flag=True, help="Keep every column, even when lines get longer than "
                     "the terminal."),
        click.option("--full-ids", is_flag=True, help="Show full 24-character run ids instead of 8-character "
                     "handles."),
        click.option("--absolute", is_flag=True, help="Show times as dates instead of \"3 min ago\"."),
    ]):
        fn = decorator(fn)
    return fn


def split_keys(spec: str | None) -> list[str]:
    return [c.strip() for c in spec.split(",") if c.strip()] if spec else []


def key_values(runs: Any, key: str) -> list:
    """Values of ``key`` per run (None where a run lacks it); a usage error for a typo or an ambiguous key."""
    try:
        values = runs.to_list(key, default=None)
        if values and all(v is None for v in values):
            runs.to_list(key)  # raises KeyError with the library's suggestions when no run has the key
        return values
    except (KeyError, MatchError) as exc:
        raise click.BadParameter(cli_advice(str(exc.args[0] if exc.args else exc)), param_hint="--columns/--sort") from None


def cli_advice(message: str) -> str:
    """The library's key errors end with Python advice ("pass default=..."); a shell user
    gets advice they can act on instead."""
    head, sep, _ = message.partition("; pass default=")
    if not sep:
        return message
    return head + "; check the spelling (`runstore show RUN` lists a run's params and sequences)"


def id_column(ids: Sequence[str], full: bool, header: str = "id") -> T.Column:
    return T.Column(header, [i if full else handle(i) for i in ids], P_ID, fixed=True)


def status_column(statuses: Sequence[str], archived: Sequence[bool] | None = None) -> T.Column:
    cells = [s + (" (archived)" if archived and archived[i] else "") for i, s in enumerate(statuses)]
    return T.Column("status", cells, P_STATUS, fixed=True, styles=T.status_styles(statuses))


def value_column(header: str, values: Sequence[Any], priority: int) -> T.Column:
    numeric = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
    cells = [T.fmt_value(v) for v in values]
    return T.Column(header, cells, priority, fixed=numeric, justify="right" if numeric else "left",
                    min_width=10)


def base_columns(runs: Any, full_ids: bool, absolute: bool, archived: bool = True) -> dict[str, T.Column]:
    info = {key: runs.to_list(key, default=None)
            for key in ("id", "name", "experiment", "status", "archived", "created_at", "duration")}
    return {
        "id": id_column(info["id"], full_ids),
        "name": T.Column("name", [n or "-" for n in info["name"]], P_NAME, min_width=12),
        "status": status_column(info["status"], info["archived"] if archived else None),
        "experiment": T.Column("experiment", [e or "-" for e in info["experiment"]], P_EXPERIMENT, min_width=10),
        "created": T.Column("created", [T.fmt_when(t, absolute) for t in info["created_at"]], P_CREATED,
                            fixed=True),
        "duration": T.Column("duration", [T.fmt_duration(d) for d in info["duration"]], P_DURATION, fixed=True,
                             justify="right"),
    }


# -- the most common metrics of a set of runs (ls without --columns) --------------------------------
def common_metrics(repo: Any, run_ids: Sequence[str], limit: int = AUTO_METRICS) -> list[tuple[str, str, list]]:
    """(header, key, last values) of the sequences most runs have, most common first.

    The key is the shortest ``run.get`` spelling that names one sequence per run:
    ``acc.last`` when every run has one ``acc``, else ``acc@subset=val.last``.
    """
    if not run_ids:
        return []
    counts: collections.Counter = collections.Counter()
    contexts: dict[str, set] = collections.defaultdict(set)
    last: dict[tuple, dict] = collections.defaultdict(dict)
    order: dict[tuple, int] = {}
    for run_id, name, context, seq in run_sequences(repo, run_ids):
        if seq.count == 0 or seq.type != "float":  # images, text, ... have no last value to show
            continue
        ctx = _spell_context(context)
        ident = (name, ctx)
        counts[ident] += 1
        order.setdefault(ident, len(order))
        contexts[name].add(ctx)
        last[ident][run_id] = seq.last
    ranked = sorted(counts, key=lambda k: (-counts[k], order[k]))[:limit]
    out = []
    for name, ctx in ranked:
        spelled = name if len(contexts[name]) == 1 or not ctx else f"{name}@{ctx}"
        values = [last[(name, ctx)].get(i) for i in run_ids]
        out.append((spelled, f"{spelled}.last", values))
    return out


def run_sequences(repo: Any, run_ids: Sequence[str]) -> list[tuple[str, str, dict, Any]]:
    """(run id, name, context, Sequence) of the given runs' sequences.

    A few runs (the 20 of ``ls``, one of ``tail``) read their own sequence records, so
    the cost does not grow with the repository; many runs share one query, which
    reads every sequence summary once."""
    if len(run_ids) > 100:
        listed = ", ".join(f"'{i}'" for i in run_ids)
        seqs = repo.query_sequences(f"run.id in [{listed}]")
        return [(rid, name, ctx, seq) for (rid, name, ctx), seq in zip(seqs.keys, seqs)]
    out = []
    for run_id in run_ids:
        run = repo.get_run(run_id)
        for name, ctx in run.sequences():
            out.append((run_id, name, ctx, run.sequence(name, ctx)))
    return out


def _spell_context(context: dict, prefix: str = "") -> str:
    parts = []
    for key, value in sorted(context.items()):
        if isinstance(value, dict):
            inner = _spell_context(value, f"{prefix}{key}.")
            if inner:
                parts.append(inner)
        else:
            parts.append(f"{prefix}{key}={value}")
    return ",".join(parts)


# -- params that vary (query) ------------------------------------------------------------------------
def params_by_variance(table: Any, skip: Sequence[str]) -> tuple[list[str], list[tuple[str, Any]]]:
    """(varying param columns, most distinct values first; constant (name, value) pairs)."""
    varying, constant = [], []
    for name in table.column_names:
        if name in skip:
            continue
        values = table.column(name).to_pylist()
        present = [v for v in values if v is not None]
        distinct = {json.dumps(v, sort_keys=True, default=str) for v in present}
        if len(distinct) > 1 or (present and len(present) < len(values)):
            varying.append((-len(distinct), len(varying), name))
        elif present:
            constant.append((name, present[0]))
    return [name for _, _, name in sorted(varying)], constant


# -- output --------------------------------------------------------------------------------------------
def emit(columns: list[T.Column], footer: list[str], *, fmt: str | None, wide: bool, color: bool,
         raw: dict[str, list] | None = None) -> None:
    """Print a fitted table (or csv/json of ``raw``) with its footer lines (dim, after the table)."""
    stdout = click.get_text_stream("stdout")
    if fmt in ("csv", "json"):
        data = raw or {c.header: c.cells for c in columns}
        names = list(data)
        rows = [dict(zip(names, vals)) for vals in zip(*data.values())] if names else []
        if fmt == "json":
            stdout.write(json.dumps([{k: _json_safe(v) for k, v in r.items()} for r in rows], indent=1,
                                    default=str) + "\n")
        else:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            # Exact bytes for a file or a pipe; on a terminal, controls escaped (T.safe_lines).
            stdout.write(T.safe_lines(buf.getvalue()) if T.is_terminal() else buf.getvalue())
        return
    tty = T.is_terminal()
    plain = fmt == "plain" or (fmt is None and not tty)
    width = T.terminal_width()
    layout = T.fit(columns, width, wide=wide)
    out = T.console(color=color and not plain, width=None if wide else width)
    for line in T.render(layout, plain=plain):
        out.print(line)
    notes = list(footer)
    if layout.dropped:
        notes.append(T.dropped_note(layout.dropped))
    for note in notes:
        for line in T.footer_lines(note, None if wide else width):
            out.print(line, style="dim")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


FORMAT_OPTION = click.option(
    "--format", "-f", "fmt", type=click.Choice(("table", "plain", "csv", "json")), default=None,
    help="table (with colour and a header rule), plain (no styling), csv or json  [default: table on a "
         "terminal, plain otherwise]")


def write_arrow(table: Any, fmt: str, output: str | None) -> None:
    """csv/json/parquet/arrow of an Arrow table to ``output`` or stdout (binary only when not a terminal)."""
    import sys
    from pathlib import Path

    import pyarrow as pa

    from ..export import flat_table

    if fmt in ("parquet", "arrow") and output is None and T.is_terminal():
        raise click.UsageError(f"refusing to write binary {fmt} to a terminal; use -o FILE or redirect stdout")
    sink: Any = output if output else io.BytesIO()
    if fmt == "csv":
        from pyarrow import csv as pacsv

        pacsv.write_csv(flat_table(table), sink)
    elif fmt == "json":
        rows = [_json_deep(row) for row in table.to_pylist()]
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
        data = sink.getvalue()
        if fmt == "csv" and T.is_terminal():  # text for a person: controls escaped (T.safe_lines)
            data = T.safe_lines(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
        stream = sys.stdout.buffer  # click's get_binary_stream is deprecated (click 8.5)
        stream.write(data)
        stream.flush()


def _json_deep(value: Any) -> Any:
    from datetime import datetime

    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: _json_deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_deep(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def arrow_columns(table: Any, *, full_ids: bool, absolute: bool) -> list[T.Column]:
    """Fitted columns for any Arrow table (query --sequences): ids as handles, times relative."""
    from ..export import flatten_structs

    flat = flatten_structs(table)
    out = []
    for i, name in enumerate(flat.column_names):
        values = flat.column(name).to_pylist()
        if name in ("id", "run_id"):
            out.append(id_column(values, full_ids, header=name))
        elif name == "timestamp":
            out.append(T.Column(name, [T.fmt_when(v, absolute) for v in values], 30, fixed=True))
        elif name == "status":
            out.append(status_column(values))
        elif name == "name":
            out.append(T.Column(name, [v or "-" for v in values], P_NAME, min_width=10))
        elif name in ("data", "counts", "bin_edges") and "type" in flat.column_names:
            # object payloads (issue 13): a size on screen; the bytes go to files (-f parquet, export)
            unit = "B" if name == "data" else "bins" if name == "counts" else "edges"
            cells = ["-" if v is None else f"{len(v):,} {unit}" for v in values]
            out.append(T.Column(name, cells, 40 + i))
        elif name == "text" and "type" in flat.column_names:
            out.append(T.Column(name, ["-" if v is None else v for v in values], 9, min_width=12))  # shortened, not hidden
        elif name == "type" and "step" in flat.column_names:
            out.append(T.Column(name, [v or "-" for v in values], 7, fixed=True))
        else:
            priority = {"step": 6, "value": 7, "epoch": 20}.get(name, 5 if name.startswith("context.") else 50 + i)
            col = value_column(name, values, priority)
            if name == "epoch":
                col.cells = ["-" if c == "nan" else c for c in col.cells]
            out.append(col)
    return out


TABLE_ROWS = 1000  # a screen table beyond this is unreadable and slow; csv/json/parquet have no limit


def state() -> Any:
    return click.get_current_context().find_root().obj


def color_on() -> bool:
    return getattr(state(), "color", True)


# -- ls ----------------------------------------------------------------------------------------------
@click.command()
@click.argument("query", required=False, default="")
@click.option("--columns", "-c", metavar="KEYS",
              help="Columns after id, name and status, comma separated: hparams.lr,acc@subset=val.last "
                   "(default: the last values of the most common metrics).")
@click.option("--sort", "sort_key", metavar="KEY", help="Sort by a key (e.g. loss.last, hparams.lr) instead of "
              "newest first.")
@click.option("--reverse", "-r", is_flag=True, help="Reverse the order.")
@click.option("--limit", "-n", type=click.IntRange(min=0), default=20, show_default=True, metavar="N",
              help="Show at most N runs (0: no limit).")
@click.option("--all", "-a", "show_all", is_flag=True, help="Every run: archived ones too, and no limit.")
@options
@FORMAT_OPTION
def ls(query: str, columns: str | None, sort_key: str | None, reverse: bool, limit: int, show_all: bool,
       wide: bool, full_ids: bool, absolute: bool, fmt: str | None) -> None:
    """List runs (matching QUERY), newest first.

    QUERY uses the query language, e.g. "run.hparams.lr < 0.01 and run.status == 'finished'".
    Column and sort keys use the run.get spelling: a param path (hparams.lr), a run
    attribute (status), or a sequence summary (loss.last, loss@subset=val.max).
    Columns that do not fit the terminal are left out and named below the table.
    """
    repo = state().repo(readonly=True)
    selected = repo.query(query or None)
    hidden = 0
    if not show_all:
        unarchived = selected.filter(archived=False)
        hidden = len(selected) - len(unarchived)
        selected = unarchived
    keys = split_keys(columns)
    if sort_key:
        try:
            selected = selected.sort(sort_key, reverse=reverse)
        except (KeyError, MatchError) as exc:
            raise click.BadParameter(cli_advice(str(exc.args[0] if exc.args else exc)), param_hint="--sort") from None
    elif not reverse:
        selected = selected[::-1]  # newest first
    total = len(selected)
    runs = selected if show_all or not limit else selected[:limit]
    base = base_columns(runs, full_ids, absolute, archived=show_all)
    extra = [value_column(key, key_values(runs, key), P_ASKED + i) for i, key in enumerate(keys)]
    raw_extra = {key: runs.to_list(key, default=None) for key in keys}
    if not keys:
        for i, (header, key, values) in enumerate(common_metrics(repo, runs.ids)):
            extra.append(value_column(header, values, P_METRIC + i))
            raw_extra[key] = values
    cols = [base["id"], base["name"], base["status"], *extra, base["experiment"], base["created"],
            base["duration"]]
    footer = [_ls_footer(len(runs), total, hidden, sort_key, reverse)]
    if not keys and extra:
        footer.append(f"metrics show last values (sort: --sort {next(iter(raw_extra))})")
    raw = None
    if fmt in ("csv", "json"):
        raw = {"id": runs.ids, "name": runs.to_list("name", default=None),
               "status": runs.to_list("status", default=None),
               "experiment": runs.to_list("experiment", default=None),
               "created_at": [T.utc_iso(t) for t in runs.to_list("created_at", default=None)],
               "duration": runs.to_list("duration", default=None), **raw_extra}
    if not len(runs) and fmt not in ("csv", "json"):
        empty = not query and not len(repo)
        T.echo(footer[0] + ("; track one with Run(...), or try `runstore demo`" if empty else ""))
        return
    emit(cols, footer, fmt=fmt, wide=wide, color=color_on(), raw=raw)


def _ls_footer(shown: int, total: int, hidden: int, sort_key: str | None, reverse: bool) -> str:
    order = f"sorted by {sort_key}{' (descending)' if reverse else ''}" if sort_key else ("oldest first" if reverse else "newest first")
    text = T.plural(total, "run") if shown == total else f"{shown:,} of {T.plural(total, 'run')}"
    text += f", {order}" if total > 1 else ""
    if shown < total:
        text += "; --limit N or --all for more"
    if hidden:
        text += f"; {hidden:,} archived hidden (--all)"
    return text


# -- query -------------------------------------------------------------------------------------------
FORMATS = ("table", "plain", "csv", "json", "parquet", "arrow")


@click.command()
@click.argument("query")
@click.option("--sequences", "-s", is_flag=True, help="Output matching sequences in long form (one row per point).")
@click.option("--columns", "-c", metavar="KEYS", help="Columns after id, name and status, comma separated "
              "(default: the params that differ across the selection).")
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format  [default: table on a terminal, plain otherwise].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write to FILE instead of "
              "stdout.")
@options
def query(query: str, sequences: bool, columns: str | None, fmt: str | None, output: str | None, wide: bool,
          full_ids: bool, absolute: bool) -> None:
    """Print the runs (or with --sequences the points) matching QUERY.

    An empty QUERY ("") matches everything, archived runs included.  On screen, runs
    show id, name, status, then the params that differ across the selection (the
    constant ones are listed below the table).  csv, json, parquet and arrow hold one
    row per run: id, name, experiment, status, tags, created_at, ended_at and every
    param as a dotted column (only id, name and KEYS with --columns).  Sequences come in
    long form, one row per point: run_id, name, context.<key> columns, step, value,
    epoch (NaN: none), timestamp (unix seconds).
    """
    repo = state().repo(readonly=True)
    keys = split_keys(columns)
    collection = repo.query_sequences(query or None) if sequences else repo.query(query or None)
    hidden = 0
    if sequences:
        collection, hidden = _points_only(repo, query, collection, fmt in ("csv", "json", "parquet", "arrow"))
    if fmt in ("csv", "json", "parquet", "arrow"):
        if keys and not sequences:
            for key in keys:
                key_values(collection, key)
            table = collection.to_arrow("id", "name", *keys)
        else:
            table = collection.to_arrow()
        write_arrow(table, fmt, output)
    else:
        if output:
            with open(output, "w", encoding="utf-8") as f, _redirect(f):
                _query_screen(repo, collection, sequences, keys, "plain", True, full_ids, absolute)
        else:
            _query_screen(repo, collection, sequences, keys, fmt, wide, full_ids, absolute)
    if hidden:
        T.echo(f"{T.plural(hidden, 'object sequence')} (images, text, ...) not shown: their points have other "
               "columns; add `and seq.type != \"float\"` to the query to see them", err=True)
    if output:
        noun = ("sequence" if sequences else "run") + ("" if len(collection) == 1 else "s")
        T.echo(f"wrote {len(collection)} {noun} to {output}", err=True)


def _points_only(repo: Any, query: str, collection: Any, to_file: bool) -> tuple[Any, int]:
    """A selection mixing scalar and object sequences has two shapes of points (issue 13):
    on screen the scalar ones are shown and the others counted; a file gets one shape or
    a clear error saying how to pick it."""
    where = f"({query}) and " if query.strip() else ""
    floats = repo.query_sequences(where + 'seq.type == "float"')
    if not 0 < len(floats) < len(collection):
        return collection, 0
    objects = len(collection) - len(floats)
    if to_file:
        raise click.UsageError(
            f"this selection mixes {T.plural(len(floats), 'scalar sequence')} and "
            f"{T.plural(objects, 'object sequence')} (images, text, ...), whose points have different columns; "
            "add `and seq.type == \"float\"` (the scalars) or `and seq.type != \"float\"` (the objects) to the query")
    return floats, objects


class _redirect:
    """Point click's stdout at a file for one table (``query -o FILE`` in table format)."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def __enter__(self) -> None:
        import sys

        self.saved, sys.stdout = sys.stdout, self.f

    def __exit__(self, *exc: Any) -> None:
        import sys

        sys.stdout = self.saved


def _query_screen(repo: Any, collection: Any, sequences: bool, keys: list[str], fmt: str | None, wide: bool,
                  full_ids: bool, absolute: bool) -> None:
    n = len(collection)
    shown = collection[:TABLE_ROWS] if n > TABLE_ROWS else collection
    footer = []
    if sequences:
        table = shown.to_arrow()
        cols = arrow_columns(table, full_ids=full_ids, absolute=absolute)
        footer.append(f"{T.plural(n, 'sequence')}, {T.plural(table.num_rows, 'point')}")
    else:
        base = base_columns(shown, full_ids, absolute)
        extra = [value_column(key, key_values(shown, key), P_ASKED + i) for i, key in enumerate(keys)]
        constant: list = []
        if not keys and len(shown):
            table = shown.to_arrow()
            skip = ("id", "name", "experiment", "status", "tags", "created_at", "ended_at")
            varying, constant = params_by_variance(table, skip)
            for i, name in enumerate(varying):
                extra.append(value_column(name, table.column(name).to_pylist(), P_PARAM + i))
        tags = T.Column("tags", [T.fmt_value(t) for t in shown.to_list("tags", default=None)], P_TAGS, min_width=8)
        cols = [base["id"], base["name"], base["status"], *extra, base["experiment"], base["created"],
                base["duration"], tags]
        footer.append(T.plural(n, "run"))
        if constant:
            same = ", ".join(f"{k}={T.fmt_value(v)}" for k, v in constant)
            footer.append(f"same in all {T.plural(len(shown), 'run')}: {same}")
    if n > TABLE_ROWS:
        T.echo(f"showing the first {TABLE_ROWS} of {n} rows; use --format csv/json/parquet for all of them",
                   err=True)
    if not n:
        T.echo(footer[0])
        return
    emit(cols, footer, fmt=fmt, wide=wide, color=color_on())
