"""``Run``: one execution of a training script, with params, tags and sequences.

Run records are read-modify-written inside write transactions (``_modify``),
so a status change by the training process never overwrites a tag added from
the CLI at the same moment by another process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from time import monotonic as _monotonic
from time import time as _time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from . import console as _console, environment as _environment, rowbuf as _rowbuf
from . import lease as _lease, lifecycle as _lifecycle
from . import system_metrics as _system_metrics, values as _values
from ..storage import records as _rec
from ..storage.env import current_pid
from ..storage.keys import new_run_id, run_key
from ..errors import InvalidParamError, InvalidValueError, RunClosedError, RunLockedError, SequenceNotFoundError
from .object_sequence import track_object as _track_object
from .objects import TrackedObject
from .run_args import _numeric_array, _opt_str, _parent_id, _start_options, _tag_list
from .run_data import RunData
from .run_flush import RunFlush
from .pending import columns_of as _columns_of
from .sequence import Sequence

if TYPE_CHECKING:
    from .repo import Repo

_NAN = float("nan")
# The longest a track() waits for a late flush in progress (Run._flush_overdue); under
# target 8's 100 ms bound for a writer blocked by a flush.
FLUSH_YIELD = 0.05
_coerce_value = _values.coerce_value
_coerce_step = _values.coerce_step


class _LazyLock:
    """A per-instance lock made on first use (a non-data descriptor: the instance's own
    lock, set by writers, takes precedence)."""

    def __init__(self, name: str, make: Callable[[], Any]) -> None:
        self.name, self.make = name, make

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        lock = obj.__dict__.get(self.name)
        if lock is None:
            with _LAZY_LOCK_GUARD:
                lock = obj.__dict__.setdefault(self.name, self.make())
        return lock


_LAZY_LOCK_GUARD = threading.Lock()


class Run(RunFlush, RunData):
    """A run: create one to track, or pass ``run_id`` to resume one.

    >>> with Run(repo="runs", experiment="mnist", name="baseline") as run:  # doctest: +SKIP
    ...     run["hparams"] = {"lr": 1e-3}
    ...     run.track(0.31, name="loss", context={"subset": "train"})

    A writable run holds the run's writer lease (see ``runstore.tracking.lease``): resuming a
    run another live process is writing raises :class:`RunLockedError`
    (``force=True`` takes it over once that process is gone); resuming a run this
    process already has open returns that open ``Run``.
    """

    def __new__(cls, repo: Any = None, run_id: str | None = None, *args: Any, **kwargs: Any) -> "Run":
        # A run of a remote repository (Repo("grpc://...") or that URL) is
        # runstore.server's RemoteRun: this class's hot path, with its flush and
        # record changes shipped to the server instead of written to LMDB.
        if cls is Run:
            remote = getattr(repo, "_run_class", None)
            if remote is None and (repo is None or isinstance(repo, str)):
                from .repo import remote_module

                module = remote_module(repo)
                remote = module.RemoteRun if module is not None else None
            if remote is not None:
                return object.__new__(remote)
        # A notebook cell run twice: the open writer of this process is handed back,
        # never a second writer of the same run.
        rid = run_id if run_id is not None else kwargs.get("run_hash")
        if isinstance(rid, str):
            open_run = _lifecycle.find_open(rid, repo)
            if open_run is not None and type(open_run) is cls:
                return open_run
        return object.__new__(cls)

    def __init__(
        self,
        repo: "Repo | str | os.PathLike | None" = None,
        run_id: str | None = None,
        *,
        experiment: str | None = None,
        name: str | None = None,
        tags: Iterable[str] | None = None,
        description: str | None = None,
        parent: "Run | str | None" = None,
        flush_interval: float | None = None,
        run_hash: str | None = None,
        created_at: float | None = None,
        force: bool = False,
        system_metrics: bool | float | None = None,
        capture_env: bool | dict | None = None,
        capture_output: bool = False,
    ) -> None:
        """``created_at`` (seconds since the epoch) backdates a new run: importers
        use it to keep the time a run really started in another tracker (the run id
        encodes it, so the run sorts where it belongs). It cannot change a resumed run.

        ``system_metrics``: sample CPU/memory/IO/GPU under ``system/`` every 10 s (or
        every N seconds; False: off; default from RUNSTORE_SYSTEM_METRICS: on).
        ``capture_env``: git, command line, Python, packages, host as ``run.env``
        (False, or a dict piece -> bool; default from RUNSTORE_CAPTURE_ENV: on).
        A backdated run (``created_at``) is an import: both default to off for it.
        ``capture_output``: tee stdout/stderr lines into the artifact ``console.log``."""
        from .repo import Repo

        if getattr(self, "_opened", False):  # this process's open run, from __new__
            return self._reopen(name, experiment, description, tags, parent)
        # checked before anything is written: a bad option creates no run
        metrics_interval, env_pieces = _start_options(created_at, system_metrics, capture_env)

        if run_hash is not None:  # Aim's name for run_id
            if run_id is not None and run_id != run_hash:
                raise InvalidParamError(f"pass run_id or run_hash (Aim's name for it), not both: {run_id!r} / {run_hash!r}")
            run_id = run_hash

        self.repo = repo if isinstance(repo, Repo) else Repo(repo)
        self._init_state(writable=True)
        self._flush_interval = float(flush_interval if flush_interval is not None else self.repo.flush_interval)
        env = self.repo._env
        if created_at is not None:
            if run_id is not None:
                raise InvalidParamError("created_at is for new runs; a resumed run keeps the time it was created")
            if isinstance(created_at, bool) or not isinstance(created_at, (int, float)) \
                    or not 0 <= created_at < 2 ** 47 / 1000:
                raise InvalidParamError(f"created_at must be seconds since the epoch (a number >= 0), got {created_at!r}")
        self._lease = _lease.new_lease(self._flush_interval)
        if run_id is None:
            self._id = new_run_id(created_at)
            now = _time() if created_at is None else float(created_at)
            record = {
                "name": _opt_str(name, "name"),
                "experiment": _opt_str(experiment, "experiment") or "default",
                "tags": _tag_list(tags),
                "description": _opt_str(description, "description"),
                "status": "running",
                "created_at": now,
                "ended_at": None,
                "parent": _parent_id(parent),
                "archived": False,
                "hostname": _lease.hostname(),
                "pid": current_pid(),
                "artifacts": [],
            }

            def create(txn):
                while created_at is not None and _rec.get_record(env, txn, self._id) is not None:
                    self._id = new_run_id(created_at)  # a backdated id is random: never overwrite a run
                _rec.put_record(env, txn, self._id, record)
                # No params record while there are none (every reader takes a missing one
                # for {}), and the lease last (lease_unless_closed): each put is a leaf
                # and a branch page more in the commit of a short run (issue 22, target 3).
                # What this transaction holds of the run: a flush or close in it need not
                # read the lease or the record back (_check_lease, _closing).
                self._created_in = (txn, record)
                env.before_commit(lease_unless_closed)

            def lease_unless_closed(txn):
                # At the end of the creating transaction: the lease, unless that
                # transaction also closed the run (it would delete it again) or deleted it.
                if self._closed_in is not txn and _rec.has_run(env, txn, self._id):
                    _rec.put_lease(env, txn, self._id, self._lease)

            if env_pieces:  # captured once per process; written with the record (no extra commit)
                record["env"] = _environment.capture(env_pieces)
            # No commit of its own (issue 22, target 3): the creation is written first in
            # this process's next write transaction (the flush thread's, within the flush
            # interval; a close; a param write...), and this process's reads commit it
            # before they begin (Environment.defer).
            # Keyed by id(self), never by the Run: its hash is its id, which the backdated
            # collision loop above may change inside the transaction.
            env.defer(id(self), create)
            self._record, self._params = record, {}
        else:
            self._id = run_id = run_key(run_id).hex()  # one spelling: lowercase hex
            changes = {"status": "running", "ended_at": None, "pid": current_pid(), "hostname": _lease.hostname()}
            for key, value in (("name", name), ("experiment", experiment), ("description", description)):
                if value is not None:
                    changes[key] = _opt_str(value, key)

            def resume(txn):
                held = _rec.get_lease(env, txn, run_id)
                if not force and _lease.holder_state(held) == "live":
                    raise RunLockedError(_lease.locked_message(
                        run_id, held, "resuming it here", "pass Run(repo, run_id=..., force=True)"))
                record = self._modify_in(txn, lambda r: r.update(changes))
                _rec.put_lease(env, txn, run_id, self._lease)
                return record

            self._record = env.write(resume)
            with env.read() as txn:
                seqs = _rec.scan_sequences(env, txn, run_id)
            for seq_id, summary in ((s, rec) for _, s, rec in seqs):
                seq = Sequence(self, summary.pop("name"), summary.pop("context"), seq_id, summary, True)
                self._add((seq.name, _values.freeze(seq.context)), seq)
                self._next_seq_id = max(self._next_seq_id, seq_id + 1)
            for tag in _tag_list(tags):
                self.add_tag(tag)
            if parent is not None:
                self.parent = parent
        self._next_flush = _monotonic() + self._flush_interval
        self._due = _time() + 2 * self._flush_interval
        self._last_beat = _monotonic()
        self._opened = True
        _lifecycle.register(self)
        self._start_watchers(metrics_interval, capture_output)

    # The process-wide helpers a live run starts and stops. Shared with every Run
    # subclass (runstore.server's RemoteRun calls them too), so that a run gets the
    # same behaviour wherever its data goes.
    def _start_watchers(self, metrics_interval: float | None, capture_output: bool) -> None:
        _system_metrics.watch(self, metrics_interval)
        if capture_output:
            path, listed = self._console_target()
            self._console = _console.start(self, path, listed)

    def _stop_watchers(self) -> "_console.Capture | None":
        """Stop sampling and console capture; the console capture, if there was one."""
        _system_metrics.unwatch(self)
        return _console.stop(self)

    def _console_target(self) -> tuple[Path, bool]:
        """Where console lines go and whether the file is listed in the record at once
        (a local run: its artifacts folder, listed so it can be followed live)."""
        return self.artifacts_dir / _console.NAME, True

    def _reopen(self, name: Any, experiment: Any, description: Any, tags: Any, parent: Any) -> None:
        """``Run(repo, run_id=...)`` of a run this process has open: the same object,
        with the given attributes applied as a resume would."""
        if not self._writable:  # closed meanwhile (another thread): nothing to hand back
            raise self._closed_error()
        for key, value in (("name", name), ("experiment", experiment), ("description", description)):
            if value is not None:
                setattr(self, key, value)
        for tag in _tag_list(tags):
            self.add_tag(tag)
        if parent is not None:
            self.parent = parent

    def _init_state(self, writable: bool) -> None:
        self._seqs: dict[tuple, Sequence] = {}  # (name, frozen context) -> Sequence: the hot-path index
        self._seq_list: list[Sequence] = []
        self._next_seq_id = 0
        # Two locks. ``_lock`` serialises flushes, closing and the run's record changes,
        # and is held for a whole flush (which may be many transactions: TXN_BYTES).
        # ``_buf_lock`` guards the sequences' pending lists and the sequence index:
        # track_many, a new sequence and a flush's take and adopt steps hold it for
        # microseconds, never while encoding or writing, so track_many never waits for
        # a flush (issue 22, target 8). Order: _lock, then _buf_lock.
        self._lock = threading.RLock()
        self._buf_lock = threading.Lock()
        self._closing_now = False  # a close is taking the last points: track_many refuses
        self._writable = writable
        self._is_view = not writable
        self._record: dict | None = None
        self._params: dict | None = None
        self._flush_error: Exception | None = None
        self._in_flush = False
        self._flush_interval = 1.0
        self._next_flush = float("inf")
        self._due = float("inf")  # wall-clock time after which track() flushes itself
        self._opened = False
        self._stopped: Exception | None = None  # why this writer stopped (lease lost, run deleted)
        self._stop_reported = False
        self._console: Any = None
        self._created_in: tuple = (None, None)  # (transaction, record) of the creation: see create
        self._closed_in: Any = None  # the transaction that closed a run it created (no lease put or deleted)
        self._slot_seqs: list[Sequence] = []  # every sequence made by this writer, by slot (never shrinks)
        self._rows: Any = None  # the one row buffer of a run with many sequences (tracking/rowbuf.py)
        self._retired: list = []
        self._row_items: list = []  # track_many's items placed among the row buffer's rows (rowbuf.queue)

    # A view's state: class attributes every view shares until it sets its own. A
    # selection makes one view per run (100,000 for a big one); each container a view
    # allocated (dict, list, lock, a 20-entry __dict__) was work for the cyclic GC,
    # which walked them all again at each full collection: 23 µs a run with the GC on,
    # 5.7 µs off. Writers (_init_state) set all of these on the instance.
    _writable = False
    _is_view = True
    _seqs: Any = MappingProxyType({})  # read-only: a view never adds a sequence
    _seq_list: Any = ()
    _next_seq_id = 0
    _record: dict | None = None
    _params: dict | None = None
    _flush_error: Exception | None = None
    _in_flush = False
    _flush_interval = 1.0
    _next_flush = float("inf")
    _due = float("inf")
    _opened = False
    _has_objects = False  # an object sequence is live (object_sequence.encode_ahead looks then)
    _stopped: Exception | None = None
    _stop_reported = False
    _created_in: tuple = (None, None)
    _closed_in: Any = None
    _lock = _LazyLock("_lock", threading.RLock)
    _buf_lock = _LazyLock("_buf_lock", threading.Lock)
    _closing_now = False
    _slot_seqs: Any = ()
    _rows: Any = None
    _retired: Any = ()
    _row_items: Any = ()
    _shares_rows = True  # (a RemoteRun ships its sequences' buffers itself)

    @classmethod
    def _view(cls, repo: "Repo", run_id: str, record: dict | None = None, params: dict | None = None) -> "Run":
        """A read view of a stored run (no tracking; attribute and param edits are written).

        Four attributes: the rest are the class's view defaults above."""
        self = object.__new__(cls)
        self.repo = repo
        self._id = run_id
        if record is not None:
            self._record = record
        if params is not None:
            self._params = params
        return self

    # -- tracking (the hot path) ---------------------------------------------------
    def track(self, value: Any, name: str | None = None, step: int | None = None,
              epoch: int | float | None = None, context: dict | None = None) -> None:
        """Append ``value`` to the sequence (name, context); ``step`` defaults to
        that sequence's last step + 1 (0 first).

        ``value`` may also be a dict (Aim's spelling): each key is tracked as its own
        sequence with the same step, epoch and context. ``name`` may be an Enum
        member (stored under its value)."""
        # (rowbuf.track is this body for a run with many sequences: change both)
        try:
            seq = self._seqs[name, frozenset(context.items()) if context else None]
        except (KeyError, TypeError, AttributeError):
            if isinstance(value, dict):
                return self._track_dict(value, name, step, epoch, context)
            seq = self._sequence(name, context)
        if type(value) is not float and type(value) is not int:
            if isinstance(value, dict):
                return self._track_dict(value, name, step, epoch, context)
            if isinstance(value, TrackedObject):  # Image, Text, ... (issue 13)
                return _track_object(seq, value, step, epoch)
            value = _coerce_value(value, seq.name, seq.context)
        if step is None:
            step = _NAN
        elif type(step) is not int or not -9007199254740992 <= step <= 9007199254740992:  # 2**53
            step = _coerce_step(step, name, seq.context)
            if not -9007199254740992 <= step <= 9007199254740992:
                return seq._append_exact(value, step, epoch)
        now = _time()
        try:
            seq._buf.fromlist([value, step, _NAN if epoch is None else epoch, now])
        except (TypeError, OverflowError):
            seq._reject(value, step, epoch)
        if now > self._due:
            self._flush_overdue()

    def _flush_overdue(self) -> None:
        """Flush from the training thread: the flush thread is a whole interval late.

        A thread that wakes from a timed wait must take the GIL back, and CPython
        hands it over only when the holder has kept it for a full switch interval
        without releasing it once. A training loop that releases it briefly and
        often (small torch ops, prints to a pipe) restarts that count every time,
        so on a busy machine the flush thread can wait seconds: the durability
        promise would depend on the scheduler. The thread that starves it pays
        instead, once per interval and only while the flush thread is late."""
        if self._in_flush or not self._lock.acquire(blocking=False):
            # A flush is at it, late: it has taken the GIL, but every LMDB put releases
            # it again and a training loop that never waits takes it back (a flush of
            # 0.1 s of writer_child's points: 20-30 ms alone, 0.1-0.6 s against the loop,
            # since track_many no longer waits for the flush's lock). Wait a little for
            # it to end: the flush runs alone meanwhile. At most FLUSH_YIELD, once per
            # interval, and only while a flush is late; a signal handler interrupting
            # this thread's own flush gets the (reentrant) lock at once.
            if self._lock.acquire(timeout=min(FLUSH_YIELD, self._flush_interval / 2)):
                self._lock.release()
            # Look again an interval from now, not at every track() call until that
            # flush ends (a flush of 10,000 metrics can take seconds: 37% of the calls
            # of a 10,000-name loop came here, ~1 s in 15); a run closed meanwhile
            # keeps its infinite _due.
            self._due = max(self._due, _time() + self._flush_interval)
            return
        try:
            self._due = float("inf")
            try:
                self._flush()
            except Exception as exc:  # the flush thread's rule: keep the points, report at flush()/close()
                self._flush_error = exc
        finally:
            self._lock.release()

    def _track_dict(self, values: dict, name: Any, step: Any, epoch: Any, context: Any) -> None:
        if name is not None:
            raise InvalidValueError(
                f"cannot track a dict in sequence {name!r}: call run.track({{...}}) without name= "
                "to track each key as its own sequence"
            )
        for key in values:  # validate every name and value first: all or nothing
            _values.check_name(_values.metric_name(key))
            if not isinstance(values[key], (int, float)):
                _coerce_value(values[key], _values.metric_name(key), context)
        for key, item in values.items():
            self.track(item, _values.metric_name(key), step, epoch, context)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None, epoch: int | float | None = None,
                    context: dict | None = None) -> None:
        """Track several named values with the same step, epoch and context."""
        if not isinstance(metrics, dict):
            raise InvalidValueError(f"log_metrics takes a dict of name -> value, got {type(metrics).__name__}")
        track = self.track
        for name, value in metrics.items():
            track(value, name, step, epoch, context)

    def track_objects(self, values: list, name: str, steps: Any, epochs: Any = None, context: dict | None = None,
                      timestamps: Any = None) -> None:
        """Append many objects (Image, Text, Distribution, ...) to one sequence with
        their steps, and, as importers need, the time each was recorded (seconds since
        the epoch; default now). All are checked before any is appended."""
        seq = self._sequence(name, context)
        what = _values.describe(seq.name, seq.context)
        n = len(values)
        for i, value in enumerate(values):
            if not isinstance(value, TrackedObject):
                raise InvalidValueError(f"track_objects into {what}: element {i} is a {type(value).__name__}, "
                                        "not an Image, Text, Distribution, Figure, Audio or Array")
        kinds = sorted({value.type for value in values})
        if len(kinds) > 1:
            raise InvalidValueError(f"track_objects into {what}: one sequence holds one type, got {', '.join(kinds)}")
        stp = _numeric_array(steps, f"steps of {what}", n, keep_ints=True)
        if stp.dtype.kind == "f" and not np.isfinite(stp).all():
            raise InvalidValueError(f"steps of {what} must be finite")
        eps = None if epochs is None else _numeric_array(epochs, f"epochs of {what}", n)
        tss = None if timestamps is None else _numeric_array(timestamps, f"timestamps of {what}", n)
        if tss is not None and not np.isfinite(tss).all():
            raise InvalidValueError(f"timestamps of {what} must be finite")
        for i, value in enumerate(values):
            _track_object(seq, value, int(stp[i]), None if eps is None else float(eps[i]),
                          None if tss is None else float(tss[i]))

    def track_many(self, values: Any, name: str, steps: Any = None, epochs: Any = None,
                   context: dict | None = None, timestamps: Any = None) -> None:
        """Append many points at once (NumPy arrays or sequences); all points get
        the current time as their timestamp unless ``timestamps`` (seconds since the
        epoch, one per value) says when each was recorded, as importers do."""
        seq = self._sequence(name, context)
        name = seq.name
        vals = _numeric_array(values, f"values of {_values.describe(name, seq.context)}")
        n = len(vals)
        stp = None
        if steps is not None:
            what = f"steps of {_values.describe(name, seq.context)}"
            raw = _numeric_array(steps, what, n, keep_ints=True)
            if raw.dtype.kind == "f":
                ok = np.isfinite(raw) & (raw == np.round(raw)) & (np.abs(raw) < 2.0 ** 63)
                if not ok.all():
                    i = int(np.flatnonzero(~ok)[0])
                    raise InvalidValueError(f"{what} must be int64 integers: element {i} is {raw[i]!r}")
            elif raw.dtype == np.uint64 and len(raw) and raw.max() > np.iinfo(np.int64).max:
                i = int(np.argmax(raw > np.iinfo(np.int64).max))
                raise InvalidValueError(f"{what} must be int64 integers: element {i} is {int(raw[i])}, beyond 2**63-1")
            stp = raw
        eps = None if epochs is None else _numeric_array(epochs, f"epochs of {_values.describe(name, seq.context)}", n)
        tss = None
        if timestamps is not None:
            tss = _numeric_array(timestamps, f"timestamps of {_values.describe(name, seq.context)}", n)
            if not np.isfinite(tss).all():
                i = int(np.flatnonzero(~np.isfinite(tss))[0])
                raise InvalidValueError(f"timestamps of {_values.describe(name, seq.context)} must be finite: "
                                        f"element {i} is {float(tss[i])!r}")
        item = _columns_of(vals, stp, eps, tss)  # the copies, outside the lock
        if item is None:
            return
        with self._buf_lock:  # never held by a flush while it encodes or writes
            if not self._writable or self._closing_now:
                raise self._closed_error()
            seq._queue(item)

    def sequence(self, name: str, context: dict | None = None) -> Sequence:
        """The sequence (name, context): on a live run a handle whose ``append``
        skips the lookup ``track`` does; on a view, the stored one.

        A live run's handle for a new name stores nothing until its first point is
        committed (reading it before raises SequenceNotFoundError); on a view a name
        without points raises SequenceNotFoundError at once."""
        name = _values.metric_name(name)
        if self._writable:
            return self._sequence(name, context)
        ctx = _values.canonical_context(context, _values.check_name(name))
        seq = self._stored_index().get((name, _values.freeze(ctx)))
        if seq is not None:
            return seq
        raise SequenceNotFoundError(
            f"run {self.id} has no {_values.describe(name, ctx)}; it has {self.sequences()}"
        )

    def _sequence(self, name: str, context: Any) -> Sequence:
        if not self._writable:
            raise self._closed_error()
        name = _values.check_name(_values.metric_name(name))
        ctx = _values.canonical_context(context, name)
        key = (name, _values.freeze(ctx))
        seq = self._seqs.get(key)  # nested contexts come here on every call
        if seq is not None:
            return seq
        with self._buf_lock:
            seq = self._seqs.get(key)
            if seq is None:
                seq = Sequence(self, name, ctx, self._next_seq_id, None, True)
                self._next_seq_id += 1
                self._add(key, seq)
        return seq

    def _add(self, key: tuple, seq: Sequence) -> None:
        """Index a new writable sequence (caller holds the lock or owns the run): its
        slot, and the run's switch to one row buffer at ``rowbuf.SHARED_AT`` sequences."""
        self._seqs[key] = seq
        self._seq_list.append(seq)
        seq._slot = float(len(self._slot_seqs)) if type(seq) is Sequence else None
        self._slot_seqs.append(seq)
        if self._rows is not None:
            _rowbuf.adopt(self, seq)
        elif self._shares_rows and len(self._slot_seqs) >= _rowbuf.SHARED_AT:
            _rowbuf.share(self)

    def _queue_after_rows(self, seq: Sequence, item: Any) -> None:
        """``track_many``'s item for a sequence whose rows are in the run's one buffer
        (caller holds ``_buf_lock``)."""
        _rowbuf.queue(self, seq, item)

    def _take_rows(self) -> None:
        """The run's one row buffer to its sequences' pending lists (caller holds the lock)."""
        if self._rows is not None:
            _rowbuf.take(self)

    def _closed_error(self) -> Exception:
        if self._stopped is not None:
            return type(self._stopped)(str(self._stopped))
        if self._is_view:
            return RunClosedError(
                f"run {self.id} is a read-only view; resume it with Run(repo=..., run_id={self.id!r}) to track"
            )
        return RunClosedError(
            f"run {self.id} is closed or read-only; resume it with Run(repo=..., run_id={self.id!r}) to track more"
        )

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None and self._stopped is not None:
            return False  # the error in flight already says why this writer stopped
        if exc_type is None:
            self.close("finished")
        else:
            self.close("killed" if issubclass(exc_type, KeyboardInterrupt) else "failed")
        return False

    @property
    def closed(self) -> bool:
        return not self._writable

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other._id == self._id and other.repo.path == self.repo.path

    def __hash__(self) -> int:
        return hash(self._id)
