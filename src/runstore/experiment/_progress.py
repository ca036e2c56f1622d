"""Progress reporting for sweeps and experiments, always on stderr.

A rich progress bar when stderr is a terminal and rich is installed; otherwise one
plain line per item, so logs of batch jobs (stdout or stderr redirected to a file)
stay readable and nothing depends on terminal control codes.
"""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """``with Progress(total, "sweep") as bar: bar.advance("lr=0.1 finished")``."""

    def __init__(self, total: int, title: str, enabled: bool = True) -> None:
        self.total = total
        self.title = title
        self.enabled = enabled
        self.done = 0
        self._rich: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.enabled and _stderr_is_terminal():
            try:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
                from rich.progress import Progress as RichProgress
            except ImportError:  # rich is optional: fall back to plain lines
                pass
            else:
                self._rich = RichProgress(
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=Console(stderr=True),
                    transient=False,
                )
                self._rich.__enter__()
                self._task = self._rich.add_task(_escape(self.title), total=self.total)
        return self

    def describe(self, text: str) -> None:
        """Say what is running now."""
        if self._rich is not None:
            self._rich.update(self._task, description=_escape(f"{self.title}: {text}"))

    def advance(self, message: str) -> None:
        """One item done; ``message`` says how it ended."""
        self.done += 1
        if self._rich is not None:
            self._rich.advance(self._task)
            self._rich.console.print(f"  {message}", markup=False, highlight=False)
        elif self.enabled:
            print(f"[{self.done}/{self.total}] {message}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        """A message that is not an item (a skip explanation, a warning)."""
        if self._rich is not None:
            # markup=False: messages hold user values such as "layers=[4]" that rich
            # would otherwise read as style tags.
            self._rich.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
            self._rich = None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False
