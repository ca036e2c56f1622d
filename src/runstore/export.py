"""Export runs and sequences as Parquet or CSV files that DuckDB, Polars and Spark read directly."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import RunstoreError

if TYPE_CHECKING:
    from .repo import Repo

__all__ = ["ExportError", "ExportResult", "export", "flat_table", "flatten_structs"]


class ExportError(RunstoreError, OSError):
    """The export destination cannot be written (not a folder, or an earlier export without overwrite)."""


class ExportResult(NamedTuple):
    runs: int
    sequences: int
    points: int


def flatten_structs(table):
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return table


def flat_table(table):
    """Structs become dotted columns, lists/maps JSON strings: what CSV can hold."""
    table = flatten_structs(table)
    columns = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind) or pa.types.is_null(kind):
            values = [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()]
            column = pa.array(values, type=pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _partition_value(value: str) -> str:
    # Hive partition values are path segments: escape what a path cannot hold
    # (Spark escapes the same way; DuckDB and Polars read the escaped text).
    from urllib.parse import quote

    return quote(value, safe=" -_.,+@()")


def export(repo: Repo, dest: str | os.PathLike, query: str | None = None, *, format: str = "parquet",
           partition_by: str = "run", overwrite: bool = False,
           on_progress: Callable[[int, int], None] | None = None) -> ExportResult:
    """Write the runs matching ``query`` and their sequences under ``dest``.

    ``dest/runs.<format>`` has one row per run; the sequences, in long form, go
    to ``dest/sequences/run_id=<id>/part-0.<format>`` (``partition_by="run"``)
    or ``dest/sequences/experiment=<name>/<id>.<format>``: hive partitioning,
    which DuckDB, Polars, pyarrow and Spark discover by themselves.

    The sequences are read once (``SequenceCollection.to_arrow()``) so every
    file shares one schema: readers need no schema merging.
    ``on_progress(done, total)`` is called after each file.
    """
    if format not in ("parquet", "csv"):
        raise ValueError(f"format must be 'parquet' or 'csv', got {format!r}")
    if partition_by not in ("run", "experiment"):
        raise ValueError(f"partition_by must be 'run' or 'experiment', got {partition_by!r}")
    fmt = format
    on_progress = on_progress or (lambda done, total: None)
    dest = Path(dest)
    runs = repo.query(query)
    sequences = repo.query_sequences(query)
    runs_file = dest / f"runs.{fmt}"
    seq_dir = dest / "sequences"
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"{dest} exists and is not a directory; choose another destination")
    earlier = [p for p in (dest / "runs.parquet", dest / "runs.csv", seq_dir) if p.exists()]
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

    write(runs.to_arrow(), runs_file)
    table = sequences.to_arrow()
    if table.num_rows == 0:
        on_progress(0, 0)
        return ExportResult(len(runs), len(sequences), 0)
    # Group rows by run: a stable sort on the run id keeps each sequence's points in order.
    run_ids = pc.cast(table["run_id"], pa.string()).to_numpy(zero_copy_only=False)
    order = np.argsort(run_ids, kind="stable")
    table = table.take(pa.array(order))
    sorted_ids = run_ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    bounds = list(zip(starts.tolist(), np.r_[starts[1:], len(sorted_ids)].tolist()))
    experiment_of = dict(zip(runs.ids, runs.to_list("experiment", default=None)))
    total = len(bounds)
    for done, (lo, hi) in enumerate(bounds, start=1):
        run_id = str(sorted_ids[lo])
        part = table.slice(lo, hi - lo)
        if partition_by == "run":
            # Hive convention: the partition column lives in the path, not in the file.
            path = seq_dir / f"run_id={run_id}" / f"part-0.{fmt}"
            part = part.drop_columns(["run_id"])
        else:
            experiment = experiment_of.get(run_id) or "default"
            path = seq_dir / f"experiment={_partition_value(experiment)}" / f"{run_id}.{fmt}"
        write(part, path)
        on_progress(done, total)
    return ExportResult(len(runs), len(sequences), table.num_rows)


