"""A live run's flush and close (``RunFlush``, a base of ``Run``): taking the pending
points, writing them in budgeted transactions (``_write_in``), adopting what was
written after the commit, the writer lease's check, and closing with the last flush
and the status in one transaction. The hot path (``track``, ``track_many``) and the
run's set-up stay in run.py.

Locks (docs/storage.md): ``_lock`` serialises flushes and is held for a whole
(multi-transaction) flush; ``_buf_lock`` guards the pending lists and the sequence
index for microseconds, so ``track_many`` never waits for a flush.
"""

from __future__ import annotations

import warnings
from time import monotonic as _monotonic
from time import time as _time
from typing import Any, Callable

import lmdb

from . import batch_flush as _batch_flush, console as _console, lease as _lease, lifecycle as _lifecycle
from . import rowbuf as _rowbuf
from ..storage import records as _rec
from ..storage.env import SEQS_VERSION
from ..storage.keys import run_key
from ..errors import InvalidParamError, RunLockedError, RunNotFoundError, RunstoreError
from .object_sequence import encode_ahead as _encode_ahead
from .sequence import LATER, Budget, Sequence, SharedRows, _ClosedBuffer

STATUSES = ("running", "finished", "failed", "killed")
# The Experiment Manager (seed 003) and MLflow name the same outcomes differently.
_STATUS_ALIASES = {"completed": "finished", "FINISHED": "finished", "FAILED": "failed", "KILLED": "killed",
                   "aborted": "killed"}
_FAILED = object()  # a sequence whose points could not be stored at a flush


class RunFlush:
    """Flushing and closing, for :class:`runstore.tracking.run.Run` (its only subclass)."""

    def flush(self) -> None:
        """Commit everything tracked so far in one write transaction.

        Raises the error of a sequence whose points could not be stored (they stay
        in memory; every other sequence was committed)."""
        self._flush()
        if self._flush_error is not None:
            raise self._flush_error

    def _flush(self, also: Callable[[Any], Any] | None = None) -> Any:
        _encode_ahead(self)  # big objects' encodes, before the lock (object_sequence.encode_ahead)
        with self._lock:
            self._next_flush = _monotonic() + self._flush_interval
            started = self._flush_started()
            if not self._writable:
                return None
            if self._in_flush:
                # Only a signal handler (SIGTERM) can re-enter on the same thread while
                # its flush is mid-transaction; LMDB allows one write transaction per
                # thread, so the outer flush must finish on its own.
                raise RunstoreError(f"run {self._id}: a flush is already in progress on this thread")
            self._in_flush = True
            try:
                return self._flush_locked(also)
            finally:
                self._in_flush = False
                self._flush_ended(started)

    # The training thread reads ``_due`` (wall clock, as the hot path reads it anyway)
    # and calls _flush_overdue once past it. During a flush it is the flush's start plus
    # an interval: a flush that runs longer is late, and the training thread yields to
    # it. Between flushes it is a whole interval after the next flush was due: the
    # flush thread is late to start, and the training thread flushes itself.
    def _flush_started(self) -> float:
        """A flush (caller holds ``_lock``) starts now: it is late past an interval."""
        now = _time()
        self._due = now + self._flush_interval
        return now

    def _flush_ended(self, started: float) -> None:
        """A flush that started at ``started`` ended (caller holds ``_lock``): the next
        one is due an interval after the start (at once if it took longer), and late a
        whole interval after that."""
        if self._writable:  # else closed or stopped: _due stays infinite
            self._due = max(started + 2 * self._flush_interval, _time() + self._flush_interval)

    def _flush_locked(self, also: Callable[[Any], Any] | None) -> Any:
        dirty = self._take_dirty()
        env = self.repo._env
        if not dirty and also is None and not self._beat_due() and not env.is_deferred(id(self)):
            return None
        while True:
            # At most TXN_BYTES of blocks per transaction (_write_in): a big flush is a
            # series of bounded commits, the closing record change in the last one.
            try:
                outcome = env.write(lambda txn: self._write_in(env, txn, dirty, also))
            except (RunstoreError, lmdb.Error):
                raise
            except Exception:
                # One sequence could not be encoded (validation at track() should make
                # this impossible; this is the second line of defence): commit every
                # other sequence, and the run's record change, without it.
                outcome = env.write(lambda txn: self._write_in(env, txn, dirty, also, isolate=True))
            result = self._after_commit(dirty, outcome)
            dirty = _unfinished(dirty, outcome)
            if not dirty:
                return result

    # The three steps of a flush, also used by the flush thread to write every due
    # run of a repository in one transaction (runstore.tracking.lifecycle). The caller holds
    # the run's lock from _take_dirty to _after_commit. A flush with more than a
    # transaction's worth of blocks calls _write_in/_after_commit again for the
    # sequences _unfinished returns.
    def _take_dirty(self) -> list[Sequence]:
        """Sequences with points to write (moved out of the hot buffers); each notes
        how many pending items this flush writes (``_taken``): later ones wait."""
        dirty = []
        with self._buf_lock:
            if self._rows is not None:
                _rowbuf.take(self)
            for seq in self._seq_list:
                if type(seq._buf) is not SharedRows:
                    seq._take_buffer()
                if seq._pending:
                    seq._taken = len(seq._pending)
                    dirty.append(seq)
        return dirty

    def _beat_due(self) -> bool:
        """Whether an idle run should still write a heartbeat into its lease."""
        return _monotonic() - self._last_beat >= self._lease["stale"] / 4

    def _write_in(self, env, txn, dirty: list, also: Callable[[Any], Any] | None, isolate: bool = False,
                  budget: Budget | None = None) -> tuple:
        """Write into ``txn`` (nothing in memory changes: ``work`` may run twice);
        returns (states, result of ``also``, failed sequences, why the writer lost the
        run, whether every pending point is written). At most ``budget`` bytes of blocks
        (a transaction's worth, TXN_BYTES, by default) are put; ``also`` (closing) runs
        only in the transaction that writes the last points."""
        lost = self._check_lease(env, txn)
        if lost is not None:
            return None, None, [], lost, True
        failed: list = []
        if budget is None:
            budget = Budget()
        if not isolate:
            # (once the budget is spent the rest wait: no call per sequence per transaction;
            # many small sequences are written in one vectorised pass)
            states = _batch_flush.prepare_all(env, txn, self._id, dirty, budget)
        else:  # each sequence in a nested transaction of its own
            states = []
            for seq in dirty:
                child = env.lmdb.begin(write=True, parent=txn)
                try:
                    states.append(seq._prepare(env, child, budget, seq._taken))
                    child.commit()
                except lmdb.Error:
                    child.abort()
                    raise
                except Exception as exc:
                    child.abort()
                    states.append(_FAILED)
                    failed.append((seq, exc))
        if dirty:
            env.bump(txn, SEQS_VERSION, (run_key(self._id),))
        done = all(getattr(state, "done", True) for state in states)
        return states, (also(txn) if also is not None and done else None), failed, None, done

    def _check_lease(self, env, txn) -> Exception | None:
        """Write the heartbeat if the lease is still this writer's; else say why not."""
        if self._created_in[0] is txn:
            return None  # created in this transaction: the lease is ours, its beat within the interval
        held = _rec.get_lease(env, txn, self._id)
        if held is not None and held.get("token") == self._lease["token"]:
            _rec.put_lease(env, txn, self._id, dict(self._lease, beat=_time()))
            return None
        if not _rec.has_run(env, txn, self._id):
            return RunNotFoundError(
                f"run {self._id} was deleted from {self.repo.path} while this process was writing it; "
                "this writer stops (points tracked since its last flush were not stored)"
            )
        holder = _lease.describe(held) if held is not None else "another process (which has closed it since)"
        return RunLockedError(
            f"run {self._id} was taken over by {holder}; this process stops writing it (points tracked "
            "since its last flush were not stored). Resume it with Run(repo, run_id=...) once that "
            "writer is done"
        )

    def _after_commit(self, dirty: list, outcome: tuple) -> Any:
        states, result, failed, lost, _ = outcome
        if lost is not None:
            self._stop(lost)
            raise type(lost)(str(lost))
        self._last_beat = _monotonic()
        self._created_in = (None, None)  # committed: later transactions read the record
        with self._buf_lock:
            for seq, state in zip(dirty, states):
                if state is not None and state is not _FAILED and state is not LATER:
                    seq._adopt(state)
        self._flush_error = None
        if failed:
            seq, exc = failed[0]
            names = ", ".join(f"{s.name!r}" for s, _ in failed)
            self._flush_error = RunstoreError(
                f"run {self._id}: could not store the points of sequence(s) {names} "
                f"({type(exc).__name__}: {exc}); they are kept in memory, every other sequence "
                "was committed"
            )
            warnings.warn(str(self._flush_error), RuntimeWarning, stacklevel=4)
        return result

    def _stop(self, why: Exception) -> None:
        """Stop writing: the run was deleted, or another process took its lease."""
        self._stopped = why
        with self._buf_lock:
            self._writable = False
            self._due = float("inf")
            for seq in self._seq_list:
                seq._buf = _StoppedBuffer(self._id, why)
            if self._rows is not None:
                self._rows = _StoppedBuffer(self._id, why)
                self.__dict__.pop("track", None)
        _lifecycle.unregister(self)
        warnings.warn(str(why), RuntimeWarning, stacklevel=4)

    def close(self, status: str = "finished", *, ended_at: float | None = None) -> None:
        """Flush, mark the run ``status`` and stop accepting points. Idempotent.

        ``status`` is finished, failed or killed; ``"completed"`` (the Experiment
        Manager's word) and a pipeline ``RunStatus`` are accepted too. ``ended_at``
        (seconds since the epoch; default now) keeps the time an imported run
        really ended; ``status="running"`` with ``ended_at=None`` leaves a run that
        was still running in its tracker marked so."""
        status = getattr(status, "run_status", status) or "finished"  # a RunStatus member
        status = _STATUS_ALIASES.get(status, status) if isinstance(status, str) else status
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        if ended_at is not None and (isinstance(ended_at, bool) or not isinstance(ended_at, (int, float))):
            raise InvalidParamError(f"ended_at must be seconds since the epoch, got {ended_at!r}")
        with self._lock:
            if not self._writable:
                if self._stopped is not None and not self._stop_reported:
                    self._stop_reported = True
                    raise self._closed_error()
                return
            try:
                self._closed(self._flush(also=self._closing(status, ended_at)))
            except BaseException:
                self._reopen_after_failed_close()
                raise

    def _closing(self, status: str, ended_at: float | None = None) -> Callable[[Any], dict]:
        """The record change of closing (run inside the flush transaction); stops
        this run's system-metrics sampling and console capture."""
        end = None if status == "running" and ended_at is None else _time() if ended_at is None else float(ended_at)
        with self._buf_lock:
            # From here track_many refuses (RunClosedError, as it would once closed): what
            # the closing flush takes is all there is (call this before _take_dirty).
            self._closing_now = True
        console = self._stop_watchers()

        def ending(record: dict) -> None:
            record.update(status=status, ended_at=end)
            if console is not None:
                _console.record_artifact(record, console)

        def mark(txn):
            env = self.repo._env
            created, record = self._created_in
            if created is not txn:
                _rec.delete_lease(env, txn, self._id)  # the next writer need not wait
                return self._modify_in(txn, ending)
            # Created in this very transaction (a short run's only commit): no lease to
            # delete (create's lease_unless_closed puts none), and the record is the one
            # just put, not read back and decoded. A copy: this may run twice.
            self._closed_in = txn
            record = dict(record)
            ending(record)
            _rec.put_record(env, txn, self._id, record)
            return record

        return mark

    def _reopen_after_failed_close(self) -> None:
        """The closing transaction did not commit (e.g. the disk is full): the run is
        still open and takes points again."""
        with self._buf_lock:
            self._closing_now = False

    def _closed(self, record: dict) -> None:
        """After the closing transaction committed: stop accepting points."""
        self._record = record
        with self._buf_lock:
            self._writable = False
            self._closing_now = False
            self._due = float("inf")
            for seq in self._seq_list:
                seq._buf = _ClosedBuffer(self._id)
            if self._rows is not None:
                self._rows = _ClosedBuffer(self._id)
                self.__dict__.pop("track", None)
        _lifecycle.unregister(self)


def _unfinished(dirty: list, outcome: tuple) -> list:
    """The sequences of ``dirty`` with pending points the transaction's budget left over."""
    if outcome[3] is not None or outcome[4]:
        return []
    return [seq for seq, state in zip(dirty, outcome[0]) if not getattr(state, "done", True)]


class _StoppedBuffer(_ClosedBuffer):
    """The point buffer of a writer that lost its run: appending raises why."""

    __slots__ = ("error",)

    def __init__(self, run_id: str, error: Exception) -> None:
        super().__init__(run_id)
        self.error = error

    def fromlist(self, _row) -> None:
        raise type(self.error)(str(self.error))
