"""Zeroed room at the end of data.mdb, so that a commit's fdatasync writes data only.

LMDB grows its file by writing pages past the end. On ext4 (and most journalling file
systems) every commit that does so makes ``fdatasync`` allocate blocks and change the
file's size: a journal commit on top of the data write. Measured on this project's
machine (issue 22, target 3: 100,000 short runs, one commit each) the median
fdatasync of a run's commit was 0.84-1.35 ms with the file growing and 0.44-0.47 ms
with zeroed room ahead of it (strace, the machine loaded alike).

So a writer keeps some room of real zeros (written, not ``fallocate``: unwritten
extents need the same journal work when first written) past the pages LMDB uses.
It is written at the start of a write transaction, when LMDB holds its writer lock
(no other process can be writing pages) and this transaction has written nothing
yet: every byte past the file's end is then unused, and the zeros only ever go
there. LMDB ignores what lies past its last page (a file larger than the data is
normal for it), and the zeros reach the disk with the commit's own fdatasync: no
extra sync. A crash at any point leaves at most some zeros past the end.

The room is proportional to the data (an eighth, 256 KiB to 8 MiB) and none is kept
below 1 MiB of data: small repositories (tests make thousands) stay small.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_START = 1 << 20     # no room for files smaller than this
_MIN_ROOM = 256 << 10
_MAX_ROOM = 8 << 20


class Room:
    """The zeroed room past the used pages of one environment's data file."""

    __slots__ = ("path", "fd", "end", "psize")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.end = 0  # the file reaches at least this far (re-read before writing)
        self.psize = 0

    def keep(self, env: Any) -> None:
        """Make sure at least half the room is there past the pages in use. Call with
        a write transaction of ``env`` (an lmdb.Environment) just begun: nothing of it
        written yet, and no other writer. One ``env.info()`` when the room is there."""
        if not self.psize:
            self.psize = env.stat()["psize"]
        used = (env.info()["last_pgno"] + 1) * self.psize
        room = _room(used)
        if used < _START or used + room // 2 <= self.end:
            return
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
            size = os.fstat(self.fd).st_size  # another writer may have made room already
            if size < used + room // 2:
                start = max(size, used)  # past the file's end: nothing there is in use
                size = start + os.pwrite(self.fd, bytes(used + room - start), start)
            self.end = size
        except OSError:
            # A full disk, a read-only file...: no room, LMDB grows the file as before.
            # Tried again once the data has grown by half the room.
            self.end = used + room

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
        self.end = 0


def _room(used: int) -> int:
    return min(max(used >> 3, _MIN_ROOM), _MAX_ROOM)
