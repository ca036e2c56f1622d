"""Writing runs that were created elsewhere: the tracking-layer hooks of
``runstore server`` (and ``runstore merge``).

A run tracked through a server is created by its *client*: the id, the record
(host, pid, creation time) and the points' timestamps are the client's.  The
server therefore needs three things the public ``Run`` does not offer, and
this module is the only door it uses below the public API:

* :func:`writer` -- a live ``Run`` over a stored (or about to be stored) run
  that appends points without claiming it (``Run(repo, run_id=...)`` would
  mark it running on the server's host and pid) and that nothing but
  :func:`commit` ever flushes (it is not registered with the background
  flush thread, so points never reach storage without the record change that
  says which client batch they came from);
* :func:`append` -- points with the client's steps (``None`` = "last step + 1",
  resolved at commit exactly as a local ``track()`` without a step) and
  timestamps;
* :func:`commit` -- the points of MANY runs plus their record/params changes in
  ONE write transaction (group commit: a hundred clients cost one fsync per
  commit, not a hundred).  A client batch's sequence number is written in the
  same transaction as its points, which is what makes retries exactly-once.

Everything goes through the same ``Sequence`` buffers and block writer as
``Run.flush``, so a run written through a server is byte-for-byte the kind of
run a local process writes.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from . import lease as _lease, values as _values
from ..storage import records as _rec
from ..storage.env import SEQS_VERSION
from ..storage.keys import new_run_id, run_key
from .run import Run
from .pending import Columns
from .sequence import Sequence

if TYPE_CHECKING:
    from .repo import Repo

__all__ = ["Change", "append", "commit", "read_part", "new_record", "start_options", "new_run_id", "status_of", "param_value", "resume_changes", "stored", "writer"]


def start_options(created_at: Any, system_metrics: Any, capture_env: Any) -> tuple[float | None, dict]:
    """``(sampling interval or None, environment pieces)`` for ``Run(created_at=...,
    system_metrics=..., capture_env=...)``, validated as ``Run`` validates them."""
    from .run_args import _start_options

    return _start_options(created_at, system_metrics, capture_env)


def new_record(*, name: Any = None, experiment: Any = None, tags: Any = None, description: Any = None,
               parent: Any = None, created_at: float | None = None, env_pieces: dict | None = None) -> dict:
    """The record ``Run(...)`` stores for a new run, validated exactly as ``Run`` does
    (a remote client builds it before anything is buffered or sent). ``env_pieces``
    (from :func:`start_options`): the environment captured into ``env``, as ``Run`` does."""
    from . import environment as _environment
    from .run_args import _opt_str, _parent_id, _tag_list

    if created_at is not None and (isinstance(created_at, bool) or not isinstance(created_at, (int, float))
                                   or not 0 <= created_at < 2 ** 47 / 1000):
        from ..errors import InvalidParamError

        raise InvalidParamError(f"created_at must be seconds since the epoch (a number >= 0), got {created_at!r}")
    record = {
        "name": _opt_str(name, "name"),
        "experiment": _opt_str(experiment, "experiment") or "default",
        "tags": _tag_list(tags),
        "description": _opt_str(description, "description"),
        "status": "running",
        "created_at": time.time() if created_at is None else float(created_at),
        "ended_at": None,
        "parent": _parent_id(parent),
        "archived": False,
        "hostname": _lease.hostname(),
        "pid": os.getpid(),
        "artifacts": [],
    }
    if env_pieces:
        record["env"] = _environment.capture(env_pieces)
    return record


def resume_changes(*, name: Any = None, experiment: Any = None, description: Any = None) -> dict:
    """The record fields ``Run(repo, run_id=...)`` sets when it resumes a run."""
    from .run_args import _opt_str

    changes: dict = {"status": "running", "ended_at": None, "pid": os.getpid(), "hostname": _lease.hostname()}
    for key, value in (("name", name), ("experiment", experiment), ("description", description)):
        if value is not None:
            changes[key] = _opt_str(value, key)
    return changes


def status_of(status: Any) -> str:
    """``status`` as ``run.close(status)`` takes it (aliases and RunStatus members resolved), or ValueError."""
    from .run_flush import _STATUS_ALIASES, STATUSES

    status = getattr(status, "run_status", status) or "finished"
    status = _STATUS_ALIASES.get(status, status) if isinstance(status, str) else status
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    return status


def param_value(key: str, value: Any) -> Any:
    """``value`` as ``run[key] = value`` stores it (plain containers), or the error it raises."""
    _values.check_param_key(key)
    return _values.normalize_params(value, key)


def tags_of(tags: Any) -> list[str]:
    """Validated tags, as ``Run(tags=...)`` and ``add_tag`` take them."""
    from .run_args import _tag_list

    return _tag_list(tags)


def parent_of(parent: Any) -> str | None:
    from .run_args import _parent_id

    return _parent_id(parent)


def stored(repo: "Repo", run_id: str) -> tuple[dict, dict] | None:
    """The stored (record, params) of ``run_id``, fields the public views hide included."""
    env = repo._env
    with env.read() as txn:
        record = _rec.get_record(env, txn, run_id)
        return None if record is None else (record, _rec.get_params(env, txn, run_id))


def writer(repo: "Repo", run_id: str) -> Run:
    """A live Run appending points to ``run_id`` without touching its record.

    The run need not exist yet (a :class:`Change` with ``create`` stores it in
    the same transaction as its first points)."""
    run = object.__new__(Run)
    run.repo = repo
    run._id = run_id
    run._init_state(writable=True)
    env = repo._env
    with env.read() as txn:
        rows = _rec.scan_sequences(env, txn, run_id)
    for _, seq_id, summary in rows:
        seq = Sequence(run, summary.pop("name"), summary.pop("context"), seq_id, summary, True)
        run._add((seq.name, _values.freeze(seq.context)), seq)
        run._next_seq_id = max(run._next_seq_id, seq_id + 1)
    return run


def append(run: Run, name: str, context: dict | None, values: np.ndarray, steps: np.ndarray,
           has_step: np.ndarray | None, epochs: np.ndarray, timestamps: np.ndarray) -> None:
    """Queue points for the next :func:`commit` of ``run``.

    ``steps`` is int64; where ``has_step`` is False the step was not given and
    becomes the previous step + 1 at commit (``has_step=None``: every step given).
    """
    if not len(values):
        return
    seq = run._sequence(name, context)
    # Columns as they came (views of the client's Arrow buffers): the flush copies
    # them once, into the blocks it encodes.
    missing = None if has_step is None else True if not has_step.any() else None if has_step.all() else ~has_step
    seq._pending.append(Columns(steps, missing, values, epochs, timestamps))


class Change:
    """What one :func:`commit` does to one run besides storing its queued points.

    ``create``: (record, params) of a run stored now unless it exists;
    ``edit(record, params)``: a change applied to the stored record and params
    (read, changed, written back inside the transaction, so a tag added from
    the CLI at the same moment is never overwritten)."""

    __slots__ = ("run", "create", "edit")

    def __init__(self, run: Run, create: tuple[dict, dict] | None = None,
                 edit: Callable[[dict, dict], None] | None = None) -> None:
        self.run, self.create, self.edit = run, create, edit


def commit(repo: "Repo", changes: Iterable[Change]) -> None:
    """Store the queued points of every run in ``changes`` and apply their record
    changes, all in one write transaction.  Nothing in memory changes unless it
    commits: on an exception the queued points stay queued (drop the writers to
    forget them)."""
    changes = list(changes)
    env = repo._env
    dirty: list[list[Sequence]] = []
    for change in changes:
        seqs = []
        for seq in change.run._seq_list:
            seq._take_buffer()
            if seq._pending:
                seqs.append(seq)
        dirty.append(seqs)

    def work(txn):
        states = []
        for change, seqs in zip(changes, dirty):
            run_id = change.run.id
            if change.create is not None and _rec.get_record(env, txn, run_id) is None:
                record, params = change.create
                _rec.put_record(env, txn, run_id, record)
                _rec.put_params(env, txn, run_id, params)
            if change.edit is not None:
                record = _rec.get_record(env, txn, run_id)
                if record is None:
                    from ..errors import RunNotFoundError

                    raise RunNotFoundError(f"run {run_id} does not exist in {repo.path} (was it deleted?)")
                params = _rec.get_params(env, txn, run_id)
                before = _rec.pack(params)
                change.edit(record, params)
                _rec.put_record(env, txn, run_id, record)
                if _rec.pack(params) != before:
                    _rec.put_params(env, txn, run_id, params)
            states.append([seq._prepare(env, txn) for seq in seqs])
        if any(dirty):
            env.bump(txn, SEQS_VERSION, [run_key(c.run.id) for c, seqs in zip(changes, dirty) if seqs])
        return states

    states = env.write(work)
    for seqs, seq_states in zip(dirty, states):
        for seq, state in zip(seqs, seq_states):
            if state is not None:
                seq._adopt(state)


# -- reads for a remote client: the query layer's scan contract, shipped --------------------
def versions(repo: "Repo") -> tuple[int, int]:
    """(runs version, sequences version): each grows with every commit that changes them."""
    return repo._versions()


def scan_runs(repo: "Repo") -> list[tuple[str, dict, dict]]:
    """Every (run id, record, params), in storage order, as the query layer scans them."""
    return repo._scan_runs()


def scan_sequences(repo: "Repo") -> list[tuple[str, int, dict]]:
    """Every (run id, seq id, summary with name and context), in storage order."""
    return repo._scan_sequences()


def read_part(columns: tuple, work: Callable) -> Any:
    """What ``Repo._read_part`` returns, computed over a sequence's columns in memory
    (a remote repository reads a sequence whole, then slices it the same way)."""
    from ..storage.locate import ColumnsReader

    return work(ColumnsReader(columns), {"count": len(columns[1]), "sorted_steps": False})


def read(repo: "Repo", keys: list[tuple[str, int]]) -> list[tuple]:
    """The (steps, values, epochs, timestamps) of each (run id, seq id), in one read transaction."""
    return repo._read_sequences(keys)


def read_columns(repo: "Repo", keys: list[tuple[str, int]]) -> tuple[tuple, Any]:
    """The points of every (run id, seq id) in one read transaction, as four flat
    columns (steps, values, epochs, timestamps) and offsets (``Repo._read_columns``)."""
    return repo._read_columns(keys)
