"""``runstore tail`` (follow a live run) and ``runstore plot`` (curves in the terminal, with plotext)."""

from __future__ import annotations

import re
import time
from typing import Any, Sequence

import click
import numpy as np
from rich.text import Text

from . import table as T
from .runs import color_on, run_sequences, state
from ..analysis.keys import parse_seq_key

SPARKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 24


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """The last ``width`` values (or the curve squeezed into ``width`` buckets) as block characters."""
    y = np.asarray(values, dtype=np.float64)
    y = y[np.isfinite(y)]
    if not len(y):
        return ""
    if len(y) > width:  # bucket means keep the shape of the whole curve
        edges = np.linspace(0, len(y), width + 1).astype(int)
        y = np.array([y[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
    lo, hi = float(y.min()), float(y.max())
    if hi == lo:
        return SPARKS[3] * len(y)
    idx = ((y - lo) / (hi - lo) * (len(SPARKS) - 1)).round().astype(int)
    return "".join(SPARKS[i] for i in idx)


def _metric_filter(metrics: Sequence[str]) -> list[tuple[str, tuple]]:
    """``loss`` or ``loss@subset=val`` -> (name, ((key, raw value), ...))."""
    out = []
    for text in metrics:
        spec = parse_seq_key(text if re.search(r"\.(last|min|max|count)$", text) else text + ".last")
        if spec is None:
            raise click.BadParameter(f"{text!r} is not a metric name such as loss or loss@subset=val",
                                     param_hint="--metric")
        out.append((spec.name, spec.context))
    return out


def _wanted(name: str, context: dict, filters: list) -> bool:
    from ..analysis.keys import SeqKey

    return not filters or any(SeqKey(n, c, "last").matches(name, context) for n, c in filters)


def _tail_table(repo: Any, run: Any, filters: list, width: int | None, plain: bool) -> Any:
    from rich.console import Group

    rows = [((rid, n, c), seq) for rid, n, c, seq in run_sequences(repo, [run.id])
            if seq.type == "float" and _wanted(n, c, filters)]  # images, text, ...: runstore show lists them
    names = [n + (f"@{_ctx(c)}" if c else "") for _, n, c in (key for key, _ in rows)]
    spark_w = SPARK_WIDTH if width is None else max(8, min(SPARK_WIDTH, width - 60))
    cols = [
        T.Column("metric", names, 0, min_width=12),
        T.Column("step", [T.fmt_value(s.last_step) for _, s in rows], 2, fixed=True, justify="right"),
        T.Column("last", [T.fmt_value(s.last) for _, s in rows], 1, fixed=True, justify="right"),
        T.Column("min", [T.fmt_value(s.min) for _, s in rows], 4, fixed=True, justify="right"),
        T.Column("max", [T.fmt_value(s.max) for _, s in rows], 4, fixed=True, justify="right"),
        T.Column("trend", [sparkline(s.values[-400:], spark_w) if s.count else "" for _, s in rows], 3,
                 fixed=True),
    ]
    status = run.status
    head = Text(f"{run.handle}  {T.safe(run.name or '-')}  ")
    head.append(status, style=None if plain else T.STATUS_STYLES.get(status))
    head.append(f"  {T.plural(len(rows), 'metric')}, updated {time.strftime('%H:%M:%S')}")
    head.truncate(width or 10_000, overflow="ellipsis")
    lines = [head]
    if rows:
        lines += T.render(T.fit(cols, width), plain=plain)
    else:
        lines.append(Text("no metrics yet" + (" matching --metric" if filters else "")))
    return Group(*lines)


def _ctx(context: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(context.items()))


@click.command(short_help="Follow a live run: last values and trends, in place.")
@click.argument("run", metavar="RUN")
@click.option("--metric", "-m", "metrics", multiple=True, metavar="NAME",
              help="Only these metrics (repeat the option; loss or loss@subset=val).  [default: all]")
@click.option("--interval", "-i", type=click.FloatRange(min=0.05), default=1.0, show_default=True, metavar="S",
              help="Seconds between refreshes.")
def tail(run: str, metrics: tuple[str, ...], interval: float) -> None:
    """Follow a run: its metrics' last values and trends, refreshed in place.

    Ends when the run ends (finished, failed or killed) or on Ctrl-C.  RUN is a
    handle, a full id or a unique prefix of either.
    """
    from rich.live import Live

    repo = state().repo(readonly=True)
    found = repo.get_run(run)
    filters = _metric_filter(metrics)
    plain = not T.is_terminal()
    width = T.terminal_width()
    out = T.console(color=color_on() and not plain, width=width)
    run_id = found.id
    try:
        if plain:  # no terminal to redraw: print once when the run ends (or now, if it has)
            while repo.get_run(run_id).status == "running":
                time.sleep(interval)
            out.print(_tail_table(repo, repo.get_run(run_id), filters, width, plain))
        else:
            with Live(_tail_table(repo, found, filters, width, plain), console=out, auto_refresh=False,
                      transient=False) as live:
                while True:
                    current = repo.get_run(run_id)
                    live.update(_tail_table(repo, current, filters, width, plain), refresh=True)
                    if current.status != "running":
                        break
                    time.sleep(interval)
    except KeyboardInterrupt:
        T.echo(f"stopped following {found.handle} (the run goes on)", err=True)
        return
    final = repo.get_run(run_id)
    T.echo(f"run {final.handle} {final.status} after {T.fmt_duration(final.duration)}", err=True)


# -- plot ----------------------------------------------------------------------------------------
@click.command(short_help="Plot a metric of runs in the terminal.")
@click.argument("query", required=False, default="")
@click.option("--metric", "-m", required=True, metavar="NAME", help="The metric to plot: loss, or with a context "
              "loss@subset=val.")
@click.option("--x", "x_axis", type=click.Choice(("step", "epoch", "time")), default="step", show_default=True,
              help="The x axis (time: seconds since the run's first point).")
@click.option("--height", type=click.IntRange(min=8), metavar="ROWS", help="Plot height  [default: the terminal's, "
              "at most 30].")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=10, show_default=True, metavar="N",
              help="At most N curves (the newest runs).")
def plot(query: str, metric: str, x_axis: str, height: int | None, limit: int) -> None:
    """Plot a metric of the runs matching QUERY in the terminal, one line per run.

    For a quick look over ssh; the legend names the runs (name, else handle).
    """
    import plotext as plt

    repo = state().repo(readonly=True)
    ((name, context),) = _metric_filter([metric])
    condition = f"seq.name == {name!r}"
    if query:
        condition = f"({query}) and {condition}"
    seqs = repo.query_sequences(condition)
    keys = [(i, k) for i, k in enumerate(seqs.keys) if _wanted(k[1], k[2], [(name, context)])]
    if not keys:
        raise click.UsageError(f"no run matching the query has a metric {metric!r}; see `runstore ls`")
    keys = keys[-limit:]  # sequences come in run creation order: the newest runs
    width = T.terminal_width() or 80
    rows = T.terminal_rows() or 24
    plt.clear_figure()
    plt.plotsize(width, height or max(8, min(30, rows - 4)))
    plt.theme("clear" if not (color_on() and T.is_terminal()) else "pro")
    for i, (run_id, seq_name, ctx) in keys:
        item = seqs[i:i + 1].downsample(max(3, 2 * width))[0]
        if x_axis == "step":
            x = item["steps"]
        elif x_axis == "epoch":
            x = item["epochs"]
        else:
            ts = item["timestamps"]
            x = ts - ts[0] if len(ts) else ts
        y = item["values"]
        ok = np.isfinite(x.astype(np.float64)) & np.isfinite(y)
        if not ok.any():
            continue
        run = repo.get_run(run_id)
        label = (run.name or run.handle) + (f" @{_ctx(ctx)}" if ctx and not context else "")
        plt.plot(x[ok].tolist(), y[ok].tolist(), label=T.safe(label)[:30])
    plt.title(T.safe(metric))
    plt.xlabel({"time": "seconds"}.get(x_axis, x_axis))
    text = plt.build()
    if not (color_on() and T.is_terminal()):
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    click.echo("\n".join(line.rstrip() for line in text.splitlines()))
