"""What happens to live runs outside the training loop's control.

* A background thread flushes every live run once per its flush interval, so a
  tracked value is durable within the interval even when the loop stalls.
  ``track`` itself never looks at the clock for this: that would cost every
  call, and a stalled loop makes no calls.
* At interpreter exit every live run is flushed and marked ``finished``; an
  uncaught exception marks them ``failed`` first (``killed`` for Ctrl-C).
* SIGTERM marks live runs ``killed``, then hands the signal on to whatever
  handler the program had installed (or to the default, which terminates).
* A forked child forgets the parent's live runs: flushing them there would
  write the parent's points twice and mark its runs finished when the child exits.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .run import Run

_live: dict[int, "Run"] = {}
_cond = threading.Condition()
_thread: threading.Thread | None = None
_hooks_installed = False
_previous_sigterm = None


def register(run: "Run") -> None:
    global _thread
    with _cond:
        _live[id(run)] = run
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_flush_loop, name="runstore-flush", daemon=True)
            _thread.start()
        _cond.notify()
    _install_hooks()


def unregister(run: "Run") -> None:
    with _cond:
        _live.pop(id(run), None)


def live_runs() -> list["Run"]:
    with _cond:
        return list(_live.values())


def find_open(run_id: str, repo: object) -> "Run | None":
    """This process's open writer of ``run_id`` in the repository ``repo`` (a Repo,
    a path or None for the default), if any."""
    if not _live:
        return None
    from .repo import Repo, default_path

    path = repo.path if isinstance(repo, Repo) else (repo if repo is not None else default_path())
    try:
        real = os.path.realpath(path)
    except (TypeError, ValueError):
        return None
    run_id = run_id.lower()
    for run in live_runs():
        if run.id == run_id and str(run.repo.path) == real:
            return run
    return None


def _flush_loop() -> None:
    while True:
        with _cond:
            runs = list(_live.values())
            now = time.monotonic()
            wait = min((r._next_flush - now for r in runs), default=3600.0)
            if wait > 0:
                _cond.wait(timeout=min(wait, 3600.0))
                continue
        for run in runs:
            if run._next_flush <= time.monotonic():
                try:
                    run.flush()
                except Exception as exc:  # keep flushing other runs; data stays pending
                    run._flush_error = exc
                    run._next_flush = time.monotonic() + run._flush_interval


def _finish_all(status: str) -> None:
    for run in live_runs():
        try:
            run.close(status=status)
        except Exception as exc:  # never let one run stop the others from closing
            print(f"runstore: could not close run {run.id}: {exc}", file=sys.stderr)


def _at_exit() -> None:
    _finish_all("finished")


def _excepthook(exc_type, exc, tb) -> None:
    _finish_all("killed" if issubclass(exc_type, KeyboardInterrupt) else "failed")
    _previous_excepthook(exc_type, exc, tb)


def _on_sigterm(signum, frame) -> None:
    _finish_all("killed")
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # the default action: terminate, as if we had never been here
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


_previous_excepthook = sys.excepthook


def _install_hooks() -> None:
    global _hooks_installed, _previous_sigterm, _previous_excepthook
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)
    _previous_excepthook = sys.excepthook
    sys.excepthook = _excepthook
    if threading.current_thread() is threading.main_thread():
        try:
            current = signal.getsignal(signal.SIGTERM)
            if current is not _on_sigterm:
                _previous_sigterm = current
                signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError):  # not allowed here (embedded interpreters)
            pass


def _after_fork_in_child() -> None:
    global _thread, _cond
    _live.clear()
    _thread = None
    _cond = threading.Condition()


os.register_at_fork(after_in_child=_after_fork_in_child)
