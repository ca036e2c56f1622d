"""What happens to live runs outside the training loop's control.

* A background thread flushes the live runs: every run once per its flush
  interval, so a tracked value is durable within the interval even when the
  loop stalls. The runs of one repository that are due together are written in
  **one** write transaction (one fsync), whatever their number: 10,000 live runs
  cost one commit a second, not 10,000. A sequence that cannot be encoded is
  still isolated (the others, and every other run, are committed). ``track``
  itself never looks at the clock for this: that would cost every call, and a
  stalled loop makes no calls.
* The thread keeps the runs in a heap by due time, so registering a run, and
  each wake-up, cost O(log n), not a pass over every live run (creating 10,000
  runs in one process was quadratic).
* At interpreter exit every live run is flushed and marked ``finished``, again
  one transaction per repository; an uncaught exception marks them ``failed``
  first (``killed`` for Ctrl-C).
* SIGTERM marks live runs ``killed``, then hands the signal on to whatever
  handler the program had installed (or to the default, which terminates).
* A forked child forgets the parent's live runs: flushing them there would
  write the parent's points twice and mark its runs finished when the child exits.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import lmdb

from ..errors import RepositoryError, RunstoreError

if TYPE_CHECKING:
    from .run import Run

_live: dict[int, "Run"] = {}
# The heap holds (when, ticket) and _queued ticket -> run, not the run itself: a closed
# run leaves _queued at once and is freed when its owner drops it. Held by the heap
# until it came up (up to an interval: thousands of short runs), every closed run and
# its dozen objects outlived the young collections and each full collection walked
# them all again (11% of a short run's CPU, issue 22, target 3).
_due: list[tuple[float, int]] = []  # (when, ticket): one entry per live run, stale ones skipped
_queued: dict[int, "Run"] = {}
_ticket = itertools.count()
_cond = threading.Condition()
_thread: threading.Thread | None = None
_hooks_installed = False
_previous_sigterm = None
_RETRY = 0.01  # a run busy in its own flush or close is tried again this soon


def _push(run: "Run") -> None:
    """Queue ``run`` at its next flush time (caller holds _cond)."""
    ticket = next(_ticket)
    # (getattr, never run.__dict__: reading an instance's __dict__ makes CPython 3.11
    # give it a real dict, and every attribute read of track() then took the slower
    # path: the one-name track loop was ~8% slower)
    _queued.pop(getattr(run, "_ticket", None), None)
    run._ticket = ticket
    _queued[ticket] = run
    heapq.heappush(_due, (run._next_flush, ticket))


def register(run: "Run") -> None:
    global _thread
    with _cond:
        _live[id(run)] = run
        earliest = _due[0][0] if _due else None
        _push(run)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_flush_loop, name="runstore-flush", daemon=True)
            _thread.start()
        if earliest is None or run._next_flush < earliest:
            _cond.notify()  # the thread sleeps until the earliest due time: wake it only if that moved
    _install_hooks()


def unregister(run: "Run") -> None:
    with _cond:
        _live.pop(id(run), None)
        _queued.pop(getattr(run, "_ticket", None), None)  # its heap entry is skipped when it comes up


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


def _take_due() -> list["Run"]:
    """Pop the runs to flush now (caller holds _cond): every run that is due, and
    with them every run due within half its own interval, so that the runs of a
    process fall into step and share one transaction per interval."""
    now = time.monotonic()
    due: list[Run] = []
    while _due:
        when, ticket = _due[0]
        run = _queued.get(ticket)
        if run is None or _live.get(id(run)) is not run:
            # Closed: drop it now, not when it comes due. In a loop of short runs the
            # heap's top was always the entry of a run closed ~1 interval ago, so the
            # thread slept until it (< 1 ms), woke for nothing and took the GIL from
            # the loop once per run (issue 22, target 3).
            heapq.heappop(_due)
            _queued.pop(ticket, None)
            continue
        if when > now and (not due or when - now > 0.5 * run._flush_interval):
            break
        heapq.heappop(_due)
        if run._next_flush > now + 0.5 * run._flush_interval:  # its owner flushed it meanwhile
            _push(run)
            continue
        del _queued[ticket]
        due.append(run)
    return due


def _flush_loop() -> None:
    while True:
        with _cond:
            due = _take_due()
            if not due:
                wait = _due[0][0] - time.monotonic() if _due else 3600.0
                _cond.wait(timeout=min(max(wait, 0.001), 3600.0))
                continue
        try:
            flush_runs(due)
        except Exception:  # never let the thread die: each run's error is on the run
            pass
        finally:
            with _cond:
                for run in due:
                    if _live.get(id(run)) is run:
                        _push(run)


def _by_repository(runs: list["Run"]) -> list[tuple[Any, list["Run"]]]:
    groups: dict[int, tuple[Any, list]] = {}
    for run in runs:
        try:
            env = run.repo._env
        except Exception as exc:  # e.g. the repository could not be reopened after fork
            run._flush_error = exc
            continue
        groups.setdefault(id(env), (env, []))[1].append(run)
    return list(groups.values())


def flush_runs(runs: list["Run"]) -> None:
    """Flush ``runs``: one write transaction per repository. Errors are kept on
    each run (``run._flush_error``, raised by its next ``flush()``), as a per-run
    flush would report them; the points stay pending."""
    for env, members in _by_repository(runs):
        _write_group(env, members)


def _write_group(env: Any, runs: list["Run"], status: str | None = None) -> list["Run"]:
    """Write the pending points (and heartbeats) of ``runs`` of one repository in
    one transaction; with ``status``, close them too. Returns the runs written."""
    from .object_sequence import encode_ahead

    for run in runs:
        if run._writable:
            encode_ahead(run)  # big objects' encodes, before the runs' locks
    now = time.monotonic()
    held = []
    for run in runs:
        # The flush thread never waits for a run's lock (its owner may be flushing or
        # closing it: it is tried again shortly); closing at exit does wait.
        if run._lock.acquire(blocking=status is not None):
            if run._writable and not run._in_flush:
                held.append(run)
                continue
            run._lock.release()
        else:
            run._next_flush = now + _RETRY
    try:
        work: list[tuple[Run, list, Callable | None]] = []
        started = time.time()
        for run in held:
            run._next_flush = now + run._flush_interval
            run._flush_started()  # late past an interval: the training thread yields (Run._flush_overdue)
            also = run._closing(status) if status is not None else None  # before the take: see Run._closing
            dirty = run._take_dirty()
            if dirty or also is not None or run._beat_due():
                work.append((run, dirty, also))
        if not work and not env.has_deferred():  # a new run's creation is written by this flush
            return []
        done: list = []
        first = True
        try:
            while first or work:
                # One transaction of at most TXN_BYTES of blocks for the whole group; runs with
                # more points go on in the next one (their closing in the last).
                work = _write_step(env, work, status, done)
                first = False
        except BaseException:
            if status is not None:
                for run in held:
                    if run._writable:
                        run._reopen_after_failed_close()
            raise
        return done
    finally:
        for run in held:
            run._flush_ended(started)
            run._lock.release()


def _write_step(env: Any, work: list, status: str | None, done: list) -> list:
    """One transaction of a group flush: adds the runs finished to ``done``; returns
    the work left for the next (runs with more than a transaction's worth of blocks)."""
    from .run_flush import _unfinished
    from .sequence import Budget

    def write(isolate: bool) -> list:
        def write_in(txn) -> list:
            budget = Budget()  # one per transaction (env.write may run this twice), shared by its runs
            return [r._write_in(env, txn, d, a, isolate, budget) for r, d, a in work]

        return env.write(write_in)

    try:
        outcomes = write(False)
    except (RepositoryError, lmdb.Error) as exc:  # the storage itself: every run keeps its points
        for run, _, _ in work:
            run._flush_error = exc
        if status is not None:
            raise
        return []
    except Exception:
        # A sequence that cannot be encoded (or a record change that fails): each
        # sequence in a nested transaction, so every other one is committed.
        try:
            outcomes = write(True)
        except Exception as exc:
            for run, _, _ in work:
                run._flush_error = exc
            if status is not None:
                raise
            return []
    left = []
    for (run, dirty, also), outcome in zip(work, outcomes):
        try:
            result = run._after_commit(dirty, outcome)
        except RunstoreError as exc:  # the writer lost its run (taken over, deleted)
            run._flush_error = exc
            continue
        rest = _unfinished(dirty, outcome)
        if rest:
            left.append((run, rest, also))
            continue
        if also is not None:
            run._closed(result)
        done.append(run)
    return left


def _finish_all(status: str) -> None:
    # Every live run of a repository closed in one transaction (10,000 runs at exit
    # would otherwise be 10,000 commits); what that cannot close, one by one.
    for env, members in _by_repository(live_runs()):
        try:
            _write_group(env, members, status)
        except Exception:
            pass
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
    _due.clear()
    _queued.clear()
    _thread = None
    _cond = threading.Condition()


os.register_at_fork(after_in_child=_after_fork_in_child)
