"""Export runs and sequences as Parquet or CSV files that DuckDB, Polars and Spark read directly."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import RunstoreError

if TYPE_CHECKING:
    from .tracking.repo import Repo

__all__ = ["ExportError", "ExportResult", "export", "flat_table", "flatten_structs"]


class ExportError(RunstoreError, OSError):
    """The export destination cannot be written (not a folder, or an earlier export without overwrite)."""


class ExportResult(NamedTuple):
    runs: int
    sequences: int
    points: int
    objects: int = 0  # points of object sequences (images, text, ...; see export_objects)


def flatten_structs(table):
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return table


def flat_table(table):
    """Structs become dotted columns, lists/maps JSON strings, times ISO 8601 UTC: what CSV can hold."""
    table = flatten_structs(table)
    columns = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind) or pa.types.is_null(kind):
            values = [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()]
            column = pa.array(values, type=pa.string())
        elif pa.types.is_timestamp(kind):
            column = _iso_utc(column)
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _iso_utc(column):
    """``2026-11-23T04:45:20.123456Z``: one spelling of time in every CSV file."""
    utc = pc.cast(column, pa.timestamp("us", tz="UTC"))
    return pc.binary_join_element_wise(pc.strftime(utc, format="%Y-%m-%dT%H:%M:%S"), pa.scalar("Z"), "")


def _runs_table(table):
    """The runs file: ``run_id`` (the join key, typed as in the points files) first."""
    names = ["run_id" if n == "id" else n for n in table.column_names]
    table = table.rename_columns(names)
    return table.set_column(0, "run_id", pc.cast(table["run_id"], pa.string())) if names[0] == "run_id" else table


def _points_table(table):
    """The points files: ``run_id`` a plain string (as in runs), ``timestamp`` a UTC timestamp."""
    if "run_id" in table.column_names:
        i = table.column_names.index("run_id")
        table = table.set_column(i, "run_id", pc.cast(table["run_id"], pa.string()))
    if "timestamp" in table.column_names and pa.types.is_floating(table.schema.field("timestamp").type):
        i = table.column_names.index("timestamp")
        seconds = table["timestamp"].to_numpy()
        micros = np.round(seconds * 1e6).astype("int64")
        mask = ~np.isfinite(seconds)
        ts = pa.array(micros, type=pa.int64(), mask=mask if mask.any() else None).cast(pa.timestamp("us", tz="UTC"))
        table = table.set_column(i, "timestamp", ts)
    return table


# Files written at once. A file per run costs ~0.5-1 ms of file system and Parquet
# writer work for a few hundred bytes of points; pyarrow's writer and the system calls
# release the GIL, so two writers overlap most of it.
_WRITERS = 2
_WINDOW = 64  # files queued ahead of the one being reported


def _write_all(parts, write: Callable, total: int, on_progress: Callable[[int, int], None]) -> None:
    """``write(table, path)`` for every (table, path) of ``parts``, over ``_WRITERS``
    threads; ``on_progress(done, total)`` in order, from this thread; the first error raised."""
    if _WRITERS < 2 or total < 2:
        for done, (part, path) in enumerate(parts, start=1):
            write(part, path)
            on_progress(done, total)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(_WRITERS) as pool:
        pending: deque = deque()
        done = 0
        try:
            for part, path in parts:
                pending.append(pool.submit(write, part, path))
                if len(pending) >= _WINDOW:
                    pending.popleft().result()
                    done += 1
                    on_progress(done, total)
            while pending:
                pending.popleft().result()
                done += 1
                on_progress(done, total)
        finally:
            for future in pending:  # an error: write nothing more
                future.cancel()


def _run_codes(column) -> tuple[np.ndarray, list[str]]:
    """An int code per row of the (dictionary-encoded) run id column and the run id of
    each code: run ids are compared as integers, not as a string per point."""
    index: dict = {}
    parts = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            names, idx = chunk.dictionary.to_pylist(), chunk.indices.to_numpy(zero_copy_only=False)
        else:  # a plain string column: encode it first
            encoded = pc.dictionary_encode(chunk)
            names, idx = encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False)
        remap = np.array([index.setdefault(v, len(index)) for v in names], np.int64)
        parts.append(remap[idx] if len(names) else np.zeros(len(idx), np.int64))
    codes = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return codes, list(index)


def _partition_value(value: str) -> str:
    # Hive partition values are path segments: escape what a path cannot hold
    # (Spark escapes the same way; DuckDB and Polars read the escaped text).
    from urllib.parse import quote

    return quote(value, safe=" -_.,+@()")


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the filesystem holding ``folder`` takes."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255  # ext4, xfs, btrfs, APFS, NTFS (in UTF-16 units)


def _partition_folder(key: str, value: str, limit: int, taken: dict[str, str]) -> str:
    """``key=<escaped value>``, shortened when longer than ``limit`` bytes.

    A long value keeps its head and gets ``~`` plus a hash of the whole value, so
    two values sharing a long head still get two folders. The escaped text is
    ASCII (one byte per character) and is never cut inside a ``%XX`` escape, so
    readers decode the shortened name like any other; the exact value of each
    row is in ``runs.<format>`` (join on ``run_id``), see docs/cli.md."""
    import hashlib

    folder = full = f"{key}={_partition_value(value)}"
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    width = 8
    while len(folder) > limit or taken.get(folder, value) != value:
        if width > len(digest):  # cannot happen with a limit of more than a few dozen bytes
            raise ExportError(f"cannot name a partition folder for {key}={value[:40]!r}... in {limit} bytes")
        suffix = "~" + digest[:width]
        head = full[: max(limit - len(suffix), len(key) + 1)]
        cut = head.rfind("%", len(head) - 2)  # do not split a %XX escape
        folder = (head[:cut] if cut >= 0 else head) + suffix
        width *= 2
    taken[folder] = value
    return folder


def _check_destination(repo: Repo, dest: str | os.PathLike) -> Path:
    """Refuse a destination that would write into (or wipe part of) the repository."""
    if not str(os.fspath(dest)).strip():
        raise ExportError("the export destination is empty; name a folder, e.g. `runstore export exports/today`")
    path = Path(dest)
    real, repo_real = path.resolve(), Path(repo.path).resolve()  # symlinks resolved
    if real.is_relative_to(repo_real):
        raise ExportError(
            f"the export destination {path} is inside the repository {repo.path}; "
            "export to a folder outside it (nothing was written)"
        )
    if any(repo_real.is_relative_to(real / part) for part in ("sequences", "objects")) or (
            repo_real.parent == real and repo_real.suffix in (".parquet", ".csv")):
        raise ExportError(
            f"the repository {repo.path} is where an export into {path} writes its files; "
            "choose another destination (nothing was written)"
        )
    return path


def export(repo: Repo, dest: str | os.PathLike, query: str | None = None, *, format: str = "parquet",
           partition_by: str = "run", overwrite: bool = False,
           on_progress: Callable[[int, int], None] | None = None) -> ExportResult:
    """Write the runs matching ``query`` and their sequences under ``dest``.

    ``dest/runs.<format>`` has one row per run; the sequences, in long form, go
    to ``dest/sequences/run_id=<id>/part-0.<format>`` (``partition_by="run"``)
    or ``dest/sequences/experiment=<name>/<id>.<format>``: hive partitioning,
    which DuckDB, Polars, pyarrow and Spark discover by themselves. An experiment
    name too long for a folder name is shortened to its head plus ``~<hash>``
    (unique); ``runs.<format>`` holds every run's exact experiment.

    ``dest`` must not be empty nor inside the repository (ExportError, before
    anything is written).

    The sequences are read once (``SequenceCollection.to_arrow()``) so every
    file shares one schema: readers need no schema merging. Object sequences
    (images, audio, figures, arrays) become files under ``dest/objects/`` with an
    index ``dest/objects.<format>``; text and distributions go to
    ``dest/text.<format>`` and ``dest/distributions.<format>`` (see
    :func:`export_objects`).
    ``on_progress(done, total)`` is called after each file.
    """
    if format not in ("parquet", "csv"):
        raise ValueError(f"format must be 'parquet' or 'csv', got {format!r}")
    if partition_by not in ("run", "experiment"):
        raise ValueError(f"partition_by must be 'run' or 'experiment', got {partition_by!r}")
    fmt = format
    on_progress = on_progress or (lambda done, total: None)
    dest = _check_destination(repo, dest)
    runs = repo.query(query)
    sequences = repo.query_sequences(query)
    runs_file = dest / f"runs.{fmt}"
    seq_dir = dest / "sequences"
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"{dest} exists and is not a directory; choose another destination")
    outputs = [dest / f"{stem}.{ext}" for stem in ("runs", "objects", "text", "distributions")
               for ext in ("parquet", "csv")]
    earlier = [p for p in (*outputs, seq_dir, dest / "objects") if p.exists()]
    if earlier and not overwrite:
        raise ExportError(
            f"{dest} already holds an export ({earlier[0].name}); pass overwrite=True (--overwrite) to replace it"
        )
    for path in earlier:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    seq_dir.mkdir(parents=True, exist_ok=True)

    def write(table, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, path)
        else:
            from pyarrow import csv as pacsv

            pacsv.write_csv(flat_table(table), path)

    write(_runs_table(runs.to_arrow()), runs_file)
    objects = 0
    if any(t != "float" for t in sequences.types):  # images, text, ...: files and tables of their own
        objects = export_objects(sequences, dest, write, fmt, _points_table)
        sequences = sequences.of_type("float")
    table = sequences.to_arrow()
    if table.num_rows == 0:
        on_progress(0, 0)
        return ExportResult(len(runs), len(sequences), 0, objects)
    # Group rows by run: a stable sort of the run codes keeps each sequence's points in
    # order, and a selection already grouped by run (the usual case) is not reordered.
    codes, run_names = _run_codes(table["run_id"])
    changes = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    if len(changes) + 1 != len(np.unique(codes)):
        order = np.argsort(codes, kind="stable")
        table = table.take(pa.array(order))
        codes = codes[order]
        changes = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    table = _points_table(table)
    starts = np.r_[0, changes]
    bounds = list(zip(starts.tolist(), np.r_[changes, len(codes)].tolist()))
    experiment_of = dict(zip(runs.ids, runs.to_list("experiment", default=None)))
    total = len(bounds)
    name_max, folders = _name_max(seq_dir), {}

    def parts():
        for lo, hi in bounds:
            run_id = run_names[int(codes[lo])]
            if partition_by == "run":
                # Hive convention: the partition column lives in the path, not in the file.
                # The partition column is in the path (hive) and also in the file, so a file
                # read on its own still says which run it holds; readers unify the two.
                path = seq_dir / f"run_id={run_id}" / f"part-0.{fmt}"
            else:
                experiment = experiment_of.get(run_id) or "default"
                path = seq_dir / _partition_folder("experiment", experiment, name_max, folders) / f"{run_id}.{fmt}"
            yield table.slice(lo, hi - lo), path

    _write_all(parts(), write, total, on_progress)
    return ExportResult(len(runs), len(sequences), table.num_rows, objects)


# -- object sequences (issue 13) ---------------------------------------------------
# ``runstore export`` of object sequences (images, audio, figures, arrays, text, distributions).
#
# Layout under the destination::
#
#     objects/<run_id>/<name>/<context as k=v,...>/<step>.<ext>   one file per point
#     objects.<fmt>        index: run_id, name, context (JSON), step, type, path (relative to dest)
#     text.<fmt>           run_id, name, context, step, epoch, timestamp, text
#     distributions.<fmt>  run_id, name, context, step, epoch, timestamp, counts, bin_edges
#
# Files are the stored bytes as they are (``seq[i].data``): PNG or JPEG images, WAV
# audio, matplotlib figures as PNG (and the SVG beside it, ``<step>.svg``), plotly
# figures as JSON, arrays as ``.npy``. A context is one path segment
# (``subset=val,fold=1``; ``-`` when empty); several points at one step get
# ``<step>-1.<ext>``, ``<step>-2.<ext>``... Sequences are read one at a time, so
# memory holds one sequence's payloads, not the export's.

_FILE_TYPES = ("image", "audio", "figure", "array")


def _segment(text: str, limit: int = 255) -> str:
    """One path segment: escaped, never ``.``/``..``, shortened (head + ``~hash``) past the
    filesystem's name limit; the index file holds the exact name and context."""
    from urllib.parse import quote

    segment = quote(text, safe=" -_.,+@()=") or "-"
    if segment in (".", ".."):
        return segment.replace(".", "%2E")
    if len(segment) > limit:
        import hashlib

        suffix = "~" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        head = segment[: limit - len(suffix)]
        cut = head.rfind("%", len(head) - 2)  # do not split a %XX escape
        segment = (head[:cut] if cut >= 0 else head) + suffix
    return segment


def _context_segment(context: dict, prefix: str = "") -> str:
    parts = []
    for key, value in sorted(context.items()):
        if isinstance(value, dict):
            inner = _context_segment(value, f"{prefix}{key}.")
            if inner != "-":
                parts.append(inner)
        else:
            parts.append(f"{prefix}{key}={value}")
    return ",".join(parts) if parts else "-"


def _ext(typ: str, obj: Any) -> str:
    if typ == "image":
        return "jpg" if obj.format == "jpeg" else "png"
    if typ == "audio":
        return "wav"
    if typ == "figure":
        return "json" if obj.library == "plotly" else "png"
    return "npy"


def export_objects(seqs: Any, dest: Path, write: Callable[[Any, Path], None], fmt: str,
                   points_table: Callable[[Any], Any]) -> int:
    """Write the object sequences of ``seqs`` (a SequenceCollection) under ``dest``; returns the
    number of points written. ``points_table`` types the text/distribution tables as the
    float points are (run_id a string, timestamp a UTC timestamp)."""
    import pyarrow as pa

    index: dict[str, list] = {k: [] for k in ("run_id", "name", "context", "step", "type", "path")}
    limit = _name_max(dest)
    tables: dict[str, dict[str, list]] = {}
    total = 0
    for (run_id, name, context), typ, seq in zip(seqs.keys, seqs.types, seqs):
        if typ == "float":
            continue
        binary = typ in _FILE_TYPES
        part = seq[:]  # the public reading API: steps, epochs, timestamps and the objects
        steps, epochs, times, items = part.steps, part.epochs, part.timestamps, part.values
        total += len(items)
        ctx_json = json.dumps(context, sort_keys=True, default=str)
        if not binary:
            rows = tables.setdefault(typ, {k: [] for k in ("run_id", "name", "context", "step", "epoch",
                                                           "timestamp")})
            rows["run_id"] += [run_id] * len(items)
            rows["name"] += [name] * len(items)
            rows["context"] += [ctx_json] * len(items)
            rows["step"] += steps.tolist()
            rows["epoch"] += [None if e != e else e for e in epochs.tolist()]
            rows["timestamp"] += times.tolist()
            if typ == "text":
                rows.setdefault("text", []).extend(it.text for it in items)
            else:
                rows.setdefault("counts", []).extend(it.counts.tolist() for it in items)
                rows.setdefault("bin_edges", []).extend(it.bin_edges.tolist() for it in items)
            continue
        folder = Path("objects") / _segment(run_id) / _segment(name, limit) / _segment(_context_segment(context), limit)
        (dest / folder).mkdir(parents=True, exist_ok=True)
        seen: dict[int, int] = {}
        for step, obj in zip(steps.tolist(), items):
            k = seen.get(step, 0)
            seen[step] = k + 1
            stem = f"{step}" if k == 0 else f"{step}-{k}"
            rel = folder / f"{stem}.{_ext(typ, obj)}"
            (dest / rel).write_bytes(obj.data)
            if typ == "figure" and obj.svg is not None:
                (dest / folder / f"{stem}.svg").write_bytes(obj.svg)
            index["run_id"].append(run_id)
            index["name"].append(name)
            index["context"].append(ctx_json)
            index["step"].append(step)
            index["type"].append(typ)
            index["path"].append(rel.as_posix())
    if index["path"]:
        write(pa.table({k: pa.array(v, type=pa.int64() if k == "step" else pa.string())
                        for k, v in index.items()}), dest / f"objects.{fmt}")
    for typ, rows in tables.items():
        name = "text" if typ == "text" else "distributions"
        write(points_table(pa.table(rows)), dest / f"{name}.{fmt}")
    return total
