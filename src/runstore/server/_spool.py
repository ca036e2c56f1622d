"""The spool: ops a client could not deliver, kept on local disk until it can.

While the server cannot be reached (or refuses the token) the shipper writes
every queued op to ``~/.cache/runstore/spool/<host>_<port>/`` (one file per op,
``<writer>-<number>.op``, written to a temporary name, fsync'd and renamed, so a
file is whole or absent) and drops its points from memory; when the server is
back the same process sends them in order and deletes each file once it is
acknowledged.  What a process leaves behind (it exited before the server came
back, or the node had no network at all) is sent by ``runstore sync``.  Sending
a file twice is harmless: the server recognises the op's number.

A spool is bounded (``spool_limit`` bytes, 1 GiB by default): a warning when it
passes 80 %, and past the limit new ops stay in memory (with a warning) rather
than filling the disk.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from . import _artifacts
from . import _protocol as P

DEFAULT_LIMIT = 1 << 30
_NAME = re.compile(r"^([0-9a-f]+)-(\d{12})\.op$")
_LEN = struct.Struct(">I")


def encode(op: dict, batch: pa.RecordBatch | None) -> bytes:
    head = P.pack(op)
    body = b""
    if batch is not None:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        body = sink.getvalue().to_pybytes()
    return _LEN.pack(len(head)) + head + body


def decode(raw: bytes) -> tuple[dict, pa.RecordBatch | None]:
    (n,) = _LEN.unpack_from(raw)
    op = P.unpack(raw[4:4 + n])
    body = raw[4 + n:]
    if not body:
        return op, None
    reader = pa.ipc.open_stream(pa.py_buffer(body))
    return op, reader.read_next_batch()


class Spool:
    """One server's spool directory for one process (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike, url: str, limit: int = DEFAULT_LIMIT) -> None:
        self.directory = Path(directory)
        self.url = url
        self.limit = int(limit)
        self.size = 0
        self._warned_near = self._warned_full = False

    def put(self, entry: list) -> bool:
        """Write one outbox entry [op, points, path] to disk (points dropped from
        memory); False, and the entry left in memory, when the spool is full."""
        if entry[2] is not None:
            return True
        op, points = entry[0], entry[1]
        if points is not None and not isinstance(points, pa.RecordBatch):
            from ._shipper import to_batch

            points = entry[1] = to_batch(points)
        raw = encode(op, points)
        if self.size + len(raw) > self.limit:
            if not self._warned_full:
                self._warned_full = True
                warnings.warn(
                    f"runstore: the spool {self.directory} is full ({self.size:,} of {self.limit:,} bytes); "
                    "new data stays in memory until the server is back (raise Repo(url, spool_limit=...) "
                    "or free space)", RuntimeWarning, stacklevel=2)
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        marker = self.directory / "server.txt"
        if not marker.exists():
            marker.write_text(self.url + "\n")
        path = self.directory / f"{op['w']}-{int(op['n']):012d}.op"
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self.size += len(raw)
        entry[1], entry[2] = None, str(path)
        if not self._warned_near and self.size > 0.8 * self.limit:
            self._warned_near = True
            warnings.warn(f"runstore: the spool {self.directory} is over 80% of its limit "
                          f"({self.size:,} of {self.limit:,} bytes)", RuntimeWarning, stacklevel=2)
        return True

    def load(self, entry: list) -> pa.RecordBatch | None:
        """The points of a spooled entry (None for a record op)."""
        return decode(Path(entry[2]).read_bytes())[1]

    def done(self, entry: list) -> None:
        path = Path(entry[2])
        try:
            self.size -= path.stat().st_size
            path.unlink()
        except FileNotFoundError:  # `runstore sync` sent it first
            pass
        entry[2] = None


def pending(directory: Path) -> dict[str, list[Path]]:
    """Spooled op files by writer, each writer's in op order."""
    out: dict[str, list[tuple[int, Path]]] = {}
    for path in directory.iterdir() if directory.is_dir() else ():
        match = _NAME.match(path.name)
        if match:
            out.setdefault(match.group(1), []).append((int(match.group(2)), path))
    return {w: [p for _, p in sorted(files)] for w, files in sorted(out.items())}


def push(link: Any, directory: Path, echo: Callable[[str], None] = print) -> dict:
    """Send every op spooled in ``directory`` (``runstore sync``); a report.

    Each writer's ops go in order; a file is deleted once acknowledged. A writer
    whose op the server refuses keeps that file and the ones after it."""
    report = {"ops": 0, "already": 0, "points": 0, "runs": set(), "left": 0, "errors": []}
    for writer, files in pending(directory).items():
        for i, path in enumerate(files):
            try:
                raw = path.read_bytes()
            except FileNotFoundError:  # the writing process sent it meanwhile
                continue
            op, batch = decode(raw)
            result = link.put(op, batch) if batch is not None else link.action("op", _artifacts.wire(op))
            if not result.get("ok"):
                report["errors"].append(f"run {op.get('run')}: {result.get('error')}")
                report["left"] += len(files) - i
                break
            report["already" if result.get("dup") else "ops"] += 1
            if batch is not None and not result.get("dup"):
                report["points"] += batch.num_rows
            report["runs"].add(op.get("run"))
            path.unlink(missing_ok=True)
            _artifacts.acknowledged(op)
    report["runs"] = len(report["runs"])
    return report
