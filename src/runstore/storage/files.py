"""The files and the file system under a repository's environment: data.mdb's header
checked before LMDB maps it, free space, network file systems, fsync of a path, what
counts as a full disk, and the folders an interrupted compact leaves behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

import lmdb

from ..errors import RepositoryError

# LMDB's file layout (lmdb.h / mdb.c): two meta pages at the start of data.mdb. Each
# page has a 16-byte header; the meta that follows holds a magic number, the page
# size (in the free-list database's md_pad), the last page in use and the txn id.
_MDB_MAGIC = 0xBEEFC0DE
_META = struct.Struct("<I I Q Q I")      # magic, version, address, mapsize, dbs[0].md_pad (= page size)
_LAST_PG = struct.Struct("<Q Q")         # mm_last_pg, mm_txnid at offset 16 + 120


def validate_data_file(data: Path) -> None:
    """Refuse a data.mdb that LMDB would wipe (empty) or crash on (truncated).

    LMDB treats an empty file as a new environment and writes fresh meta pages
    into it, and it maps a truncated file as if it were whole: the first read of a
    page past the end kills the process with SIGBUS. Both are checked here, before
    LMDB sees the file, from the two meta pages.
    """
    try:
        with open(data, "rb") as f:
            head = f.read(2 * 65536)
            # The size after the meta pages: a writer in another process extends the
            # file before it writes the meta page that counts the new pages, so read
            # in this order a live repository never looks truncated (the other order
            # did, once in a while, under concurrent writers).
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise RepositoryError(f"cannot read {data}: {exc}") from exc
    damaged = (f"{data} is empty or damaged (no valid LMDB meta page); restore it from a backup; "
               "nothing was written")
    if size < 2 * 4096 or len(head) < 4096:
        raise RepositoryError(damaged)
    best = None
    magic, _, _, _, psize = _META.unpack_from(head, 16)
    if magic != _MDB_MAGIC or psize < 512 or psize & (psize - 1) or psize > 65536:
        raise RepositoryError(damaged)
    for offset in (0, psize):
        if offset + 152 > len(head):
            continue
        magic = _META.unpack_from(head, offset + 16)[0]
        if magic != _MDB_MAGIC:
            continue
        last_pg, txnid = _LAST_PG.unpack_from(head, offset + 136)
        if best is None or txnid > best[1]:
            best = (last_pg, txnid)
    if best is None:
        raise RepositoryError(damaged)
    needed = (best[0] + 1) * psize
    if size < needed:
        raise RepositoryError(
            f"{data} is truncated: {size} bytes, the repository needs at least {needed}; "
            "restore it from a backup (nothing was written)"
        )


def free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def nearly_full(path: Path) -> bool:
    """Whether the file system holding ``path`` has (nearly) no free space left.

    LMDB reports EIO rather than ENOSPC when the disk fills in the middle of
    writing pages (seen on tmpfs and ext4); with this little space left, an EIO
    is a full disk.
    """
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    free = st.f_bavail * st.f_frsize
    return free < (1 << 20) or free < st.f_blocks * st.f_frsize // 100


# Creating a repository writes its first pages; with less than this free, LMDB
# would map a file it could not write and die with SIGBUS on the first page.
CREATE_SPACE = 256 << 10


NETWORK_FS = {"nfs", "nfs4", "cifs", "smbfs", "smb3", "fuse.sshfs", "9p", "afs", "lustre", "glusterfs"}


def filesystem_type(path: str) -> str | None:
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


def stale_compact_dirs(path: Path) -> list[Path]:
    """Temporary folders of a compact that was interrupted (a crash, a kill)."""
    try:
        return sorted(p for p in path.iterdir() if p.name.startswith(".compact-") and p.is_dir())
    except OSError:
        return []


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_disk_full(exc: Exception, path: Path | None = None) -> bool:
    code = getattr(exc, "errno", None) or (exc.args[0] if exc.args and isinstance(exc.args[0], int) else None)
    text = str(exc)
    if code == errno.ENOSPC or "No space left" in text or "ENOSPC" in text:
        return True
    if code == errno.EIO or "Input/output error" in text or isinstance(exc, lmdb.DiskError):
        return path is not None and nearly_full(path)
    return False


def directory_lock(path: Path, exclusive: bool) -> int | None:
    """An flock on the repository directory, or None where the directory cannot be
    opened or locked (e.g. a network file system). Environment.__init__: the process
    creating a repository holds it exclusively until its first commit, the others
    take it shared (and wait) before they open."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    except OSError:
        os.close(fd)
        return None
    return fd


def unlock(fd: int) -> None:
    os.close(fd)  # (closing the only descriptor releases the flock)
