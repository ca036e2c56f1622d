"""What a training program says on stderr: one line when a run starts, one when it ends,
and one line instead of a traceback when Ctrl-C stops an experiment or a sweep.

Kept apart from ``main.py`` so that any front end (the argparse ``@main`` of today, a
Hydra-based one later) prints the same lines by calling these functions.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

_hook_lock = threading.Lock()


def say(text: str, quiet: bool = False) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def start_line(script: str, run: Any, repo: Any, resumed: bool = False) -> str:
    """``train: run k3m9x2qa started in /data/runs (id 01a2...); runstore show k3m9x2qa``."""
    verb = "resumed" if resumed else "started"
    return f"{script}: run {run.handle} {verb} in {repo.path} (id {run.id}); runstore show {run.handle}"


def end_line(script: str, run: Any) -> str:
    """``train: run k3m9x2qa finished after 12.3s``."""
    from ..analysis.format import fmt_duration

    return f"{script}: run {run.handle} {run.status} after {fmt_duration(run.duration)}"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped an experiment or a sweep; the message says what was kept.

    Still a KeyboardInterrupt (callers and ``pytest.raises`` see one); only its
    top-level report is shortened to the message, by :func:`_excepthook`.
    """


def interrupted(finished: int, killed: int) -> Interrupted:
    """The exception to raise (``raise interrupted(3, 1) from None``), with the hook installed."""
    runs = f"{finished} run{'s' if finished != 1 else ''}"
    message = f"interrupted; {runs} finished, {killed} marked killed; run again to resume"
    _install_hook()
    return Interrupted(message)


def _install_hook() -> None:
    with _hook_lock:
        if getattr(sys.excepthook, "_runstore_interrupted", False):
            return
        previous = sys.excepthook

        def hook(kind: type, value: BaseException, tb: Any) -> None:
            if isinstance(value, Interrupted):
                print(value, file=sys.stderr, flush=True)
                return
            previous(kind, value, tb)

        hook._runstore_interrupted = True  # type: ignore[attr-defined]
        sys.excepthook = hook
