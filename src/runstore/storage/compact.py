"""Compacting a repository's data file (``Environment.compact``, ``runstore compact``).

Split out of env.py: the environment keeps the handle, this module the rewrite.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import RepositoryError
from .files import fsync_path, stale_compact_dirs

if TYPE_CHECKING:
    from .env import Environment


def compact(env: "Environment", prune: Callable[[Any], Any] | None = None,
            migrate: Callable[[], Any] | None = None) -> tuple[int, int]:
    """Rewrite the data file without free pages; returns (bytes before, after).

    ``prune(txn)``, when given, first deletes what is no longer needed, once
    the repository is known to be this process's alone; ``migrate()`` then
    rewrites old records in the current format (in transactions of its own).

    Power-safe: the copy is fsync'd before it replaces data.mdb (an atomic
    rename), and the directory is fsync'd after, so at every instant the
    directory holds one complete data.mdb, the old or the new.
    """
    if env.readonly:
        env.write(lambda txn: None)  # raises the read-only error
    with env._write_lock:
        fcntl.flock(env._lock_fd, fcntl.LOCK_UN)
        try:
            fcntl.flock(env._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fcntl.flock(env._lock_fd, fcntl.LOCK_SH)
            raise RepositoryError(
                f"{env.path} is open in another process; stop it (or close its runs) and compact again"
            ) from None
        for stale in stale_compact_dirs(env.path):
            shutil.rmtree(stale, ignore_errors=True)  # left by an interrupted compact
        if prune is not None:
            env.write(prune)  # e.g. blobs no block references (the lock is ours now)
        if migrate is not None:
            migrate()  # e.g. numeric blocks of format 1 -> 2 (the lock is ours)
        data = env.path / "data.mdb"
        st = data.stat()
        before = st.st_size
        tmp = Path(tempfile.mkdtemp(prefix=".compact-", dir=env.path))
        try:
            env.lmdb.copy(str(tmp), compact=True)
            new = tmp / "data.mdb"
            os.chmod(new, st.st_mode & 0o7777)
            try:
                os.chown(new, st.st_uid, st.st_gid)
            except OSError:
                pass  # not ours to give away; the mode is kept
            fsync_path(new)
            fsync_path(env.path)
            map_size = env.lmdb.info()["map_size"]
            env.lmdb.close()
            os.replace(new, data)
            fsync_path(env.path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            env._close_lock()
            env._open(map_size)
        return before, data.stat().st_size

