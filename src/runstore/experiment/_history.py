"""Looking up earlier runs: same experiment, same resolved config, still alive or not.

Both the ``main`` decorator and ``Experiment.run`` decide what to do with a config
by what happened to it before (finished: skip; failed or killed: run again), so the
rules live here once.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from ..tracking import lifecycle as _lifecycle
from ..tracking.values import same_param_value

__all__ = ["is_live", "runs_of", "same_config", "effective_status"]


def runs_of(repo: Any, experiment: str) -> list[Any]:
    """Read views of every run of ``experiment``, in creation order."""
    # A full scan: one read transaction and no per-run reads. It runs once per
    # configuration (not per step), so even thousands of runs cost milliseconds, and
    # scanning again each time sees runs that other processes created meanwhile.
    return [run for run in repo.runs() if run.experiment == experiment]


def is_live(run: Any) -> bool:
    """Whether a run marked "running" really has a process behind it.

    A process killed with SIGKILL (or a machine that lost power) leaves its runs
    "running" forever. On this host the pid tells: no such process means the run is
    dead. A run of this very process is live only if it is still open here. Runs
    of other hosts cannot be checked and count as live.
    """
    if run.status != "running":
        return False
    if run.hostname != socket.gethostname():
        return True
    pid = run.pid
    if pid == os.getpid():
        return any(live.id == run.id for live in _lifecycle.live_runs())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def effective_status(run: Any) -> str:
    """The run's status, with dead "running" runs reported as "killed"."""
    status = run.status
    if status == "running" and not is_live(run):
        return "killed"
    return status


# One rule for "the same config" everywhere params are compared (True is not 1,
# 1 equals 1.0, NaN equals NaN).
same_config = same_param_value
