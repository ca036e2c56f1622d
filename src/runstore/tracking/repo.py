"""``Repo``: one directory holding every run (an LMDB environment plus artifacts)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator


from . import handles as _handles, lifecycle as _lifecycle
from ..storage.gc import gc_paused
from ..storage import locate as _locate
from ..storage import records as _rec
from ..storage.env import current_pid, open_environment
from ..storage.keys import run_created_at, run_key
from ..errors import RunNotFoundError
from .run import Run
from .sequence import Sequence

if TYPE_CHECKING:
    from ..analysis.collections import RunCollection, SequenceCollection
    from ..analysis.sql import SQLResult

DEFAULT_PATH = ".runstore"
ENV_VAR = "RUNSTORE_REPO"

# Repositories behind a server: ``Repo("grpc://host:8815")`` is a
# runstore.server.client.RemoteRepo and ``Run(repo=that)`` its RemoteRun (the
# same Run hot path, with a different way to storage; docs/server.md).  Named
# by module so that tracking never imports the server layer: the module is
# imported on first use of such a URL only.
REMOTE_SCHEMES = {"grpc": "runstore.server.client", "grpc+tls": "runstore.server.client"}


def remote_module(target: Any) -> Any:
    """The module serving ``target`` when it is a remote URL (None: ``$RUNSTORE_REPO``), else None."""
    if target is None:
        target = os.environ.get(ENV_VAR)
    if not isinstance(target, str) or "://" not in target:
        return None
    scheme = target.split("://", 1)[0].lower()
    if scheme not in REMOTE_SCHEMES:
        from ..errors import RepositoryError

        raise RepositoryError(
            f"{target!r}: unknown repository URL scheme {scheme!r}; use a directory path, "
            f"or one of {', '.join(s + '://host:port' for s in REMOTE_SCHEMES)}"
        )
    import importlib

    return importlib.import_module(REMOTE_SCHEMES[scheme])


def default_path() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


# What a repository holds before its data file exists: another process is creating it
# right now (it takes repo.lock, then LMDB makes lock.mdb, then data.mdb). Workers of a
# Hydra joblib sweep opening a new repository at once met that window and were refused.
_OWN_FILES = frozenset({"repo.lock", "lock.mdb", "data.mdb"})


def _check_target(path: Path, explicit: bool) -> None:
    """Refuse to turn a file, or (unless asked) a directory holding other things, into a repository.

    ``Repo(".")`` in a project folder would otherwise quietly put data.mdb among the
    sources; a new repository gets a missing or empty directory unless ``create=True``.
    """
    from ..storage.env import is_repository
    from ..errors import RepositoryError

    if is_repository(path):
        return
    if path.exists() and not path.is_dir():
        raise RepositoryError(f"{path} is a file, not a runstore repository; choose a directory path")
    if explicit or not path.is_dir():
        return
    try:
        entries = sorted(p.name for p in path.iterdir())
    except OSError:
        return
    if entries and not set(entries) <= _OWN_FILES:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise RepositoryError(
            f"{path} is a directory with other files ({shown}) and not a runstore repository; "
            f"use a new or empty directory (e.g. {path / '.runstore'}), or pass create=True "
            "(`runstore init PATH`) to make it one anyway"
        )


class Repo:
    """A repository of runs in one directory.

    ``Repo(path)`` opens it, creating it when the directory is missing or empty
    (``create=True`` also makes a non-empty directory a repository; ``create=False``
    only opens an existing one);
    ``Repo()`` uses ``$RUNSTORE_REPO``, else ``./.runstore``.
    Several ``Repo`` objects, threads and processes may use one repository at once.
    """

    def __new__(cls, path: Any = None, *args: Any, **kwargs: Any) -> "Repo":
        if cls is Repo:
            remote = remote_module(path)
            if remote is not None:  # Repo("grpc://host:port", token=...) -> RemoteRepo
                return object.__new__(remote.RemoteRepo)
        return object.__new__(cls)

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool | None = None,
                 flush_interval: float = 1.0, map_size: int | None = None,
                 readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.flush_interval = float(flush_interval)
        if self.flush_interval <= 0:
            raise ValueError("flush_interval must be a positive number of seconds")
        self.readonly = bool(readonly)
        if create is not False and not readonly:
            _check_target(self.path, explicit=create is True)
        self._map_size = map_size
        self._env_obj = self._open_env(create=create is not False and not readonly)
        self.path = self._env_obj.path
        self._pid = current_pid()

    def _open_env(self, create: bool):
        from ..storage.env import ReadOnly

        env = open_environment(self.path, create=create, map_size=self._map_size, readonly=self.readonly)
        return ReadOnly(env) if self.readonly and not env.readonly else env

    @property
    def _env(self):
        # After fork() the child transparently gets its own environment. (The pid the
        # at-fork hook keeps: os.getpid() is a system call, and this is read several
        # times a run.)
        if self._pid != current_pid():
            self._env_obj = self._open_env(create=False)
            self._pid = current_pid()
        return self._env_obj

    def __repr__(self) -> str:
        return f"Repo({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Repo) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    # -- runs ----------------------------------------------------------------------
    def get_run(self, run: str) -> Run:
        """A view of a stored run (resume it with ``Run(repo, run_id=...)`` to track).

        ``run`` is the full id, the 8-character handle shown by ``runstore ls``,
        or a unique prefix of either; a prefix naming several runs raises
        :class:`~runstore.AmbiguousRunError` listing them.
        """
        run_id = self.resolve(run)
        for live in _lifecycle.live_runs():  # the live object of this process, if any
            if live.id == run_id and live.repo == self:
                return live
        env = self._env
        with env.read() as txn:
            record = _rec.get_record(env, txn, run_id)
            if record is None:
                raise RunNotFoundError(f"no run {run_id} in {self.path}; list them with `runstore ls`")
            params = _rec.get_params(env, txn, run_id)
        return Run._view(self, run_id, record, params)

    def resolve(self, run: str) -> str:
        """The full id of the run named by ``run`` (id, handle or unique prefix of either)."""
        if not isinstance(run, str):
            raise TypeError(f"a run id must be a string such as run.id or its handle, got {run!r}")

        def ids() -> list[str]:
            env = self._env
            with env.read() as txn:
                return _rec.run_ids(env, txn)

        def describe(run_id: str) -> tuple[str | None, float]:
            env = self._env
            with env.read() as txn:
                record = _rec.get_record(env, txn, run_id) or {}
            return record.get("name"), run_created_at(run_id)

        return _handles.resolve(run, ids, describe, str(self.path))

    def runs(self) -> list[Run]:
        """Every run, in creation order."""
        rows = self._scan_runs()
        with gc_paused():
            return [Run._view(self, rid, rec, params) for rid, rec, params in rows]

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs())

    def __len__(self) -> int:
        env = self._env
        with env.read() as txn:
            return _rec.count_runs(env, txn)

    def __contains__(self, run_id: object) -> bool:
        if not isinstance(run_id, str):
            return False
        env = self._env
        try:
            with env.read() as txn:
                return _rec.get_record(env, txn, run_id) is not None
        except RunNotFoundError:
            return False

    def delete_run(self, run_id: str, *, force: bool = False) -> None:
        """Delete a run, its sequences and its artifacts.

        A run another live process is writing is refused with
        :class:`~runstore.RunLockedError` (``force=True`` deletes it anyway; that
        writer then stops with an error at its next flush). A run this process has
        open is closed first."""
        from . import lease as _lease
        from ..errors import RunLockedError

        run_id = run_key(run_id).hex()  # one spelling, so artifacts/<id> is found too
        for run in _lifecycle.live_runs():
            if run.id == run_id and run.repo == self:
                run.close("killed")
        env = self._env

        def work(txn):
            held = _rec.get_lease(env, txn, run_id)
            if not force and _lease.holder_state(held) == "live":
                raise RunLockedError(_lease.locked_message(
                    run_id, held, "deleting it", "pass force=True (`runstore rm --force`)"))
            return _rec.delete_run(env, txn, run_id)

        if not env.write(work):
            raise RunNotFoundError(f"no run {run_id} in {self.path}")
        shutil.rmtree(self.path / "artifacts" / run_id, ignore_errors=True)

    # -- queries (the query layer does the work) -----------------------------------
    def query(self, query: str | None = None) -> "RunCollection":
        """Runs matching a query, e.g. ``"run.hparams.lr < 0.01"`` (all runs for None or "")."""
        from ..analysis import run_query  # facade: the analysis layer builds the collection

        return run_query(self, query)

    def sql(self, query: str, params: Any = None) -> "SQLResult":
        """Run DuckDB SQL over the repository (needs ``runstore[sql]``).

        Tables: ``runs``, ``params``, ``sequences``, ``points``, ``artifacts``; views
        ``experiments``, ``trials``, ``trial_runs``, ``epochs``, ``results`` (docs/query.md).
        ``params`` fills ``?``/``$1`` placeholders. Filters on ``points`` read only the
        sequences they reach::

            repo.sql("SELECT step, value FROM points WHERE run_id = ? AND name = 'loss'", [run_id])
        """
        from ..analysis.sql import sql  # facade: DuckDB over the analysis layer's Arrow views

        return sql(self, query, params)

    # Aim's names for the same things.
    @classmethod
    def from_path(cls, path: str | os.PathLike, **kwargs: Any) -> "Repo":
        """Aim's spelling of ``Repo(path)``."""
        return cls(path, **kwargs)

    def iter_runs(self) -> Iterator[Run]:
        """Every run, in creation order (Aim's ``repo.iter_runs()``)."""
        return iter(self.runs())

    def query_runs(self, query: str | None = None) -> "RunCollection":
        """Aim's name for :meth:`query`."""
        return self.query(query)

    def query_metrics(self, query: str | None = None) -> "SequenceCollection":
        """Aim's name for :meth:`query_sequences`."""
        return self.query_sequences(query)

    def query_sequences(self, query: str | None = None) -> "SequenceCollection":
        """Sequences matching a query, e.g. ``"seq.name == 'loss' and run.hparams.lr < 0.01"``."""
        from ..analysis import sequence_query  # facade: the analysis layer builds the collection

        return sequence_query(self, query)

    # -- maintenance ---------------------------------------------------------------
    def check(self) -> list[str]:
        """Verify integrity; returns a list of problems (empty when clean).

        Every block decodes, block numbers are contiguous, each sequence's
        summary agrees with its blocks, every sequence, block and params
        record belongs to an existing run, and every blob an object block
        references exists and matches its hash. The list has a ``notes``
        attribute too: blobs no block references (left by ``delete_run``) are
        reclaimable space, not damage, counted in ``reclaimable_bytes`` until
        ``compact`` drops them.
        """
        from ..storage.check import check
        from ..query import snapshot

        # The persisted query columns are a cache: damage there is reported, and
        # is harmless (queries ignore a damaged snapshot and rebuild it).
        report = check(self._env)
        report.extend(snapshot.check(self))
        return report

    def compact(self) -> tuple[int, int]:
        """Reclaim the space of deleted data (and of blobs no sequence references),
        and rewrite numeric blocks of an older format in the current, smaller one
        (docs/storage.md, *Format versions*); returns (bytes before, bytes after).

        Needs the repository to itself: fails with a clear error while another
        process has it open.
        """
        for run in _lifecycle.live_runs():
            if run.repo == self:
                run.flush()
        from ..storage import objblocks

        # Blobs orphaned by delete_run (identical payloads are shared between runs,
        # so deleting a run cannot drop its blobs: they are collected here).
        env = self._env
        return env.compact(prune=lambda txn: objblocks.drop_unreferenced(env, txn),
                           migrate=lambda: _rec.reencode_blocks(env))

    def disk_usage(self) -> int:
        """Bytes on disk of the repository (allocated blocks, artifacts included)."""
        total = 0
        for root, _, files in os.walk(self.path):
            for f in files:
                try:
                    total += os.stat(os.path.join(root, f)).st_blocks * 512
                except OSError:
                    pass
        return total

    # -- the private scan contract used by the query layer ------------------------
    def _versions(self) -> tuple[int, int]:
        """(runs_version, seqs_version): each grows whenever run records/params
        or sequence data are committed by any process."""
        return self._env.versions()

    def _scan_runs(self) -> list[tuple[str, dict, dict]]:
        env = self._env
        with gc_paused(), env.read() as txn:
            return _rec.scan_runs(env, txn)

    def _scan_sequences(self) -> list[tuple[str, int, dict]]:
        env = self._env
        with gc_paused(), env.read() as txn:
            rows = _rec.scan_sequences(env, txn)
        for _, _, summary in rows:
            summary.pop("blocks", None)
            summary.pop("sorted_steps", None)
        return rows

    def _iter_sequences(self) -> Iterator[tuple[str, int, dict]]:
        """Like ``_scan_sequences`` one row at a time (one read transaction, held
        until the iterator is exhausted): the query layer keeps typed columns, so
        the decoded dicts need not all be alive at once."""
        env = self._env
        with env.read() as txn:
            yield from _rec.iter_sequences(env, txn)

    def _sequences_since(self, version: int) -> tuple[int, list[str], list[tuple[str, int, dict]]] | None:
        """(current sequences version, ids of the runs whose sequences changed after
        ``version``, every (run id, seq id, record) of those runs), read in one
        transaction; None when the change index cannot tell (the query layer then
        scans everything). Lets the query columns refresh incrementally."""
        env = self._env
        with gc_paused(), env.read() as txn:
            found = _rec.sequences_changed_since(env, txn, version)
            if found is None:
                return None
            current, changed = found
            rows = []
            for run_id in changed:
                rows.extend(_rec.scan_sequences(env, txn, run_id))
        return current, changed, rows

    def _runs_since(self, version: int) -> tuple[int, list[str], list[tuple[str, dict, dict]]] | None:
        """(current runs version, ids of the runs whose record or params changed after
        ``version`` (created, deleted too), (run id, record, params) of those that
        exist), read in one transaction; None when the change index cannot tell.
        Lets the run columns refresh incrementally."""
        env = self._env
        with gc_paused(), env.read() as txn:
            found = _rec.runs_changed_since(env, txn, version)
            if found is None:
                return None
            current, changed = found
            rows = []
            for run_id in changed:
                record = _rec.get_record(env, txn, run_id)
                if record is not None:
                    rows.append((run_id, record, _rec.get_params(env, txn, run_id)))
        return current, changed, rows

    def _params_of(self, run_ids: list[str]) -> list[dict]:
        """The stored params of each run ({} when it has none or is gone), one read."""
        env = self._env
        with env.read() as txn:
            return [_rec.get_params(env, txn, run_id) for run_id in run_ids]

    def _read_sequence(self, run_id: str, seq_id: int) -> tuple:
        return self._read_sequences([(run_id, seq_id)])[0]

    def _run_sequences(self, run_id: str) -> list[tuple[int, dict]]:
        """(seq id, stored record with name and context) of one run's sequences, in creation order."""
        env = self._env
        with env.read() as txn:
            rows = _rec.scan_sequences(env, txn, run_id)
        return [(seq_id, summary) for _, seq_id, summary in rows]

    def _run_sequence_names(self, run_id: str) -> list[tuple[str, dict]]:
        """(name, context) of one run's sequences, in creation order (``run.sequences()``)."""
        env = self._env
        with env.read() as txn:
            return _rec.scan_sequence_names(env, txn, run_id)

    def _read_part(self, run_id: str, seq_id: int, work: Any) -> Any:
        """``work(reader, record)`` over one sequence's blocks, read only as far as it asks."""
        return _locate.with_reader(self._env, run_id, seq_id, work)

    def _read_sequences(self, keys: list[tuple[str, int]]) -> list[tuple]:
        env = self._env
        # buffers=True: blocks are decoded straight out of the memory map and
        # copied once, by the concatenation.
        with env.read(buffers=True) as txn:
            return [_rec.read_sequence(env, txn, rid, sid) for rid, sid in keys]

    def _read_columns(self, keys: list[tuple[str, int]]) -> tuple[tuple, Any]:
        """The points of many sequences at once (one read transaction, one cursor):
        four flat columns (steps, values, epochs, timestamps) and ``offsets``,
        sequence i being ``column[offsets[i]:offsets[i + 1]]`` (see storage/bulk.py).
        What ``query_sequences(...).to_numpy()/to_arrow()`` and the export read."""
        from ..storage import bulk as _bulk

        env = self._env
        # gc paused: a buffer object per block would otherwise set off full collections
        # (measured: 1-2 s for 100,000 blocks in a process holding big query tables).
        with gc_paused(), env.read(buffers=True) as txn:
            return _bulk.read_columns(env, txn, keys)

    def _sequence_view(self, run_id: str, seq_id: int, summary: dict) -> Sequence:
        return Sequence._from_summary(self, run_id, seq_id, summary)
