"""Queries through a server: evaluated there, shipped as Arrow, analysed here.

``remote_repo.query(text)`` sends the query as a DoGet ticket.  The server
evaluates it with the public API (``repo.query`` / ``repo.query_sequences``) and
answers with the ids of the matches and its repository's version numbers, as
an Arrow table.  The client keeps a :class:`Mirror`: the run rows (record and
params) and sequence summaries the query layer scans from a local repository,
fetched from the server (Arrow again) only when the version numbers moved, so
a repeated query costs one round trip.  The RunCollection / SequenceCollection
is then built over the mirror by the same code a local query uses:
``to_arrow`` / pandas / polars / NumPy, ``filter``, ``sort``, ``group_by``,
``align``, ``downsample`` give what they give locally, and points come from the
server (DoGet, one record batch per sequence) only when a collection reads them.
"""

from __future__ import annotations

import json
import threading
import warnings
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

from ..query.vectors import copy_tree
from ..tracking import replica as _replica, values as _values
from ..errors import QueryWarning, RepositoryError, RunstoreError
from . import _protocol as P

POINTS_SCHEMA = pa.schema([("k", pa.int32()), ("step", pa.int64()), ("value", pa.float64()),
                           ("epoch", pa.float64()), ("time", pa.float64())])


# -- server side ----------------------------------------------------------------------------
def matches(repo: Any, kind: str, text: str | None) -> flight.RecordBatchStream:
    """The ids of what ``text`` matches, with the versions and the query's warnings as metadata."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", QueryWarning)
        if kind == "runs":
            arrays = [P.strings(repo.query(text).ids)]
            names = ["run_id"]
        else:
            keys = repo.query_sequences(text).keys
            arrays = [P.strings([k[0] for k in keys]), P.strings([k[1] for k in keys]),
                      P.binary([P.pack(k[2]) for k in keys])]
            names = ["run_id", "name", "context"]
    # Read after the query: a mirror at least this new holds every id it matched.
    meta = {"versions": json.dumps(_replica.versions(repo)),
            "warnings": json.dumps([str(w.message) for w in caught if issubclass(w.category, QueryWarning)])}
    return flight.RecordBatchStream(pa.Table.from_arrays(arrays, names=names).replace_schema_metadata(meta))


def everything(repo: Any, kind: str) -> flight.RecordBatchStream:
    """Every run row (``all_runs``) or sequence summary (``all_seqs``), stamped with the
    versions read before the scan (a commit landing meanwhile is fetched next time)."""
    stamp = json.dumps(_replica.versions(repo))
    if kind == "all_runs":
        rows = _replica.scan_runs(repo)
        table = pa.Table.from_arrays([P.strings([r[0] for r in rows]), P.binary([P.pack([r[1], r[2]]) for r in rows])],
                                     names=["run_id", "row"])
    else:
        rows = _replica.scan_sequences(repo)
        table = pa.Table.from_arrays([P.strings([r[0] for r in rows]),
                                      P.numeric(np.array([r[1] for r in rows], dtype=np.int64), pa.int64()),
                                      P.binary([P.pack(r[2]) for r in rows])], names=["run_id", "seq_id", "summary"])
    return flight.RecordBatchStream(table.replace_schema_metadata({"versions": stamp}))


def points(repo: Any, keys: list[tuple[str, int]]) -> flight.GeneratorStream:
    def batches():
        # Sequences are read a group at a time (one read transaction, one cursor each:
        # storage/bulk.py) and sent in record batches of about a million points: a big
        # selection streams instead of sitting in memory twice, and a thousand short
        # sequences are not a thousand tiny batches. A group starts at 64 sequences and
        # grows while its points stay few (short runs), down again after a big one.
        pending: list = []
        size = 0
        start, group = 0, 64
        while start < len(keys):
            cols, offsets = _replica.read_columns(repo, keys[start:start + group])
            n = len(offsets) - 1
            k = np.repeat(np.arange(start, start + n, dtype=np.int32), np.diff(offsets))
            pending.append((k, cols))
            size += len(k)
            start += n
            group = 64 if len(k) >= 250_000 else min(4 * group, 16_384)
            if size >= 1_000_000:
                yield _batch(pending)
                pending, size = [], 0
        if pending or not keys:
            yield _batch(pending)

    return flight.GeneratorStream(POINTS_SCHEMA, batches())


def _batch(parts: list) -> pa.RecordBatch:
    """One record batch of (k, columns) parts: k the sequence number of every point."""
    k = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32)
    cols = [np.concatenate([c[j] for _, c in parts]) if parts else np.zeros(0) for j in range(4)]
    return pa.RecordBatch.from_arrays(
        [P.numeric(k, pa.int32())] + [P.numeric(col, typ) for col, typ in
                                      zip(cols, (pa.int64(), pa.float64(), pa.float64(), pa.float64()))],
        schema=POINTS_SCHEMA)


# -- client side ----------------------------------------------------------------------------
class _NoStorage(RunstoreError, AttributeError):
    """What the mirror says when asked for local storage it does not have (an
    AttributeError too: the query layer probes for an environment with getattr)."""


class Mirror:
    """The server repository's rows, as the query layer's scan contract wants them
    (see the module docstring).  One per RemoteRepo; its column cache lives on it."""

    path = None      # no persisted query snapshot, no files
    readonly = True

    def __init__(self, remote: Any) -> None:
        self.remote = remote
        self.versions = (0, 0)
        self._lock = threading.Lock()
        self._runs: tuple[int, list] | None = None   # (runs version, rows)
        self._seqs: tuple[int, list, dict] | None = None  # (seqs version, rows, key -> base row)
        self._by_run: tuple[list, dict] | None = None       # (rows, run id -> their row numbers)

    @property
    def _env(self) -> Any:
        raise _NoStorage(f"{self.remote.url} is a remote repository: this needs the repository's files "
                         "(run it on the server's host, against the directory it serves)")

    @property
    def url(self) -> str:
        return self.remote.url

    def __repr__(self) -> str:
        return repr(self.remote)

    def __eq__(self, other: object) -> bool:
        return other is self or other == self.remote

    def __hash__(self) -> int:
        return hash(self.remote)

    # -- the scan contract of runstore.tracking.repo.Repo --------------------------------------------
    def _versions(self) -> tuple[int, int]:
        return self.versions

    def _scan_runs(self) -> list[tuple[str, dict, dict]]:
        with self._lock:
            if self._runs is None or self._runs[0] != self.versions[0]:
                table = self.remote._get({"q": "all_runs"})
                rows = [(run_id, *P.unpack(raw)) for run_id, raw in
                        zip(table.column("run_id").to_pylist(), table.column("row").to_pylist())]
                self._runs = (self.versions[0], rows)
            rows = self._runs[1]
        return [(run_id, dict(record), copy_tree(params)) for run_id, record, params in rows]

    def _seq_rows(self) -> tuple[list, dict]:
        with self._lock:
            if self._seqs is None or self._seqs[0] != self.versions[1]:
                table = self.remote._get({"q": "all_seqs"})
                rows = [(run_id, int(seq_id), P.unpack(raw)) for run_id, seq_id, raw in zip(
                    table.column("run_id").to_pylist(), table.column("seq_id").to_pylist(),
                    table.column("summary").to_pylist())]
                index = {(r[0], r[2]["name"], _values.freeze(r[2]["context"])): i for i, r in enumerate(rows)}
                self._seqs = (self.versions[1], rows, index)
            return self._seqs[1], self._seqs[2]

    def refresh(self) -> tuple[int, int]:
        """Ask the server whether its data moved since the last query (one round trip)."""
        try:
            versions = tuple(self.remote._call("versions", {})["versions"])
        except (RunstoreError, KeyError, flight.FlightError):  # a server without the action
            return self.versions
        with self._lock:
            self.versions = (max(self.versions[0], versions[0]), max(self.versions[1], versions[1]))
            return self.versions

    def _run_sequences(self, run_id: str) -> list[tuple[int, dict]]:
        """One run's (seq id, summary) from the mirrored summaries, in creation order."""
        rows, _ = self._seq_rows()
        by_run = self._by_run
        if by_run is None or by_run[0] is not rows:
            index: dict = {}
            for i, row in enumerate(rows):
                index.setdefault(row[0], []).append(i)
            by_run = self._by_run = (rows, index)
        return [(rows[i][1], dict(rows[i][2])) for i in by_run[1].get(run_id, ())]

    def _read_part(self, run_id: str, seq_id: int, work: Any) -> Any:
        return _replica.read_part(self._read_sequence(run_id, seq_id), work)

    def _iter_sequences(self):
        for run_id, seq_id, summary in self._seq_rows()[0]:
            yield run_id, seq_id, dict(summary)

    def _scan_sequences(self) -> list[tuple[str, int, dict]]:
        return list(self._iter_sequences())

    def _read_sequence(self, run_id: str, seq_id: int) -> tuple:
        return self._read_sequences([(run_id, seq_id)])[0]

    def _read_sequences(self, keys: list[tuple[str, int]]) -> list[tuple]:
        return read_points(self.remote, keys)

    def _read_columns(self, keys: list[tuple[str, int]]) -> tuple[tuple, np.ndarray]:
        return read_columns(self.remote, keys)

    def _sequence_view(self, run_id: str, seq_id: int, summary: dict) -> Any:
        from ..tracking.sequence import Sequence

        return Sequence._from_summary(self, run_id, seq_id, summary)

    # -- what run views ask of their repository ---------------------------------------------
    def query(self, text: str | None = None) -> Any:
        return self.remote.query(text)

    def query_sequences(self, text: str | None = None) -> Any:
        return self.remote.query_sequences(text)

    def get_run(self, run: str) -> Any:
        return self.remote.get_run(run)

    # -- queries ---------------------------------------------------------------------------
    def _ask(self, kind: str, text: str | None) -> pa.Table:
        table = self.remote._get({"q": kind, "query": text})
        meta = table.schema.metadata or {}
        versions = tuple(json.loads(meta[b"versions"]))
        with self._lock:
            self.versions = (max(self.versions[0], versions[0]), max(self.versions[1], versions[1]))
        for message in json.loads(meta.get(b"warnings", b"[]")):
            warnings.warn(message, QueryWarning, stacklevel=4)
        return table

    def runs(self, text: str | None) -> Any:
        from ..analysis.runframe import Source
        from ..analysis.collections import RunCollection
        from ..query.tables import cache_for

        ids = self._ask("runs", text).column("run_id").to_pylist()
        table = cache_for(self).runs()
        where = table.index
        rows = np.array([where[i] for i in ids if i in where], dtype=np.int64)
        return RunCollection._from(Source(table, self), rows)

    def sequences(self, text: str | None) -> Any:
        from ..analysis.collections import SequenceCollection
        from ..query.tables import cache_for

        answer = self._ask("sequences", text)
        runs, seqs = cache_for(self).tables(True)
        _, index = self._seq_rows()
        base = [index.get((r, n, _values.freeze(P.unpack(c)))) for r, n, c in zip(
            answer.column("run_id").to_pylist(), answer.column("name").to_pylist(),
            answer.column("context").to_pylist())]
        base_rows = np.array([b for b in base if b is not None], dtype=np.int64)
        pos = np.searchsorted(seqs.real_rows, base_rows)
        ok = (pos < len(seqs.real_rows)) & (seqs.real_rows[np.minimum(pos, len(seqs.real_rows) - 1)] == base_rows)
        return SequenceCollection(self, seqs, pos[ok])


def read_columns(remote: Any, keys: list[tuple[str, int]]) -> tuple[tuple, np.ndarray]:
    """The points of ``keys`` in one request, as ``Repo._read_columns`` gives them: four
    flat columns (sequence after sequence, as the server sends them) and offsets."""
    if not keys:
        return (np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0)), np.zeros(1, np.int64)
    table = remote._get({"q": "read", "keys": [[r, int(s)] for r, s in keys]})
    k = P.to_numpy(table.column("k"), np.int32)
    cols = tuple(np.ascontiguousarray(P.to_numpy(table.column(name), dtype)) for name, dtype in
                 (("step", np.int64), ("value", np.float64), ("epoch", np.float64), ("time", np.float64)))
    if len(k) and (bool(np.any(k[1:] < k[:-1])) or int(k[0]) < 0 or int(k[-1]) >= len(keys)):
        # pragma: no cover - a server of another version
        raise RepositoryError("the server answered a points request out of order")
    offsets = np.searchsorted(k, np.arange(len(keys) + 1), side="left").astype(np.int64)
    return cols, offsets


def read_points(remote: Any, keys: list[tuple[str, int]]) -> list[tuple]:
    if not keys:
        return []
    cols, offsets = read_columns(remote, keys)
    bounds = offsets.tolist()
    return [tuple(np.ascontiguousarray(c[lo:hi]) for c in cols) for lo, hi in zip(bounds, bounds[1:])]
