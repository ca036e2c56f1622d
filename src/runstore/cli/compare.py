"""``runstore diff`` (runs side by side) and ``runstore experiments`` (one row per experiment)."""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import click

from . import table as T
from .runs import color_on, emit, key_values, options, state
from ..tracking.handles import handle


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    elif prefix:
        out[prefix[:-1]] = tree
    return out


def _same(values: Sequence[Any]) -> bool:
    texts = {json.dumps(v, sort_keys=True, default=str) for v in values}
    return len(texts) == 1


def _print_table(out: Any, title: str, columns: list[T.Column], width: int | None, plain: bool,
                 wide: bool) -> None:
    out.print()
    out.print(title, style="" if plain else "bold")
    layout = T.fit(columns, width, wide=wide)
    for line in T.render(layout, plain=plain):
        out.print(line)
    if layout.dropped:
        for line in T.footer_lines(T.dropped_note(layout.dropped), None if wide else width):
            out.print(line, style="dim")


def _side_by_side(rows: list[tuple[str, list[Any]]], handles: list[str], key_header: str) -> list[T.Column]:
    cols = [T.Column(key_header, [key for key, _ in rows], 0, min_width=12)]
    for i, h in enumerate(handles):
        values = [vals[i] for _, vals in rows]
        numeric = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
        cols.append(T.Column(h, [T.fmt_value(v) for v in values], 1 + i, fixed=numeric,
                             justify="right" if numeric else "left", min_width=8))
    return cols


@click.command(short_help="Compare runs side by side: params, metrics, attributes.")
@click.argument("runs", nargs=-1, required=True, metavar="RUN RUN [RUN...]")
@click.option("--all", "-a", "show_all", is_flag=True, help="Also show the params and attributes that are the same.")
@options
def diff(runs: tuple[str, ...], show_all: bool, wide: bool, full_ids: bool, absolute: bool) -> None:
    """Compare runs: params that differ, summaries of shared metrics, attributes that differ.

    Each RUN is a handle, a full id or a unique prefix of either.  Runs are columns,
    in the order given; what does not fit the terminal is named below the table.
    """
    if len(runs) < 2:
        raise click.UsageError("diff needs at least two runs")
    repo = state().repo(readonly=True)
    found = []
    for text in runs:
        run = repo.get_run(text)
        if run.id not in [r.id for r in found]:
            found.append(run)
    if len(found) < 2:
        raise click.UsageError("these name the same run; diff needs at least two different runs")
    heads = [r.id if full_ids else r.handle for r in found]
    plain = not T.is_terminal()
    width = T.terminal_width()
    out = T.console(color=color_on() and not plain, width=None if wide else width)
    for h, run in zip(heads, found):
        out.print(T.footer_lines(f"{h}  {run.name or '-'}  ({run.experiment}, {run.status})", width)[0])

    params = [_flatten(r.params) for r in found]
    keys = list(dict.fromkeys(k for p in params for k in p))
    rows = [(k, [p.get(k) for p in params]) for k in keys]
    differ = [(k, v) for k, v in rows if not _same(v)]
    shown = rows if show_all else differ
    if shown:
        _print_table(out, "params" if show_all else "params that differ", _side_by_side(shown, heads, "param"),
                     width, plain, wide)
    same = len(rows) - len(differ)
    if not differ:
        out.print()
        out.print(f"params: all {T.plural(len(rows), 'param')} the same" if rows else "params: (none)",
                  style="" if plain else "bold")
    elif same and not show_all:
        out.print(f"{T.plural(same, 'param')} the same (--all shows them)", style="dim")

    seq_rows = _shared_summaries(repo, found)
    if seq_rows:
        _print_table(out, "metrics (shared)", _side_by_side(seq_rows, heads, "key"), width, plain, wide)
    else:
        out.print()
        out.print("metrics: none shared", style="" if plain else "bold")

    attrs = [("experiment", lambda r: r.experiment), ("status", lambda r: r.status),
             ("tags", lambda r: ", ".join(r.tags) or "-"), ("description", lambda r: r.description or "-"),
             ("parent", lambda r: handle(r.parent) if r.parent else "-"),
             ("archived", lambda r: "yes" if r.archived else "no"),
             ("created", lambda r: T.fmt_when(r.created_at, absolute)),
             ("duration", lambda r: T.fmt_duration(r.duration)), ("host", lambda r: r.hostname)]
    attr_rows = [(name, [get(r) for r in found]) for name, get in attrs]
    if not show_all:
        attr_rows = [(k, v) for k, v in attr_rows if not _same(v)]
    if attr_rows:
        _print_table(out, "attributes" if show_all else "attributes that differ",
                     _side_by_side(attr_rows, heads, "attribute"), width, plain, wide)


def _shared_summaries(repo: Any, runs: list) -> list[tuple[str, list[Any]]]:
    """``acc@subset=val.last`` etc. for every sequence that all runs have (name + context)."""
    listed = ", ".join(f"'{r.id}'" for r in runs)
    by_run: dict[str, dict[tuple, Any]] = {r.id: {} for r in runs}
    for (run_id, name, context), seq in zip(*_keys_and_seqs(repo, listed)):
        by_run[run_id][(name, json.dumps(context, sort_keys=True))] = (context, seq)
    common = [k for k in by_run[runs[0].id] if all(k in by_run[r.id] for r in runs)]
    # A bare name is enough when no run has two sequences of that name.
    several = {n for r in runs for n in {n for n, _ in by_run[r.id]}
               if sum(1 for m, _ in by_run[r.id] if m == n) > 1}
    rows = []
    for name, ctx in common:
        context = by_run[runs[0].id][(name, ctx)][0]
        spelled = f"{name}@{_spell(context)}" if context and name in several else name
        for field in ("last", "min", "max"):
            rows.append((f"{spelled}.{field}", [getattr(by_run[r.id][(name, ctx)][1], field) for r in runs]))
    return rows


def _keys_and_seqs(repo: Any, listed: str) -> tuple[list, list]:
    seqs = repo.query_sequences(f"run.id in [{listed}]")
    return seqs.keys, list(seqs)


def _spell(context: dict, prefix: str = "") -> str:
    parts = []
    for key, value in sorted(context.items()):
        if isinstance(value, dict):
            parts.append(_spell(value, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}={value}")
    return ",".join(parts)


# -- experiments ----------------------------------------------------------------------------------
STATUSES = ("running", "finished", "failed", "killed")


@click.command(short_help="Experiments: runs by status, last activity, best value.")
@click.option("--metric", "-m", metavar="KEY", help="Show the best value of KEY per experiment (e.g. acc.max, "
              "loss@subset=val.min).")
@click.option("--mode", type=click.Choice(("max", "min")), help="Whether higher or lower is better  [default: "
              "min for .min keys and names with loss or error, else max].")
@click.option("--all", "-a", "show_all", is_flag=True, help="Count archived runs too.")
@options
def experiments(metric: str | None, mode: str | None, show_all: bool, wide: bool, full_ids: bool,
                absolute: bool) -> None:
    """List experiments: runs by status, last activity and the best value of a metric."""
    repo = state().repo(readonly=True)
    runs = repo.query(None)
    if not show_all:
        runs = runs.filter(archived=False)
    if not len(runs):
        T.echo("0 experiments (no runs)")
        return
    exps = runs.to_list("experiment", default=None)
    statuses = runs.to_list("status", default=None)
    created = runs.to_list("created_at", default=None)
    ended = runs.to_list("ended_at", default=None)
    ids = runs.ids
    values: list = [None] * len(runs)
    if metric:
        values = key_values(runs, metric)
        if mode is None:
            lower = metric.rsplit(".", 1)[-1] == "min" or any(w in metric.lower() for w in ("loss", "err"))
            mode = "min" if lower else "max"
    groups: dict[str, dict] = {}
    for i, exp in enumerate(exps):
        g = groups.setdefault(exp or "-", {"n": 0, **{s: 0 for s in STATUSES}, "last": 0.0, "best": None,
                                           "best_id": None})
        g["n"] += 1
        if statuses[i] in STATUSES:
            g[statuses[i]] += 1
        g["last"] = max(g["last"], ended[i] or 0.0, created[i] or 0.0)
        v = values[i]
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v):
            if g["best"] is None or (v > g["best"] if mode == "max" else v < g["best"]):
                g["best"], g["best_id"] = v, ids[i]
    names = sorted(groups, key=lambda e: -groups[e]["last"])  # most recently active first
    cols = [T.Column("experiment", names, 0, min_width=12),
            T.Column("runs", [f"{groups[e]['n']:,}" for e in names], 1, fixed=True, justify="right")]
    for j, s in enumerate(STATUSES):
        if not any(groups[e][s] for e in names):
            continue  # a status no run has: no column
        cells = [f"{groups[e][s]:,}" if groups[e][s] else "-" for e in names]
        styles = [T.STATUS_STYLES[s] if groups[e][s] else None for e in names]
        cols.append(T.Column(s, cells, 2 + j, fixed=True, justify="right", styles=styles))
    cols.append(T.Column("last activity", [T.fmt_when(groups[e]["last"], absolute) for e in names], 9, fixed=True))
    if metric:
        cols.append(T.Column(f"{mode} {metric}", [T.fmt_value(groups[e]["best"]) for e in names], 6, fixed=True,
                             justify="right"))
        cols.append(T.Column("best run", [("-" if groups[e]["best_id"] is None else
                                           groups[e]["best_id"] if full_ids else handle(groups[e]["best_id"]))
                                          for e in names], 7, fixed=True))
    footer = [f"{T.plural(len(names), 'experiment')}, {T.plural(len(runs), 'run')}, most recently active first"]
    emit(cols, footer, fmt=None, wide=wide, color=color_on())

