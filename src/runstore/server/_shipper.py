"""The background thread that ships a process's remote runs to the server.

``track()`` on a remote run costs what it costs locally: the point goes into
the sequence's buffer (the tracking layer's hot path, unchanged).  Once per
flush interval this thread takes every run's buffered points as ONE op (one
Arrow record batch per run), numbers it in order with the run's record ops,
and sends the run's ops one after the other, each waiting for its
acknowledgement (which the server sends once the op is committed).  While the
server cannot be reached, ops stay queued and the thread retries with
exponential backoff (0.25 s doubling to 30 s).

One shipper per remote repository object and process: a forked child starts
with none (the parent's queued ops are the parent's to send).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import time
import warnings
import weakref
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from . import _artifacts, _link
from . import _protocol as P
from ._link import Link, TokenRefused, Unreachable
from ._spool import Spool

if TYPE_CHECKING:
    from .client import RemoteRun

_BACKOFF_MIN, _BACKOFF_MAX = 0.25, 30.0
_shippers: "weakref.WeakSet[Shipper]" = weakref.WeakSet()


class Shipper:
    """Ships the ops of the runs registered with :meth:`add` (see the module docstring)."""

    def __init__(self, link: Link, spool: Spool) -> None:
        self.link = link
        self.spool = spool
        self._reset()
        _shippers.add(self)

    def _reset(self) -> None:
        self._runs: dict[int, "RemoteRun"] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wake = False
        self._stop = False
        self._cycle = 0            # completed send cycles (waiters compare against it)
        self.offline: str | None = None  # why the last attempt failed, while it keeps failing
        self.refused: TokenRefused | None = None
        self._backoff = _BACKOFF_MIN
        self._retry_at = 0.0
        # Held while an op is sent or spooled: an entry is never on the wire and
        # being moved to disk at once.
        self._io = threading.Lock()

    # -- registration ---------------------------------------------------------------
    def add(self, run: "RemoteRun") -> None:
        with self._cond:
            self._runs[id(run)] = run
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="runstore-ship", daemon=True)
                self._thread.start()

    def wake(self) -> None:
        with self._cond:
            self._wake = True
            self._retry_at = 0.0  # a flush or close asks now, not after the backoff
            self._cond.notify_all()

    def wait_sent(self, run: "RemoteRun", timeout: float, while_offline: bool = False) -> bool:
        """Wait until every op of ``run`` queued so far is acknowledged; False when time
        ran out, or (unless ``while_offline``) when the server could not be reached
        after one fresh attempt."""
        deadline = time.monotonic() + timeout
        with self._cond:
            start = self._cycle
            while run._outbox:
                if self.refused is not None or run._stuck is not None:
                    return False
                if self.offline is not None and self._cycle > start and not while_offline:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(timeout=min(left, 0.5))
        return True

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- the thread ------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                runs = list(self._runs.values())
                now = time.monotonic()
                due = min((r._next_flush for r in runs if r._writable), default=now + 3600.0)
                wait = min(due, max(self._retry_at, now) if self.offline else due) - now
                if not self._wake and not self._stop and wait > 0:
                    self._cond.wait(timeout=min(wait, 3600.0))
                    continue
                self._wake = False
                stopping = self._stop
            for run in runs:
                if run._writable and (run._next_flush <= time.monotonic() or stopping):
                    run._package()
            with self._io:
                self._send_all(runs)
                if self.offline is not None or self.refused is not None:
                    self._spool_all(runs)
            with self._cond:
                self._cycle += 1
                for run in runs:
                    if not run._writable and not run._outbox:
                        self._runs.pop(id(run), None)
                self._cond.notify_all()
                if stopping:
                    return

    def _send_all(self, runs: list["RemoteRun"]) -> None:
        if self.offline is not None and time.monotonic() < self._retry_at:
            return
        if _link.forked():
            return self._send_forked(runs)
        try:
            for run in runs:
                self._send(run)
        except Unreachable as exc:
            self.offline = str(exc) or "unreachable"
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
            return
        except TokenRefused as exc:
            self.refused = exc
            return
        if self.offline is not None:
            self.offline = None
        self._backoff = _BACKOFF_MIN
        self.refused = None

    def _send(self, run: "RemoteRun") -> None:
        outbox = run._outbox
        while outbox and run._stuck is None:
            entry = outbox[0]
            op = entry[0]
            op["sent"] = time.time()
            if "seqs" in op:  # points: in memory, or in the spool
                if entry[1] is None:
                    batch = self.spool.load(entry)
                else:
                    if not isinstance(entry[1], pa.RecordBatch):
                        entry[1] = to_batch(entry[1])
                    batch = entry[1]
                result = self.link.put(op, batch)
            else:
                result = self.link.action("op", _artifacts.wire(op))
            if result.get("ok"):
                outbox.popleft()
                if entry[2] is not None:
                    self.spool.done(entry)
                _artifacts.acknowledged(op)
                continue
            if result.get("retry"):
                raise Unreachable(result.get("error", "the server asked to retry"))
            # The server will not take this op (it names a deleted run, say): keep it
            # and everything after it, and let flush()/close() say why.
            run._stuck = result.get("error") or "the server refused an op"
            warnings.warn(f"runstore: run {run.id}: {run._stuck}; its unsent data is kept", RuntimeWarning,
                          stacklevel=2)


    def _send_forked(self, runs: list["RemoteRun"]) -> None:
        """In a forked child (no gRPC here): spool everything and let an exec'd
        ``runstore sync`` send it; what it sent (its files are gone) is acknowledged."""
        self._spool_all(runs)
        if not any(e[2] for r in runs for e in list(r._outbox)):
            return
        env = dict(os.environ)
        if self.link._token:
            env["RUNSTORE_TOKEN"] = self.link._token
        cmd = [sys.executable, "-m", "runstore", "sync", "--spool", str(self.spool.directory),
               "--server", self.link.address.url]
        if self.link._tls_ca is not None:
            ca = self.spool.directory / ".tls-ca.pem"
            ca.write_bytes(self.link._tls_ca)
            cmd += ["--tls-ca", str(ca)]
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            problem = None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["sync failed"])[-1]
        except (OSError, subprocess.TimeoutExpired) as exc:
            problem = f"runstore sync: {exc}"
        for run in runs:
            outbox = run._outbox
            while outbox and outbox[0][2] is not None and not os.path.exists(outbox[0][2]):
                _artifacts.acknowledged(outbox.popleft()[0])
        if problem is None:
            self.offline, self._backoff = None, _BACKOFF_MIN
        elif "refused the token" in problem:
            self.refused = TokenRefused(problem.removeprefix("Error: "))
        else:
            self.offline = problem
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, _BACKOFF_MAX)

    def _spool_all(self, runs: list["RemoteRun"]) -> int:
        """Move every queued op of ``runs`` to the spool (caller holds ``_io``); how many stay in memory."""
        left = 0
        for run in runs:
            with run._lock:
                entries = list(run._outbox)
            for entry in entries:
                if entry[2] is None and not self.spool.put(entry):
                    left += 1
        return left

    def spool_now(self, runs: list["RemoteRun"], timeout: float = 5.0) -> int | None:
        """Spool ``runs``' queued ops from another thread (close, exit); None when a
        send in progress did not finish within ``timeout``."""
        if not self._io.acquire(timeout=timeout):
            return None
        try:
            return self._spool_all(runs)
        finally:
            self._io.release()


def to_batch(parts: list) -> pa.RecordBatch:
    """Points taken from sequence buffers -> one record batch in POINTS_SCHEMA.

    ``parts`` is [(seq index, pending chunks)]; a chunk is an (n, 4) float64 array
    [value, step (NaN: not given), epoch, time], (such rows, exact int64 steps), or
    track_many's columns (``runstore.tracking.pending.Columns``: ``steps``, ``missing``,
    ``values``, ``epochs``, ``times``, sliceable to arrays). Each column is allocated once and filled chunk by chunk (no per-chunk temporaries
    to concatenate: at a million points those cost more than the copying).
    """
    total = sum(len(c[0]) if type(c) is tuple else len(c) for _, chunks in parts for c in chunks)
    rows_kind = (tuple, np.ndarray)
    idx = np.empty(total, np.int32)
    steps = np.empty(total, np.int64)
    given = np.empty(total, bool)
    values, epochs, times = np.empty(total), np.empty(total), np.empty(total)
    at = 0
    for k, chunks in parts:
        for chunk in chunks:
            if type(chunk) not in rows_kind:  # columns
                end = at + len(chunk)
                idx[at:end] = k
                values[at:end] = chunk.values[0:len(chunk)]
                epochs[at:end] = chunk.epochs[0:len(chunk)]
                times[at:end] = chunk.times[0:len(chunk)]
                if chunk.missing is True:
                    given[at:end] = False
                    steps[at:end] = 0
                elif chunk.missing is None:
                    given[at:end] = True
                    steps[at:end] = chunk.steps
                else:
                    np.logical_not(chunk.missing, out=given[at:end])
                    steps[at:end] = np.where(chunk.missing, 0, chunk.steps)
                at = end
                continue
            rows = chunk[0] if type(chunk) is tuple else chunk
            end = at + len(rows)
            idx[at:end] = k
            values[at:end] = rows[:, 0]
            epochs[at:end] = rows[:, 2]
            times[at:end] = rows[:, 3]
            if type(chunk) is tuple:
                steps[at:end] = chunk[1]
                given[at:end] = True
            else:
                raw = rows[:, 1]
                np.isnan(raw, out=given[at:end])
                np.logical_not(given[at:end], out=given[at:end])
                np.copyto(steps[at:end], raw, casting="unsafe", where=given[at:end])
                steps[at:end][~given[at:end]] = 0
            at = end
    return pa.RecordBatch.from_arrays(
        [P.numeric(idx, pa.int32()), P.numeric(steps, pa.int64(), given), P.numeric(values, pa.float64()),
         P.numeric(epochs, pa.float64()), P.numeric(times, pa.float64())],
        schema=P.POINTS_SCHEMA,
    )


def _after_fork_in_child() -> None:
    for shipper in list(_shippers):
        shipper._reset()


def _spool_at_exit() -> None:
    """What no server acknowledged by interpreter exit goes to disk (``runstore sync``
    or the next run sends it); runs still live were closed before this runs."""
    for shipper in list(_shippers):
        runs = [r for r in shipper._runs.values() if r._outbox]
        if not runs:
            continue
        shipper.stop(timeout=1.0)
        left = shipper.spool_now(runs)
        # Spooled files `runstore sync` already delivered are gone: not worth a word.
        queued = sum(1 for r in runs for e in list(r._outbox) if e[2] is None or os.path.exists(e[2]))
        if not queued:
            continue
        where = shipper.spool.directory
        if left is None or left:
            print(f"runstore: {queued} op(s) for {shipper.link.address} were never acknowledged and "
                  f"could not all be written to the spool {where}: they are lost", file=sys.stderr)
        else:
            print(f"runstore: {queued} op(s) for {shipper.link.address} are in the spool {where}; "
                  f"send them with `runstore sync --spool {where}`", file=sys.stderr)


atexit.register(_spool_at_exit)


os.register_at_fork(after_in_child=_after_fork_in_child)
