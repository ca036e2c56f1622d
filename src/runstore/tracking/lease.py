"""Writer leases: one writing process per run.

Two processes appending to one run would each rewrite the same sequence
records from their own memory, and one's points would silently replace the
other's. So every writable ``Run`` holds a lease, kept in the repository (the
meta database, key ``lease:<run id>``)::

    {"host", "pid", "start" (the process's start time), "since", "beat"
     (wall-clock time of the last heartbeat), "stale" (seconds without a
     heartbeat after which the holder counts as gone), "token"}

* Taking a lease (``Run(repo)`` or ``Run(repo, run_id=...)``) happens in the same
  write transaction that marks the run running. A lease held by a live process
  raises :class:`~runstore.RunLockedError` naming the host and pid.
* A lease is free when its holder is this very process but no open ``Run`` of it
  holds the run any more, when its pid is dead on this host (or was reused by a
  newer process: the start time differs), or when its heartbeat is older than
  ``stale``. ``force=True`` takes it regardless.
* The holder writes a heartbeat in every flush transaction (and at least every
  ``stale / 4`` seconds while idle), and checks in the same transaction that the
  lease is still its own (the token) and the run still exists; otherwise it
  stops writing with a clear error instead of writing orphan or rival sequences.
  Write transactions are serialised, so check-then-write is atomic.
* ``close()`` releases the lease; a killed process leaves it, and the next
  writer finds the pid dead.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..storage.env import current_pid

# A holder is stale after this many of its flush intervals without a heartbeat,
# and never sooner than MIN_STALE seconds: a loaded machine can hold back the
# flush thread for a second or so, and a false takeover stops a healthy writer.
STALE_INTERVALS = 5
MIN_STALE = 10.0

_me: dict | None = None


def hostname() -> str:
    """This machine's name. ``socket`` is imported here, not at ``import runstore``
    (~3 ms that a script which only reads never needs)."""
    import socket

    return socket.gethostname()


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:  # exists, but we may not look at it (another user's)
        return -1.0


def identity() -> dict:
    """This process: host, pid and start time (the pair tells a reused pid apart)."""
    global _me
    pid = current_pid()
    if _me is None or _me["pid"] != pid:
        _me = {"host": hostname(), "pid": pid, "start": _process_start(pid)}
    return _me


def new_lease(interval: float) -> dict:
    now = time.time()
    return dict(identity(), since=now, beat=now, stale=stale_after(interval), token=os.urandom(8).hex())


def stale_after(interval: float) -> float:
    return max(STALE_INTERVALS * interval, MIN_STALE)


def holder_state(lease: dict | None, now: float | None = None) -> str:
    """"free" (no lease), "dead" (pid gone on this host), "stale" (no heartbeat for
    too long), "self" (this process), or "live"."""
    if not lease:
        return "free"
    me = identity()
    if lease.get("host") == me["host"]:
        pid = lease.get("pid")
        if pid == me["pid"] and _same_start(lease.get("start"), me["start"]):
            return "self"
        if not isinstance(pid, int):
            return "dead"
        start = _process_start(pid)
        if start is None or not _same_start(lease.get("start"), start):
            return "dead"
    now = time.time() if now is None else now
    if now - float(lease.get("beat") or 0) > float(lease.get("stale") or MIN_STALE):
        return "stale"
    return "live"


def _same_start(a: Any, b: Any) -> bool:
    if a is None or b is None or a == -1.0 or b == -1.0:
        return True  # unknown: the pid alone decides
    return abs(float(a) - float(b)) < 1.0


def describe(lease: dict, now: float | None = None) -> str:
    now = time.time() if now is None else now
    age = max(0.0, now - float(lease.get("beat") or now))
    return (f"process {lease.get('pid')} on host {lease.get('host')} "
            f"(writing since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(lease.get('since') or now))}, "
            f"last heartbeat {age:.1f} s ago)")


def locked_message(run_id: str, lease: dict, action: str, override: str) -> str:
    stale = float(lease.get("stale") or MIN_STALE)
    return (
        f"run {run_id} is being written by {describe(lease)}; {action} would make two writers, "
        f"and one would lose the other's points. Stop that process first; once it is gone, "
        f"{override} to take over (this happens by itself when that process has died on this "
        f"host, or has written no heartbeat for {stale:g} s)"
    )
