"""Artifacts through a server: files streamed as numbered ops of 1 MiB chunks.

``run.log_artifact(path)`` on a remote run copies the file (or folder) into a
staging folder beside the spool at once -- as a local run copies it into the
repository, so changing the file afterwards changes nothing -- and queues one
op per chunk plus a final op with the artifact's entry.  The chunks' bytes are
read from the staged copy only when an op is sent (a 10 GB checkpoint is never
in memory, and a spooled chunk op is a few bytes naming its file and offset).
Being ops, chunks are delivered in order, exactly once, through restarts and
the spool, like points.  The server writes each chunk at its offset into an
upload folder and, at the final op, moves the file into the run's artifacts
folder and records the entry in the same commit as the op's number.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..tracking import artifacts as _copy

CHUNK = 1 << 20


# -- client side ----------------------------------------------------------------------------
def stage(src: Path, staging: Path) -> list[tuple[str, Path, int]]:
    """Copy ``src`` (a file or a folder) to ``staging``; [(relative path, copy, size)].

    The same all-or-nothing copy as a local run's (runstore.tracking.artifacts):
    symbolic links followed, a loop refused before copying, nothing left in the
    spool's staging area on an error (a full disk is StorageFullError)."""
    _copy.check_source(src, staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        _copy.copy(src, staging)
        return [(f.relative_to(staging).as_posix(), f, f.stat().st_size)
                for f in sorted(p for p in staging.rglob("*") if p.is_file())]
    staging.mkdir()
    try:
        _copy.copy(src, staging / src.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    dest = staging / src.name
    return [("", dest, dest.stat().st_size)]


def chunk_ops(name: str, files: list[tuple[str, Path, int]]) -> list[dict]:
    ops = []
    for rel, path, size in files:
        for offset in range(0, max(size, 1), CHUNK):
            ops.append({"blob": {"name": name, "rel": rel, "offset": offset, "size": size},
                        "src": str(path), "len": min(CHUNK, size - offset)})
    return ops


def wire(op: dict) -> dict:
    """The op as sent: a chunk's bytes read from its staged copy, client-only fields dropped."""
    if "blob" not in op and "staged" not in op:
        return op
    sent = {k: v for k, v in op.items() if k not in ("src", "len", "staged")}
    if "blob" in op:
        try:
            with open(op["src"], "rb") as f:
                f.seek(op["blob"]["offset"])
                sent["data"] = f.read(op["len"])
        except FileNotFoundError:
            # Staged copies are removed once the artifact's last op is acknowledged:
            # this op is a duplicate (a spool sent twice), which the server
            # acknowledges without reading data. A server that still needs it says so.
            pass
    return sent


def acknowledged(op: dict) -> None:
    """After the final op of an artifact: its staged copy is no longer needed."""
    staged = op.get("staged")
    if staged:
        shutil.rmtree(staged, ignore_errors=True)


# -- server side ----------------------------------------------------------------------------
def _safe(part: str) -> str:
    if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
        raise ValueError(f"artifact name {part!r} must be a plain file name")
    return part


def _rel(rel: str) -> Path:
    parts = [p for p in rel.split("/") if p]
    for p in parts:
        _safe(p)
    return Path(*parts) if parts else Path()


def write_chunk(root: Path, run_id: str, writer: str, blob: dict, data: bytes) -> None:
    """Write one chunk at its offset in the run's upload folder (idempotent)."""
    name = _safe(blob["name"])
    upload = root / "artifacts" / run_id / f".upload-{writer}" / name / _rel(blob["rel"])
    upload.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(upload, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, int(blob["offset"]))
        if int(blob["offset"]) + len(data) >= int(blob["size"]):
            os.ftruncate(fd, int(blob["size"]))
            os.fsync(fd)
    finally:
        os.close(fd)


def finish(root: Path, run_id: str, writer: str, entry: dict) -> dict:
    """Move an uploaded artifact into place; the entry to record (with the server's path)."""
    name = _safe(entry["name"])
    folder = root / "artifacts" / run_id
    upload = folder / f".upload-{writer}" / name
    dest = folder / name
    if upload.exists():
        if dest.is_dir():
            shutil.rmtree(dest)
        # An artifact of one file was uploaded as upload/name (rel ""): move it as is.
        os.replace(upload, dest)
        try:
            (folder / f".upload-{writer}").rmdir()
        except OSError:
            pass
    elif not dest.exists() and not entry.get("size"):  # an empty folder: nothing was uploaded
        dest.mkdir(parents=True, exist_ok=True)
    elif not dest.exists():  # neither uploaded nor moved by an earlier try of this op
        raise ValueError(f"artifact {name!r} of run {run_id}: no uploaded data (were its chunks lost?)")
    out = dict(entry)
    out["path"] = str(dest)
    out.setdefault("created_at", time.time())
    return out


def entry(name: str, kind: Any, files: list[tuple[str, Path, int]]) -> dict:
    return {"name": name, "kind": kind, "path": None, "size": sum(s for _, _, s in files), "created_at": time.time()}
