"""The persisted query columns: a cache of the column tables inside the repository.

A fresh process used to decode every run record, params tree and sequence
summary (msgpack) before its first query: ~1 s per 100,000 runs. Once a process
has built the tables it writes them, in a background thread, to
``<repo>/query-snapshot/``; the next process maps them instead of scanning.

Layout: one directory per half, named by what it was built from::

    query-snapshot/runs-<inode of data.mdb>-<runs_version>/{meta.msgpack, arrays.bin}
    query-snapshot/seqs-<inode of data.mdb>-<seqs_version>/{meta.msgpack, arrays.bin}

``arrays.bin`` holds the NumPy arrays back to back (64-byte aligned) and is
memory-mapped read-only; ``meta.msgpack`` holds the offsets, a CRC-32 of each
array, the interned strings and the few values that are not numbers (lists,
dicts). A half is used only when its version equals the repository's current
counter (and the data file is the same one): the cache is never stale, it is
absent. It is written into a temporary directory and renamed into place, so a
crash mid-write leaves a temporary directory (removed later) and never a
half-written snapshot; a damaged one (truncated, unreadable) is ignored and
rebuilt, and ``Repo.check()`` reports it. Nothing here runs in a write
transaction: a writer never waits for it.

Set ``RUNSTORE_QUERY_SNAPSHOT=0`` to neither read nor write it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from . import runkeys
from .vectors import Column

# 1 stored run ids as NumPy 'S12', which drops trailing zero bytes; 2 kept the seqs
# half's run ids as a msgpack list of hex strings (~0.6 s to unpack per 1 M runs) and
# the runs half's "id" column (its 1 M strings again); 3 keeps both halves' ids as
# raw 12-byte keys ("ids", "run_keys.raw") and derives the "id" column from them.
FORMAT = 3
DIRNAME = "query-snapshot"
_ALIGN = 64
_COL_ARRAYS = ("num", "num_mask", "ints", "codes", "bools", "bool_mask", "obj_mask", "none_mask")
_pending: list = []
_writing = threading.Lock()


def enabled(repo: Any) -> bool:
    return os.environ.get("RUNSTORE_QUERY_SNAPSHOT", "1") != "0" and getattr(repo, "path", None) is not None


def _identity(repo: Any) -> int | None:
    try:
        return os.stat(Path(repo.path) / "data.mdb").st_ino
    except OSError:
        return None


def _part_dir(repo: Any, half: str, version: int) -> Path | None:
    ino = _identity(repo)
    return None if ino is None else Path(repo.path) / DIRNAME / f"{half}-{ino}-{version}"


# -- encoding -------------------------------------------------------------------------
def _write_part(final: Path, meta: dict, arrays: dict) -> None:
    root = final.parent
    root.mkdir(exist_ok=True)
    tmp = root / f"tmp-{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        offsets = {}
        pos = 0
        with open(tmp / "arrays.bin", "wb") as f:
            for name, arr in arrays.items():
                arr = np.ascontiguousarray(arr)
                pad = -pos % _ALIGN
                f.write(b"\0" * pad)
                pos += pad
                # A byte view, not tobytes(): no copy, and write() and crc32() release
                # the GIL on it, so the query that scheduled this write is not held up.
                raw = memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else b""
                f.write(raw)
                offsets[name] = (pos, arr.dtype.str, list(arr.shape), zlib.crc32(raw))
                pos += len(raw)
        meta = dict(meta, format=FORMAT, arrays=offsets, size=pos)
        with open(tmp / "meta.msgpack", "wb") as f:
            f.write(msgpack.packb(meta, use_bin_type=True))
        try:
            os.rename(tmp, final)
        except OSError:  # another process wrote the same snapshot first
            shutil.rmtree(tmp, ignore_errors=True)
            return
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prefix = final.name.split("-", 1)[0] + "-"
    for other in root.iterdir():  # older halves, and temporary leftovers of crashed writers
        stale_tmp = other.name.startswith("tmp-") and time.time() - _mtime(other) > 600
        if stale_tmp:
            shutil.rmtree(other, ignore_errors=True)
        elif other.name.startswith(prefix) and other != final:
            _discard(other)


def _discard(part: Path) -> None:
    """Remove a snapshot half so that no reader ever sees it half-deleted: renamed to a
    ``tmp-`` name first (atomic; readers and check() skip those), then deleted."""
    dead = part.with_name(f"tmp-dead-{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}")
    try:
        os.rename(part, dead)
    except OSError:
        return  # already gone (another process discarded it)
    shutil.rmtree(dead, ignore_errors=True)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return time.time()


class _OtherFormat(ValueError):
    """A half written by another version of runstore: unused and replaced, not damaged."""


def _read_part(path: Path, verify: bool = False) -> tuple[dict, dict]:
    """(meta, arrays) of a snapshot half; raises ValueError/OSError when damaged."""
    with open(path / "meta.msgpack", "rb") as f:
        meta = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
    if meta.get("format") != FORMAT:
        raise _OtherFormat(f"snapshot format {meta.get('format')!r}")
    size = os.stat(path / "arrays.bin").st_size
    if size != meta["size"]:
        raise ValueError(f"arrays.bin is {size} bytes, expected {meta['size']}")
    buf = np.memmap(path / "arrays.bin", dtype=np.uint8, mode="r") if size else np.empty(0, np.uint8)
    arrays = {}
    for name, (off, dtype, shape, crc) in meta["arrays"].items():
        dt = np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        arr = np.frombuffer(buf, dtype=dt, count=count, offset=off).reshape(shape)
        if verify and zlib.crc32(arr.tobytes()) != crc:
            raise ValueError(f"array {name} does not match its checksum")
        arrays[name] = arr
    return meta, arrays


def _col_encode(col: Column, key: str, arrays: dict) -> dict:
    info: dict = {"n": col.n, "key": key}
    for attr in _COL_ARRAYS:
        arr = getattr(col, attr)
        if arr is not None:
            arrays[f"{key}.{attr}"] = arr
            info.setdefault("have", []).append(attr)
    if col.cats is not None:
        info["cats"] = list(col.cats)
    if col.obj is not None:
        idx = np.flatnonzero(col.obj_mask)
        info["obj"] = [idx.tolist(), [col.obj[i] for i in idx.tolist()]]
    return info


def _col_decode(info: dict, key: str, arrays: dict) -> Column:
    col = Column(info["n"])
    for attr in info.get("have", ()):
        setattr(col, attr, arrays[f"{key}.{attr}"])
    if "cats" in info:
        cats = np.empty(len(info["cats"]), dtype=object)
        cats[:] = info["cats"]
        col.cats = cats
    if "obj" in info:
        obj = np.empty(col.n, dtype=object)
        for i, v in zip(*info["obj"]):
            obj[i] = v
        col.obj = obj
    return col


# -- the two halves -------------------------------------------------------------------
def save_runs(repo: Any, table: Any) -> None:
    """Write every attribute and every leaf param column of ``table``."""
    from .tables import RUN_ATTRS

    target = _part_dir(repo, "runs", table.version)
    if target is None or (target.exists() and load_runs(repo, table.version) is not None):
        return
    _discard(target)  # damaged or of an older format: rewritten
    arrays: dict = {}
    cols = {}
    for name in RUN_ATTRS:
        if name not in ("duration", "id"):  # "id" is made from the raw ids when used
            cols["attr\0" + name] = _col_encode(table.attr(name), f"a{len(cols)}", arrays)
    paths = table.param_paths()
    for path in paths:
        cols["param\0" + "\0".join(map(str, path))] = _col_encode(table.param(path), f"p{len(cols)}", arrays)
    # Each column's non-array part is packed on its own, unpacked when a query first uses it.
    cols = {k: msgpack.packb(info, use_bin_type=True) for k, info in cols.items()}
    # Raw bytes (uint8), not dtype "S12": NumPy strips trailing zero bytes from "S" strings.
    arrays["ids"] = table.raw_ids
    meta = {"n": table.n, "paths": [list(p) for p in paths], "columns": cols}
    _write_part(target, meta, arrays)


def load_runs(repo: Any, version: int) -> tuple | None:
    """(ids, {column key: loader}, param paths) of a fresh runs half, or None."""
    target = _part_dir(repo, "runs", version)
    if target is None or not target.exists():
        return None
    try:
        meta, arrays = _read_part(target)
    except (OSError, ValueError, KeyError, TypeError, msgpack.UnpackException):
        return None  # damaged: ignored here, rebuilt after the scan, reported by check()
    cols = {}
    for k, packed in meta["columns"].items():
        kind, _, rest = k.partition("\0")
        key = ("attr", rest) if kind == "attr" else ("param", tuple(rest.split("\0")))
        cols[key] = (packed, arrays)
    if len(arrays["ids"]) != meta["n"] * 12:
        return None
    return arrays["ids"], cols, [tuple(p) for p in meta["paths"]]


def decode_column(entry: tuple) -> Column:
    packed, arrays = entry
    info = msgpack.unpackb(packed, raw=False, strict_map_key=False)
    return _col_decode(info, info["key"], arrays)


decode_ids = runkeys.decode_ids


def save_seqs(repo: Any, base: Any) -> None:
    target = _part_dir(repo, "seqs", base.version)
    if target is None or (target.exists() and load_seqs(repo, base.version) is not None):
        return
    _discard(target)
    arrays = {k: v for k, v in base.data.items() if isinstance(v, np.ndarray)}
    arrays["run_keys.raw"] = base.key_raw  # 12 bytes per run, mapped by the next process
    meta = {k: v for k, v in base.data.items() if not isinstance(v, np.ndarray) and k != "run_keys"}
    meta["extras"] = {int(k): v for k, v in meta.get("extras", {}).items()}
    _write_part(target, meta, arrays)


def load_seqs(repo: Any, version: int) -> dict | None:
    target = _part_dir(repo, "seqs", version)
    if target is None or not target.exists():
        return None
    try:
        meta, arrays = _read_part(target)
        data = {k: v for k, v in meta.items() if k not in ("format", "arrays", "size")}
        data.update(arrays)
        keys = arrays["run_keys.raw"]
        if len({len(v) for k, v in arrays.items() if k != "run_keys.raw"}) > 1:
            raise ValueError("arrays of different lengths")
        if len(keys) % runkeys.KEY_BYTES or (len(data["run_of"]) and (
                int(data["run_of"].max()) >= len(keys) // runkeys.KEY_BYTES or int(data["run_of"].min()) < 0)):
            raise ValueError("run codes outside the run ids")
        return data
    except (OSError, ValueError, KeyError, TypeError, msgpack.UnpackException):
        return None


def load_older_seqs(repo: Any, version: int) -> tuple[int, dict] | None:
    """(version, data) of the newest readable seqs half older than ``version`` (of
    the same data file), for an incremental refresh; None when there is none."""
    return _load_older(repo, "seqs", version, load_seqs)


def load_older_runs(repo: Any, version: int) -> tuple[int, tuple] | None:
    """(version, what load_runs gives) of the newest readable runs half older than
    ``version``, for an incremental refresh; None when there is none."""
    return _load_older(repo, "runs", version, load_runs)


def _load_older(repo: Any, half: str, version: int, load: Any) -> tuple[int, Any] | None:
    ino = _identity(repo)
    root = Path(repo.path) / DIRNAME
    if ino is None:
        return None
    prefix = f"{half}-{ino}-"
    try:
        names = [p.name for p in root.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return None
    found = sorted((int(n[len(prefix):]) for n in names if n[len(prefix):].isdigit()), reverse=True)
    for v in found:
        if v < version:
            data = load(repo, v)
            if data is not None:
                return v, data
    return None


def writable(repo: Any) -> bool:
    """Whether this process may write a snapshot: never for ``Repo(path, readonly=True)``
    (read-only commands never write), nor into a directory it cannot write."""
    return not getattr(repo, "readonly", False) and os.access(repo.path, os.W_OK)


def schedule(fn: Any, *args: Any) -> None:
    """Run ``fn(*args)`` in a background thread (one at a time); errors are dropped:
    a snapshot that cannot be written (read-only directory, full disk) is simply absent."""

    def work() -> None:
        with _writing:
            try:
                fn(*args)
            except Exception:  # a cache: never an error for the query that triggered it
                pass

    t = threading.Thread(target=work, name="runstore-query-snapshot", daemon=True)
    _pending.append(t)
    t.start()


def wait(timeout: float = 30.0) -> None:
    """Wait for snapshot writes in flight (tests, and interpreter exit)."""
    end = time.monotonic() + timeout
    while _pending:
        t = _pending.pop()
        t.join(max(0.0, end - time.monotonic()))


atexit.register(wait, 10.0)  # a short-lived process still leaves its snapshot behind


def check(repo: Any) -> list[str]:
    """Problems of the snapshot halves on disk (damage only: a stale one is just unused)."""
    root = Path(repo.path) / DIRNAME
    problems: list[str] = []
    try:
        parts = sorted(root.iterdir()) if root.is_dir() else []
    except OSError as exc:  # check() never raises
        return [f"query snapshot folder {root} cannot be read ({exc})"]
    for part in parts:
        if part.name.startswith("tmp-"):
            continue
        try:
            _read_part(part, verify=True)
        except (OSError, ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
            if isinstance(exc, FileNotFoundError) and not part.exists():
                continue  # replaced by a newer snapshot while we looked
            if isinstance(exc, _OtherFormat):
                continue  # not damage: replaced by the next query that scans
            problems.append(f"query snapshot {part.name} is damaged ({exc}); it is ignored and rebuilt "
                            f"by the next query (or delete {part})")
    return problems


def missing_param(paths: list, path: tuple) -> bool:
    """True when no run can have ``path``: it is unrelated to every leaf path
    (not a leaf, not inside a leaf that may be a list, not a subtree)."""
    strs = tuple(map(str, path))
    for leaf in paths:
        leaf = tuple(map(str, leaf))
        n = min(len(leaf), len(strs))
        if leaf[:n] == strs[:n]:
            return False
    return True

