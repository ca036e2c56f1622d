"""The LMDB environment of one repository, shared by every ``Repo`` of a process.

LMDB forbids opening the same environment twice in one process (its POSIX
locks are per process: closing one handle would drop the other's locks), and an
environment must never be used across ``fork()``. So environments live in a
registry keyed by (real path, pid): every ``Repo`` object of a process shares
one, and a forked child transparently opens its own.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import lmdb
import msgpack

from ..errors import RepositoryError, StorageFullError

FORMAT_VERSION = 1
DB_NAMES = ("meta", "runs", "params", "seqs", "blocks")

# LMDB needs a maximum map size up front. On Linux the file only grows as pages
# are written, so a generous map costs nothing; when it is still reached we
# double it (see Environment.write) rather than fail.
DEFAULT_MAP_SIZE = 1 << 30
_U64 = struct.Struct(">Q")
RUNS_VERSION = b"runs_version"
SEQS_VERSION = b"seqs_version"
FORMAT_KEY = b"format"

_registry: dict[tuple[str, int], "Environment"] = {}
_registry_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # Close the handles inherited from the parent: py-lmdb would otherwise
    # refuse to open the environment again ("already open in this process").
    # This is safe: mdb_env_close only clears reader slots owned by the
    # calling pid, and it cannot take the exclusive lock (the parent holds a
    # shared one), so it never tears down the shared mutexes. The flock file
    # description stays open: it is the parent's too.
    global _registry_lock
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


def open_environment(path: Path, *, create: bool, map_size: int | None = None) -> "Environment":
    real = os.path.realpath(path)
    key = (real, os.getpid())
    with _registry_lock:
        env = _registry.get(key)
        if env is None or env.closed:
            env = Environment(Path(real), create=create, map_size=map_size)
            _registry[key] = env
        return env


_NETWORK_FS = {"nfs", "nfs4", "cifs", "smbfs", "smb3", "fuse.sshfs", "9p", "afs", "lustre", "glusterfs"}


def _filesystem_type(path: str) -> str | None:
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    best, kind = "", None
    for parts in mounts:
        if len(parts) >= 3 and (path == parts[1] or path.startswith(parts[1].rstrip("/") + "/")):
            if len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


class Environment:
    """One open LMDB environment plus the repository's advisory lock."""

    def __init__(self, path: Path, *, create: bool, map_size: int | None) -> None:
        self.path = path
        self.closed = False
        self.pid = os.getpid()
        if not is_repository(path):
            if not create:
                raise RepositoryError(
                    f"{path} is not a runstore repository (no data.mdb inside); "
                    "create one with `runstore init PATH` or Repo(PATH)"
                )
            path.mkdir(parents=True, exist_ok=True)
        fs = _filesystem_type(str(path))
        if fs in _NETWORK_FS:
            warnings.warn(
                f"{path} is on a network file system ({fs}); LMDB needs a local disk: "
                "concurrent writers may corrupt the repository",
                RuntimeWarning,
                stacklevel=3,
            )
        self._write_lock = threading.RLock()
        self._open(map_size or DEFAULT_MAP_SIZE)

    def _open(self, map_size: int) -> None:
        # Every process that opens the repository holds a shared flock on
        # `repo.lock`; `compact` needs it exclusively to swap the data file.
        self._lock_fd = os.open(self.path / "repo.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        try:
            self.lmdb = lmdb.open(
                str(self.path),
                map_size=map_size,
                max_dbs=len(DB_NAMES) + 2,
                subdir=True,
                readahead=False,  # query reads are random; readahead wastes page cache
                max_readers=510,
            )
        except lmdb.Error as exc:
            os.close(self._lock_fd)
            raise RepositoryError(f"cannot open the repository at {self.path}: {exc}") from exc
        self.dbs = {name: self.lmdb.open_db(name.encode()) for name in DB_NAMES}
        self._check_format()

    def _check_format(self) -> None:
        with self.lmdb.begin() as txn:
            raw = txn.get(FORMAT_KEY, db=self.dbs["meta"])
        if raw is None:
            def init(txn):
                if txn.get(FORMAT_KEY, db=self.dbs["meta"]) is None:
                    txn.put(FORMAT_KEY, msgpack.packb({"format": FORMAT_VERSION}), db=self.dbs["meta"])
            self.write(init)
            return
        fmt = msgpack.unpackb(raw).get("format")
        if fmt != FORMAT_VERSION:
            raise RepositoryError(
                f"{self.path} has storage format {fmt}, this runstore reads format {FORMAT_VERSION}; "
                "upgrade runstore (or migrate the repository)"
            )

    # -- transactions -------------------------------------------------------
    def read(self, buffers: bool = False):
        self._check_pid()
        try:
            return self.lmdb.begin(buffers=buffers)
        except lmdb.MapResizedError:
            self.lmdb.set_mapsize(0)  # adopt the size another process grew the map to
            return self.lmdb.begin(buffers=buffers)

    def write(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(txn)`` in one write transaction and commit it.

        ``work`` must only write into the transaction (no in-memory side
        effects): it is run again from scratch when the map had to grow.
        """
        self._check_pid()
        with self._write_lock:
            for _ in range(64):
                try:
                    txn = self.lmdb.begin(write=True)
                except lmdb.MapResizedError:
                    self.lmdb.set_mapsize(0)
                    continue
                try:
                    result = work(txn)
                    txn.commit()
                    return result
                except lmdb.MapFullError:
                    txn.abort()
                    self.lmdb.set_mapsize(self.lmdb.info()["map_size"] * 2)
                except lmdb.MapResizedError:
                    txn.abort()
                    self.lmdb.set_mapsize(0)
                except lmdb.Error as exc:
                    txn.abort()
                    if _is_disk_full(exc):
                        raise StorageFullError(
                            f"the disk holding {self.path} is full: {exc}. Nothing committed was lost "
                            "and unflushed points are kept in memory; free space and they are written "
                            "at the next flush"
                        ) from exc
                    raise RepositoryError(f"write to {self.path} failed: {exc}") from exc
                except BaseException:
                    txn.abort()
                    raise
            raise RepositoryError(f"could not grow the map of {self.path}")

    def _check_pid(self) -> None:
        if self.pid != os.getpid():
            raise RepositoryError(
                "this repository handle was opened before fork(); open Repo(path) again in the child"
            )

    # -- versions -------------------------------------------------------------
    def bump(self, txn, key: bytes) -> None:
        meta = self.dbs["meta"]
        raw = txn.get(key, db=meta)
        txn.put(key, _U64.pack((_U64.unpack(raw)[0] if raw else 0) + 1), db=meta)

    def versions(self) -> tuple[int, int]:
        with self.read() as txn:
            meta = self.dbs["meta"]
            r = txn.get(RUNS_VERSION, db=meta)
            s = txn.get(SEQS_VERSION, db=meta)
        return (_U64.unpack(r)[0] if r else 0, _U64.unpack(s)[0] if s else 0)

    # -- maintenance ----------------------------------------------------------
    def compact(self) -> tuple[int, int]:
        """Rewrite the data file without free pages; returns (bytes before, after)."""
        import shutil
        import tempfile

        with self._write_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
                raise RepositoryError(
                    f"{self.path} is open in another process; stop it (or close its runs) and compact again"
                ) from None
            data = self.path / "data.mdb"
            before = data.stat().st_size
            tmp = Path(tempfile.mkdtemp(prefix=".compact-", dir=self.path))
            try:
                self.lmdb.copy(str(tmp), compact=True)
                map_size = self.lmdb.info()["map_size"]
                self.lmdb.close()
                # os.replace is atomic: a crash leaves either the old or the new file.
                os.replace(tmp / "data.mdb", data)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
                os.close(self._lock_fd)
                self._open(map_size)
            return before, data.stat().st_size

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.lmdb.close()
            os.close(self._lock_fd)


def _is_disk_full(exc: Exception) -> bool:
    code = getattr(exc, "errno", None) or (exc.args[0] if exc.args and isinstance(exc.args[0], int) else None)
    return code == errno.ENOSPC or "No space left" in str(exc) or "ENOSPC" in str(exc)
