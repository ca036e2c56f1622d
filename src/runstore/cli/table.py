"""Terminal tables that fit: column priorities, truncation with an ellipsis, compact numbers.

rich's own tables fold a cell that does not fit, one character per line in the
worst case, and break numbers and ids (``0./78/37/5``).  Here the widths are
decided before anything is printed, the way ``gh`` and ``git log --oneline``
do it:

1. every column has a natural width (its widest cell or header) and a minimum:
   a *fixed* column (an id, a number, a time, a status) never gets narrower
   than its widest cell, only its header may be shortened; a *text* column
   (a name, an experiment, tags) can shrink to a few characters, with ``…``;
2. columns are taken in priority order while their minimums fit; the rest are
   dropped and named in a footer (``--wide`` keeps all, ``--columns`` chooses);
3. the space left is handed out in priority order, up to natural widths.

So no line is longer than the terminal and no number, id or word is broken
across lines.  Colour comes from rich (which respects ``NO_COLOR``); with
``plain=True`` there is no header rule and no style at all.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from datetime import datetime, timezone
from typing import Any, Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

GAP = 2  # spaces between columns
PREFERRED_TEXT = 24  # a name wider than this yields to the next column before it is shown whole
ELLIPSIS = "…"
STATUS_STYLES = {"running": "blue", "finished": "green", "failed": "red", "killed": "yellow"}


# -- what reaches a terminal ------------------------------------------------------------------
# safe()/safe_lines() (analysis/format.py, so the server's commands use them too) escape
# control characters in names and values: every Column cell and header, every string
# given to rich (SafeConsole) and every echoed line of the CLI goes through them.
from ..analysis.format import safe, safe_lines  # noqa: E402,F401


def echo(message: str = "", err: bool = False) -> None:
    """click.echo for lines that carry names or values (safe_lines)."""
    import click

    click.echo(safe_lines(message), err=err)


class SafeConsole(Console):
    """A rich console whose plain strings go through safe_lines (rich.Text objects are
    built from safe cells; see Column)."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(safe_lines(text), **kwargs)


# -- terminal ----------------------------------------------------------------------------------
def terminal_width(stream: Any = None) -> int | None:
    """Columns to fit: ``$COLUMNS``, else the terminal's width, else None (not a terminal: no limit)."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    stream = stream if stream is not None else sys.stdout
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        pass
    return None


def terminal_rows(stream: Any = None) -> int | None:
    env = os.environ.get("LINES", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    stream = stream if stream is not None else sys.stdout
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).lines
    except (AttributeError, OSError, ValueError):
        pass
    return None


def is_terminal(stream: Any = None) -> bool:
    stream = stream if stream is not None else sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def console(*, color: bool = True, width: int | None = None, stderr: bool = False) -> Console:
    """A console writing to this invocation's stdout (the test runner swaps sys.stdout).

    markup=False and highlight=False: names, keys and tags print as typed.  rich
    turns colour off by itself when NO_COLOR is set or the stream is not a terminal.
    """
    return SafeConsole(highlight=False, markup=False, no_color=not color or None, stderr=stderr,
                   width=width or 10_000, soft_wrap=True, emoji=False)


# -- formatting of cells: in analysis/format.py (experiment's announcements use them too)
from ..analysis.format import (  # noqa: E402,F401  (re-exported: the CLI's modules use T.fmt_*)
    fmt_ago,
    fmt_bytes,
    fmt_duration,
    fmt_number,
    fmt_time,
    fmt_value,
    fmt_when,
    plural,
)


# -- tables ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Column:
    """One column: its header, its formatted cells and how it may be fitted.

    ``priority``: lower is kept first.  ``fixed``: never narrower than its widest
    cell (ids, numbers, times, statuses).  ``styles``: a rich style per cell.
    """

    header: str
    cells: list[str]
    priority: int = 50
    fixed: bool = False
    justify: str = "left"
    styles: list[str | None] | None = None
    min_width: int = 8

    def __post_init__(self) -> None:
        self.header = safe(self.header)  # names from the repository, shown escaped (safe())
        self.cells = [safe(c) for c in self.cells]

    def natural(self) -> int:
        return max([cell_len(self.header)] + [cell_len(c) for c in self.cells])

    def preferred(self) -> int:
        if self.fixed:
            return self.natural()
        return min(self.natural(), max(self.minimum(), PREFERRED_TEXT))

    def minimum(self) -> int:
        widest = max([0] + [cell_len(c) for c in self.cells])
        header = min(cell_len(self.header), 6)
        if self.fixed:
            return max(widest, header, 1)
        return min(self.natural(), max(self.min_width, header))


@dataclasses.dataclass
class Layout:
    columns: list[Column]  # kept, in display order
    widths: list[int]
    dropped: list[str]     # headers of the columns left out


def fit(columns: Sequence[Column], width: int | None, wide: bool = False) -> Layout:
    """Choose the columns and widths so that a row is at most ``width`` cells wide.

    In priority order each column takes its preferred width (the whole header and
    every number; text up to ``PREFERRED_TEXT``) when that fits, else its minimum,
    else it is dropped; what is left over then widens text columns in priority order.
    """
    if width is None or wide:
        return Layout(list(columns), [c.natural() for c in columns], [])
    order = sorted(range(len(columns)), key=lambda i: (columns[i].priority, i))
    widths: dict[int, int] = {}
    used = 0
    for i in order:
        col = columns[i]
        gap = GAP if widths else 0
        for candidate in (col.preferred(), col.minimum()):
            if used + gap + candidate <= width:
                widths[i] = candidate
                used += gap + candidate
                break
    spare = width - used
    for i in sorted(widths, key=lambda i: (columns[i].priority, i)):
        grow = min(spare, columns[i].natural() - widths[i])
        widths[i] += grow
        spare -= grow
    shown = sorted(widths)
    dropped = [columns[i].header for i in range(len(columns)) if i not in widths]
    return Layout([columns[i] for i in shown], [widths[i] for i in shown], dropped)


def _cell(text: str, width: int, justify: str, style: str | None = None) -> Text:
    cell = Text(text, style=style or "", no_wrap=True, overflow="ellipsis")
    if cell_len(text) > width:
        cell.truncate(width, overflow="ellipsis")
    pad = width - cell.cell_len
    if justify == "right":
        return Text(" " * pad) + cell
    cell.append(" " * pad)
    return cell


def render(layout: Layout, *, plain: bool = False) -> list[Text]:
    """The lines of a fitted table (header, an optional rule, rows); trailing spaces trimmed."""
    cols, widths = layout.columns, layout.widths
    lines = []
    header = Text(" " * GAP).join(
        _cell(c.header, w, c.justify, None if plain else "bold") for c, w in zip(cols, widths))
    lines.append(header)
    if not plain:
        lines.append(Text(" " * GAP).join(Text("─" * w, style="dim") for w in widths))
    rows = max([0] + [len(c.cells) for c in cols])
    for r in range(rows):
        parts = []
        for c, w in zip(cols, widths):
            style = None if plain or c.styles is None else c.styles[r]
            parts.append(_cell(c.cells[r] if r < len(c.cells) else "", w, c.justify, style))
        lines.append(Text(" " * GAP).join(parts))
    for line in lines:
        line.rstrip()
    return lines


def status_styles(statuses: Sequence[str]) -> list[str | None]:
    return [STATUS_STYLES.get(s.split()[0] if s else "") for s in statuses]


def dropped_note(dropped: Sequence[str], what: str = "columns") -> str:
    """``hidden to fit: experiment, created (--wide or --columns KEYS)``."""
    names = list(dropped)
    if len(names) > 6:  # a long list is a paragraph nobody reads: name a few, count the rest
        names = names[:4] + [f"{len(names) - 4} more"]
    return f"hidden to fit: {', '.join(names)} (--wide or --columns KEYS)"


def footer_lines(text: str, width: int | None) -> list[str]:
    """A footer note wrapped at spaces (never inside a word); a word longer than a line is cut with …."""
    if width is None or cell_len(text) <= width:
        return [text]
    import textwrap

    lines = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
    return [line if cell_len(line) <= width else line[: width - 1] + ELLIPSIS for line in lines]


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()
