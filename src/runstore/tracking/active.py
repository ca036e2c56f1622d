"""The per-thread stack of *active* runs that the fluent API logs into.

It lives below the fluent API (``runstore.fluent``) and the experiment layer
(``@main``, ``Pipeline``, ``Experiment``) so both can use it without
importing each other: the runs ``@main`` and pipelines create are pushed here
for the duration of the user's function, which makes MLflow-style calls
(``runstore.log_metric(...)``) inside them attach to that run instead of
starting a stray one.

Closed runs are pruned lazily (see :func:`stack`): a run can end in several
ways (its ``with`` block, ``run.close()``, ``end_run()``) and only
``run.closed`` tells them all apart reliably.  Nested runs still open when an
outer run closes are closed with the outer run's status.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

_STATUSES = ("finished", "failed", "killed")

_local = threading.local()


def stack() -> list[Any]:
    """This thread's active runs, innermost last, with closed runs dropped."""
    runs = getattr(_local, "stack", None)
    if runs is None:
        runs = _local.stack = []
    # Find the outermost closed run: everything above it was nested inside
    # a run that has ended, so it ends too, with the same status.
    for i, run in enumerate(runs):
        if run.closed:
            status = run.status if run.status in _STATUSES else "finished"
            for orphan in reversed(runs[i + 1 :]):
                if not orphan.closed:
                    orphan.close(status=status)
            del runs[i:]
            break
    return runs


@contextlib.contextmanager
def activated(run: Any) -> Iterator[Any]:
    """Make ``run`` this thread's active run while the block runs.

    Used by ``@main`` and pipelines around the user's code.  The run is not
    closed here (its owner decides its status); it is only taken off the stack,
    with anything fluent calls nested inside it and left open.
    """
    if run is None:
        yield run
        return
    runs = stack()
    depth = len(runs)
    runs.append(run)
    status = "finished"
    try:
        yield run
    except KeyboardInterrupt:
        status = "killed"
        raise
    except BaseException:
        status = "failed"
        raise
    finally:
        runs = getattr(_local, "stack", [])
        if depth < len(runs) and runs[depth] is run:
            for orphan in reversed(runs[depth + 1 :]):
                if not orphan.closed:  # a nested fluent run the function did not end: it ends as the function did
                    orphan.close(status=status)
            del runs[depth:]
        elif run in runs:
            runs.remove(run)


def _reset_after_fork() -> None:
    # An LMDB environment must never be used across fork(); the child starts
    # with no active runs instead of inheriting handles it must not touch.
    global _local
    _local = threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
