"""``runstore show``: one run's attributes, params, sequences and artifacts, fitted to the terminal."""

from __future__ import annotations

import os
from typing import Any

import click
from rich.text import Text
from rich.tree import Tree

from . import table as T
from .runs import color_on, run_sequences, state
from ..tracking.handles import handle


def _fmt_context(context: dict, prefix: str = "") -> str:
    """``subset=val,fold=1``: the spelling of keys like ``loss@subset=val.last``."""
    parts = []
    for key, value in context.items():
        if isinstance(value, dict) and value:
            parts.append(_fmt_context(value, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}={T.fmt_value(value)}")
    return ",".join(parts) if parts else ("" if prefix else "-")


def _params_tree(node: Tree, params: Any) -> None:
    if isinstance(params, dict):
        for key, value in params.items():
            if isinstance(value, dict) and value:
                _params_tree(node.add(Text(T.safe(str(key)), style="bold")), value)
            else:
                node.add(Text(T.safe(f"{key} = {T.fmt_value(value, 16)}")))


def _section(out: Any, title: str, columns: list[T.Column], width: int | None, plain: bool) -> None:
    out.print()
    if not columns[0].cells:
        out.print(f"{title}: (none)", style="bold")
        return
    out.print(title, style="bold")
    layout = T.fit(columns, width)
    for line in T.render(layout, plain=plain):
        out.print(line)
    if layout.dropped:
        out.print(T.dropped_note(layout.dropped).split(" (")[0], style="dim")


@click.command()
@click.argument("run")
@click.option("--absolute", is_flag=True, help="Show times as dates instead of \"3 min ago\".")
def show(run: str, absolute: bool) -> None:
    """Show one run: attributes, params, sequences and artifacts.

    RUN is the run's handle, its full id, or a unique prefix of either.
    """
    repo = state().repo(readonly=True)
    found = repo.get_run(run)
    plain = not T.is_terminal()
    width = T.terminal_width()
    out = T.console(color=color_on() and not plain, width=width)
    wrap = width or 10_000

    children = [handle(child.id) for child in found.children]
    rows = [
        ("id", f"{found.handle}  {found.id}"),
        ("name", found.name or "-"),
        ("experiment", found.experiment),
        ("status", found.status),
        ("tags", ", ".join(found.tags) or "-"),
        ("description", found.description or "-"),
        ("parent", handle(found.parent) if found.parent else "-"),
        ("children", ", ".join(children) or "-"),
        ("archived", "yes" if found.archived else "no"),
        ("created", f"{T.fmt_time(found.created_at)} ({T.fmt_ago(found.created_at)})"),
        ("ended", T.fmt_time(found.ended_at)),
        ("duration", T.fmt_duration(found.duration)),
        ("host", f"{found.hostname} (pid {found.pid})"),
    ]
    for key, value in rows:
        style = T.STATUS_STYLES.get(value) if key == "status" and not plain else None
        line = Text(f"{key:<12}", style="" if plain else "bold") + Text(T.safe(str(value)), style=style or "")
        for part in line.wrap(out, wrap, overflow="ellipsis"):
            out.print(part)

    out.print()
    tree = Tree(Text("params", style="" if plain else "bold"))
    _params_tree(tree, found.params)
    if not found.params:
        tree.add(Text("(none)"))
    out.print(tree, soft_wrap=False, width=wrap, overflow="ellipsis")

    # The run's own sequence records: the cost does not grow with the repository.
    seqs = [seq for _, _, _, seq in run_sequences(repo, [found.id])]
    cols = [
        T.Column("name", [s.name for s in seqs], 0, min_width=10),
        T.Column("context", [_fmt_context(s.context) for s in seqs], 1, min_width=10),
        T.Column("count", [T.fmt_number(s.count) for s in seqs], 2, fixed=True, justify="right"),
        T.Column("steps", ["-" if s.count == 0 else f"{s.first_step}..{s.last_step}" for s in seqs], 5,
                 fixed=True),
        T.Column("last", [T.fmt_value(s.last) for s in seqs], 3, fixed=True, justify="right"),
        T.Column("min", [T.fmt_value(s.min) for s in seqs], 4, fixed=True, justify="right"),
        T.Column("max", [T.fmt_value(s.max) for s in seqs], 4, fixed=True, justify="right"),
    ]
    if any(s.type != "float" for s in seqs):  # images, text, ... (issue 13): say which is which
        cols.insert(2, T.Column("type", [s.type for s in seqs], 2, fixed=True))
    _section(out, "sequences", cols, width, plain)

    arts = found.artifacts
    paths = []
    for art in arts:
        path = art.get("path") or "-"
        if path.startswith(str(repo.path) + os.sep):  # inside the repository: shorter, and still exact
            path = os.path.relpath(path, repo.path)
        paths.append(path)
    cols = [
        T.Column("name", [a["name"] for a in arts], 0, min_width=10),
        T.Column("kind", [a.get("kind") or "-" for a in arts], 2, min_width=6),
        T.Column("size", [T.fmt_bytes(a.get("size") or 0) for a in arts], 1, fixed=True, justify="right"),
        T.Column("created", [T.fmt_when(a.get("created_at"), absolute) for a in arts], 3, fixed=True),
        T.Column("path", paths, 4, min_width=12),
    ]
    _section(out, "artifacts", cols, width, plain)
