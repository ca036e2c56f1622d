"""The LMDB environment of one repository, shared by every ``Repo`` of a process.

LMDB forbids opening the same environment twice in one process (its POSIX
locks are per process: closing one handle would drop the other's locks), and an
environment must never be used across ``fork()``. So environments live in a
registry keyed by (real path, pid): every ``Repo`` object of a process shares
one, and a forked child transparently opens its own.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import lmdb
import msgpack

from ..errors import RepositoryError, StorageFullError
from .files import (CREATE_SPACE, NETWORK_FS, directory_lock as _directory_lock, filesystem_type, free_bytes,
                    is_disk_full, unlock as _unlock, validate_data_file)
from . import versions as _versions
from .room import Room

# Format 2 (issue 13) adds the "blobs" database and object blocks. A format-1
# repository opens unchanged (it has no blobs database: reads treat it as empty)
# and is migrated in place by the first object tracked into it (ensure_blobs).
# Format 3 (issue 22) adds numeric blocks of format 2 (timestamp deltas, step
# strides: storage/blocks.py). An older repository opens and reads unchanged and
# is marked 3 by the transaction that writes its first such block (mark_format),
# so a runstore that cannot read them refuses the repository instead of failing
# on a block; `runstore compact` rewrites its old blocks in the new encoding.
FORMAT_VERSION = 3
READABLE_FORMATS = (1, 2, 3)
DB_NAMES = ("meta", "runs", "params", "seqs", "blocks", "blobs")
_SINCE = {"blobs": 2}  # databases an older format does not have

# LMDB needs a maximum map size up front. On Linux the file only grows as pages
# are written, so a generous map costs nothing; when it is still reached we
# double it (see Environment.write) rather than fail.
DEFAULT_MAP_SIZE = 1 << 30
_U64 = struct.Struct(">Q")
RUNS_VERSION = b"runs_version"
SEQS_VERSION = b"seqs_version"
# The sequences change index (meta database), which lets the persisted query columns
# re-read only the runs whose sequences changed since they were written:
#   seqat:<run key>               -> u64 sequences version of the run's last change
#   seqchg:<u64 version><run key> -> b"" (the same, ordered by version)
#   seqs_logged_upto              -> u64 last sequences version bumped with its runs named
#   seqs_chain_start              -> u64 first version of the unbroken run of named bumps
# A bump that names no runs, or one by a runstore older than the index (which writes
# neither key), breaks the chain: the next named bump finds seqs_logged_upto behind
# by more than one and restarts the chain at its own version, so columns older than
# that are rebuilt by a scan, never patched with a change the index does not hold.
SEQ_AT = b"seqat:"
SEQ_CHANGED = b"seqchg:"
SEQS_LOGGED_UPTO = b"seqs_logged_upto"
SEQS_CHAIN_START = b"seqs_chain_start"
# The same for the runs version (records and params: create, resume, status, tags,
# params, delete), so the run columns re-read only the runs changed since:
#   runat:<run key>, runchg:<u64 version><run key>, runs_logged_upto, runs_chain_start
RUN_AT = b"runat:"
RUN_CHANGED = b"runchg:"
RUNS_LOGGED_UPTO = b"runs_logged_upto"
RUNS_CHAIN_START = b"runs_chain_start"
# counter -> (per-run key prefix, by-version prefix, logged-upto key, chain-start key)
CHANGE_INDEX = {
    SEQS_VERSION: (SEQ_AT, SEQ_CHANGED, SEQS_LOGGED_UPTO, SEQS_CHAIN_START),
    RUNS_VERSION: (RUN_AT, RUN_CHANGED, RUNS_LOGGED_UPTO, RUNS_CHAIN_START),
}
FORMAT_KEY = b"format"

_MAX_READERS = 2046
_registry: dict[tuple[str, int], "Environment"] = {}
_registry_lock = threading.Lock()


# This process's pid, kept by the at-fork hook below: os.getpid() is a system call,
# and a short run's life asked for it ~7 times (issue 22, target 3).
_pid = os.getpid()


def current_pid() -> int:
    return _pid


def _after_fork_in_child() -> None:
    # Close the handles inherited from the parent: py-lmdb would otherwise
    # refuse to open the environment again ("already open in this process").
    # This is safe: mdb_env_close only clears reader slots owned by the
    # calling pid, and it cannot take the exclusive lock (the parent holds a
    # shared one), so it never tears down the shared mutexes. The flock file
    # description stays open: it is the parent's too.
    global _registry_lock, _pid
    _pid = os.getpid()
    _registry_lock = threading.Lock()
    for env in _registry.values():
        try:
            env.lmdb.close()
        except Exception:
            pass
        env.closed = True
    _registry.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def is_repository(path: Path) -> bool:
    return (path / "data.mdb").is_file()


def open_environment(path: Path, *, create: bool, map_size: int | None = None,
                     readonly: bool = False) -> "Environment":
    """The process's environment for ``path`` (one per path and process: LMDB's rule).

    ``readonly`` only opens LMDB read-only when the files cannot be written (a
    directory the user cannot write, read-only media); otherwise the shared
    read-write environment serves readers too and the caller wraps it in
    :class:`ReadOnly` so that nothing is written through that handle.
    """
    real = os.path.realpath(path)
    key = (real, _pid)
    with _registry_lock:
        env = _registry.get(key)
        if env is None or env.closed:
            lmdb_readonly = readonly and not _writable(Path(real))
            env = Environment(Path(real), create=create, map_size=map_size, readonly=lmdb_readonly)
            _registry[key] = env
        elif env.readonly and not readonly:
            raise RepositoryError(
                f"the repository {real} is read-only for this user; it can be read "
                "(Repo(path, readonly=True)), not written"
            )
        return env


def _writable(path: Path) -> bool:
    data = path / "data.mdb"
    return os.access(path, os.W_OK) and (not data.exists() or os.access(data, os.W_OK))


class ReadOnly:
    """A view of an environment that refuses every write (``Repo(path, readonly=True)``)."""

    def __init__(self, env: "Environment") -> None:
        self._env = env

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    @property
    def readonly(self) -> bool:
        return True

    def write(self, work: Callable[[Any], Any]) -> Any:
        raise RepositoryError(
            f"the repository {self._env.path} is read-only (opened with readonly=True); "
            "open it without readonly to write"
        )

    def defer(self, key: Any, work: Callable[[Any], Any]) -> None:
        self.write(work)  # raises: nothing is deferred through a read-only handle

    def compact(self, prune: Any = None, migrate: Any = None) -> tuple[int, int]:
        return self.write(lambda txn: None)


class Environment:
    """One open LMDB environment plus the repository's advisory lock."""

    def __init__(self, path: Path, *, create: bool, map_size: int | None, readonly: bool = False) -> None:
        self.path = path
        self.closed = False
        self.readonly = readonly
        self.pid = _pid
        self._marked = 0  # a format recorded by the write transaction in progress (mark_format)
        self._new = not is_repository(path)
        if self._new:
            if not create or readonly:
                raise RepositoryError(
                    f"{path} is not a runstore repository (no data.mdb inside); "
                    "create one with `runstore init PATH` or Repo(PATH)"
                )
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RepositoryError(f"cannot create the repository directory {path}: {exc}") from exc
            free = free_bytes(path)
            if free is not None and free < CREATE_SPACE:
                # LMDB would create a sparse file and die with SIGBUS on its first page.
                raise StorageFullError(
                    f"the disk holding {path} has only {free} bytes free; free space and try again"
                )
        # Creating is one process's job, opening waits for it: a creator holds an exclusive
        # flock on the directory from before LMDB makes data.mdb until its first commit has
        # created the databases; an opener takes a shared one first. Without it, a process
        # opening a data.mdb another had just made found no 'meta' database and was refused
        # (6 processes creating one repository at once, under load).
        gate = _directory_lock(path, exclusive=self._new)
        try:
            if self._new and is_repository(path):
                self._new = False  # made by another process while this one waited
            if not self._new:
                if gate is not None:
                    _unlock(gate)  # made and initialised: nothing to wait for any more
                    gate = None
                validate_data_file(path / "data.mdb")
            self._init_state(path, readonly, map_size)
        finally:
            if gate is not None:
                _unlock(gate)

    def _init_state(self, path: Path, readonly: bool, map_size: int | None) -> None:
        fs = filesystem_type(str(path))
        if fs in NETWORK_FS:
            warnings.warn(
                f"{path} is on a network file system ({fs}); LMDB needs a local disk: "
                "concurrent writers may corrupt the repository",
                RuntimeWarning,
                stacklevel=4,
            )
        self._write_lock = threading.RLock()
        self._in_write = False  # True while the holder of _write_lock is inside a write transaction
        # Writes deferred to this process's next write transaction (see defer): key -> work(txn).
        self._deferred: dict[Any, Callable[[Any], Any]] = {}
        self._last_reader_check = 0.0
        # Named version bumps of the write transaction in progress: counter -> (txn,
        # packed version, run keys indexed at it). See bump.
        self._bumped: dict[bytes, tuple] = {}
        self._before_commit: list[Callable[[Any], Any]] = []  # of the write in progress (before_commit)
        self._room = Room(path / "data.mdb")  # zeroed room past the data (storage/room.py)
        self._open(map_size or DEFAULT_MAP_SIZE)

    def _open_lock(self) -> int | None:
        # Every process that opens the repository holds a shared flock on
        # `repo.lock`; `compact` needs it exclusively to swap the data file.
        # A read-only handle on a directory it cannot write takes no lock: it
        # cannot create the file, and nobody can compact under it anyway.
        try:
            if self.readonly:
                fd = os.open(self.path / "repo.lock", os.O_RDONLY)
            else:
                fd = os.open(self.path / "repo.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            if self.readonly:
                return None
            raise RepositoryError(
                f"{self.path} is read-only for this user ({exc.strerror}); open it with "
                "Repo(path, readonly=True) to read it"
            ) from exc
        fcntl.flock(fd, fcntl.LOCK_SH)
        return fd

    def _open(self, map_size: int) -> None:
        self._lock_fd = self._open_lock()
        options = dict(
            map_size=map_size,
            max_dbs=len(DB_NAMES) + 2,
            subdir=True,
            readahead=False,  # query reads are random; readahead wastes page cache
            # One fsync per commit instead of two: the data pages are synced before
            # the meta page is written, and that meta page reaches the disk with the
            # next commit's sync. A killed process loses nothing committed (the page
            # cache survives it); a power cut may undo the last commit, never corrupt.
            # Halving the fsyncs keeps flushes inside the interval on slow disks.
            metasync=False,
            # Each reader process holds a slot until it exits; one killed mid-read
            # keeps it until some process runs reader_check (we do at open and at
            # every flush). A roomy table (64 bytes a slot) rides out bursts of kills.
            max_readers=_MAX_READERS,
        )
        try:
            for attempt in range(20):
                try:
                    try:
                        self.lmdb = lmdb.open(str(self.path), readonly=self.readonly, **options)
                    except lmdb.Error:
                        if not self.readonly:
                            raise
                        # Read-only media: lock.mdb cannot be opened for writing either.
                        self.lmdb = lmdb.open(str(self.path), readonly=True, lock=False, **options)
                    break
                except lmdb.ReadersFullError:
                    # Opening needs a reader slot, so this process cannot clear the dead
                    # ones itself; a live writer does at its next flush.
                    if attempt == 19:
                        raise
                    time.sleep(0.1)
        except lmdb.ReadersFullError as exc:
            self._close_lock()
            raise RepositoryError(
                f"{self.path}: LMDB's reader table is full of processes that died while reading; "
                "it is cleared by any process that has the repository open (e.g. a running writer) "
                "or when every process using it has exited"
            ) from exc
        except lmdb.Error as exc:
            self._close_lock()
            if isinstance(exc, (lmdb.ReadonlyError,)) or "Permission denied" in str(exc):
                raise RepositoryError(
                    f"{self.path} is read-only for this user: {exc}; open it with "
                    "Repo(path, readonly=True) to read it"
                ) from exc
            raise RepositoryError(f"cannot open the repository at {self.path}: {exc}") from exc
        try:
            self._open_databases()
            if not self.readonly:
                self.reader_check()
        except BaseException:
            self.lmdb.close()
            self._close_lock()
            raise

    def _close_lock(self) -> None:
        self._room.close()  # (compact replaces data.mdb: the room is the new file's)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _open_databases(self) -> None:
        """Open the named databases; only a repository being created gets new ones.

        An existing repository is opened with ``create=False`` inside a read
        transaction: a damaged main database must never be "repaired" by writing
        empty databases over it (that wiped repositories for good).
        """
        if self._new:
            def init(txn):
                self.dbs = {name: self.lmdb.open_db(name.encode(), txn=txn) for name in DB_NAMES}
                if txn.get(FORMAT_KEY, db=self.dbs["meta"]) is None:
                    txn.put(FORMAT_KEY, msgpack.packb({"format": FORMAT_VERSION}), db=self.dbs["meta"])
            self.write(init)
            self._new = False
            self.format = FORMAT_VERSION
            return
        data = self.path / "data.mdb"
        try:
            # open_db(create=False) commits a transaction with nothing dirty: LMDB
            # writes no page for it (tests compare the file's bytes).
            dbs = {}
            for name in DB_NAMES:
                try:
                    dbs[name] = self.lmdb.open_db(name.encode(), create=False)
                except lmdb.NotFoundError:
                    if name in _SINCE:
                        dbs[name] = None  # an older format: created by its migration
                        continue
                    raise RepositoryError(
                        f"{data} is empty or damaged: its database {name!r} is missing; "
                        "restore it from a backup; nothing was written"
                    ) from None
            with self.lmdb.begin() as txn:
                raw = txn.get(FORMAT_KEY, db=dbs["meta"])
        except lmdb.Error as exc:
            raise RepositoryError(
                f"{data} is damaged ({exc}); restore it from a backup; nothing was written"
            ) from exc
        self.dbs = dbs
        if raw is None:
            raise RepositoryError(
                f"{data} is damaged: its format record is missing; restore it from a backup; "
                "nothing was written"
            )
        try:
            fmt = msgpack.unpackb(raw).get("format")
        except Exception as exc:
            raise RepositoryError(f"{data} is damaged: its format record does not decode ({exc})") from exc
        if fmt not in READABLE_FORMATS:
            raise RepositoryError(
                f"{self.path} has storage format {fmt}, this runstore reads formats "
                f"{', '.join(map(str, READABLE_FORMATS))}; upgrade runstore"
            )
        self.format = fmt

    def ensure_blobs(self) -> None:
        """Migrate a format-1 repository to format 2 (create the blobs database).

        Done by the first object tracked, in a transaction of its own: opening
        never writes, and a repository without objects stays byte-identical."""
        if self.dbs.get("blobs") is not None:
            return
        opened = {}

        fmt = max(self.format, 2)  # objects need format 2, not the numeric blocks of 3

        def migrate(txn):
            opened["blobs"] = self.lmdb.open_db(b"blobs", txn=txn)
            txn.put(FORMAT_KEY, msgpack.packb({"format": fmt}), db=self.dbs["meta"])

        self.write(migrate)
        self.dbs["blobs"] = opened["blobs"]
        self.format = fmt

    def mark_format(self, txn, fmt: int) -> None:
        """Inside a write transaction that stores data of repository format ``fmt``:
        record the format with that data (one put, the first time only). The
        in-memory ``format`` follows when the transaction commits (``write``)."""
        if self.format < fmt:
            txn.put(FORMAT_KEY, msgpack.packb({"format": fmt}), db=self.dbs["meta"])
            self._marked = fmt

    def _adopt_format(self) -> None:
        # Read back rather than trust _marked: the put may have been made in a nested
        # transaction that was aborted (a failed sequence of an isolated flush).
        with self.lmdb.begin() as txn:
            raw = txn.get(FORMAT_KEY, db=self.dbs["meta"])
        self.format = max(self.format, msgpack.unpackb(raw).get("format", 1))

    # -- transactions -------------------------------------------------------
    # Deferred writes (issue 22, target 3): a new run's creation is not worth an fsync'd
    # commit of its own. ``defer`` keeps it in memory; the next write transaction of this
    # process (the flush thread's group flush within the interval, a close, a param
    # write...) writes it first, and every read of this process commits it before it
    # begins, so this process sees what it wrote at once. A crash before that loses only
    # the deferred work. A forked child gets an Environment of its own (the registry is
    # per pid), so it never commits its parent's deferred writes.
    def defer(self, key: Any, work: Callable[[Any], Any]) -> None:
        """Write ``work(txn)`` first in this process's next write transaction (and
        before its next read). ``work`` only writes into the transaction, as ``write``'s
        does; it may run more than once, until a transaction holding it commits."""
        self._check_pid()
        if self.readonly:
            self.write(work)  # raises the read-only error
        self._deferred[key] = work

    def before_commit(self, work: Callable[[Any], Any]) -> None:
        """Inside a write transaction's work (or a deferred write): run ``work(txn)`` at
        the end of that transaction, after everything else in it, just before it
        commits. A write decided by what the rest of the transaction does: a new run's
        lease is put unless the same transaction closes the run (a short run's only
        commit then neither puts nor deletes it: issue 22, target 3). Like ``write``'s
        work, it only writes into the transaction and may run again if that is retried."""
        if not self._in_write:
            raise RepositoryError(f"{self.path}: before_commit outside a write transaction")
        self._before_commit.append(work)

    def has_deferred(self) -> bool:
        return bool(self._deferred)

    def is_deferred(self, key: Any) -> bool:
        return key in self._deferred

    def commit_deferred(self) -> None:
        """Commit the deferred writes now (nothing to do when there are none, or when
        this thread is inside a write transaction: they are in it already). Errors are
        raised (a full disk: the writes stay deferred, retried by the next write)."""
        if not self._deferred:
            return
        with self._write_lock:
            if self._deferred and not self._in_write:
                self.write(_nothing)

    def read(self, buffers: bool = False):
        self._check_pid()
        if self._deferred:  # this process's own writes are visible to its reads
            try:
                self.commit_deferred()
            except (RepositoryError, lmdb.Error):
                pass  # a full disk must not stop reads; the writer's next flush reports it
        for attempt in range(3):
            try:
                return self.lmdb.begin(buffers=buffers)
            except lmdb.MapResizedError:
                self.lmdb.set_mapsize(0)  # adopt the size another process grew the map to
            except lmdb.ReadersFullError:
                # Slots left by killed readers: clear them and try again once.
                if attempt or self.reader_check() == 0:
                    raise RepositoryError(
                        f"{self.path}: LMDB's reader table is full (too many processes reading at "
                        "once); close some readers, or stop the processes holding the repository open"
                    ) from None
        return self.lmdb.begin(buffers=buffers)

    def reader_check(self) -> int:
        """Clear reader slots of dead processes (each pins old pages and a slot of 510)."""
        self._last_reader_check = time.monotonic()
        try:
            return self.lmdb.reader_check()
        except lmdb.Error:
            return 0

    def write(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(txn)`` in one write transaction and commit it.

        ``work`` must only write into the transaction (no in-memory side
        effects): it is run again from scratch when the map had to grow.
        """
        self._check_pid()
        if self.readonly:
            raise RepositoryError(
                f"the repository {self.path} is read-only (opened with readonly=True); "
                "open it without readonly to write"
            )
        if time.monotonic() - self._last_reader_check > 0.5:
            self.reader_check()
        with self._write_lock:
            if self._in_write:  # LMDB allows one write transaction per thread
                raise RepositoryError(f"{self.path}: a write transaction is already open on this thread")
            for _ in range(64):
                try:
                    txn = self.lmdb.begin(write=True)
                except lmdb.MapResizedError:
                    self.lmdb.set_mapsize(0)
                    continue
                try:
                    # First, while LMDB's writer lock is ours and nothing is written yet:
                    # the commit's fdatasync then allocates nothing (storage/room.py).
                    self._room.keep(self.lmdb)
                except BaseException:
                    txn.abort()
                    raise
                deferred = list(self._deferred.items())
                self._in_write = True
                self._marked = 0
                self._before_commit.clear()
                try:
                    for _key, first in deferred:
                        first(txn)
                    result = work(txn)
                    for last in self._before_commit:
                        last(txn)
                    txn.commit()
                    for key, first in deferred:  # committed: no longer deferred (unless deferred anew)
                        if self._deferred.get(key) is first:
                            del self._deferred[key]
                    if self._marked:
                        self._adopt_format()
                    return result
                except lmdb.MapFullError:
                    txn.abort()
                    self.lmdb.set_mapsize(self.lmdb.info()["map_size"] * 2)
                except lmdb.MapResizedError:
                    txn.abort()
                    self.lmdb.set_mapsize(0)
                except lmdb.Error as exc:
                    txn.abort()
                    if is_disk_full(exc, self.path):
                        raise StorageFullError(
                            f"the disk holding {self.path} is full: {exc}. Nothing committed was lost "
                            "and unflushed points are kept in memory; free space and they are written "
                            "at the next flush"
                        ) from exc
                    raise RepositoryError(f"write to {self.path} failed: {exc}") from exc
                except BaseException:
                    txn.abort()
                    raise
                finally:
                    self._in_write = False
                    self._bumped.clear()
                    self._before_commit.clear()
            raise RepositoryError(f"could not grow the map of {self.path}")

    def _check_pid(self) -> None:
        if self.pid != _pid:
            raise RepositoryError(
                "this repository handle was opened before fork(); open Repo(path) again in the child"
            )

    # -- versions -------------------------------------------------------------
    def bump(self, txn, key: bytes, runs: Any = None) -> None:
        """Grow a version counter in ``txn``; ``runs`` (12-byte run keys) names the runs
        whose sequences (records, params) changed (storage/versions.py)."""
        _versions.bump(self, txn, key, runs)

    def versions(self) -> tuple[int, int]:
        with self.read() as txn:
            meta = self.dbs["meta"]
            r = txn.get(RUNS_VERSION, db=meta)
            s = txn.get(SEQS_VERSION, db=meta)
        return (_U64.unpack(r)[0] if r else 0, _U64.unpack(s)[0] if s else 0)

    # -- maintenance ----------------------------------------------------------
    def compact(self, prune: Callable[[Any], Any] | None = None,
                migrate: Callable[[], Any] | None = None) -> tuple[int, int]:
        """Rewrite the data file without free pages; returns (bytes before, after).
        ``prune(txn)`` first deletes what is no longer needed, ``migrate()`` then
        rewrites old records; power-safe (storage/compact.py)."""
        from .compact import compact

        return compact(self, prune, migrate)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.lmdb.close()
            self._close_lock()


def _nothing(txn: Any) -> None:
    """A write transaction's work when only the deferred writes are to be committed."""
