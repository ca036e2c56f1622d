"""SQL over a repository: DuckDB reading the repository's Arrow views in place.

>>> repo.sql("SELECT name, last FROM sequences WHERE name = 'loss' ORDER BY last LIMIT 3")  # doctest: +SKIP

Nothing is copied into a database: the small tables (runs, params, sequences,
artifacts) are Arrow tables built from one scan, and ``points`` is a dataset whose
fragments are made from a sequence's blocks only when a query reaches them (see
``sql_tables``). The tables and views are listed in docs/query.md ("SQL").

A connection is kept per ``Repo`` object and rebuilt when the repository changed
(any commit by any process bumps the version counters the query layer uses too),
so a query always sees what was committed before it started. DuckDB is an optional
dependency: ``pip install 'runstore[sql]'``.
"""

from __future__ import annotations

import datetime
import threading
import weakref
from typing import Any, Iterator, Sequence

from ..errors import SQLError

__all__ = ["SQLResult", "sql", "TABLES", "VIEWS"]

#: Tables every connection has, with one line each (``runstore sql --tables`` prints them).
TABLES = {
    "runs": "one row per run: run_id, name, experiment, description, status, created_at, ended_at, "
            "duration, parent, archived, tags, hostname, pid, kind",
    "params": "one row per param leaf: run_id, key (dotted path), type, value_int, value_float, "
              "value_num, value_str, value_bool, value_json",
    "sequences": "one row per sequence: run_id, name, context (JSON), type, count, first_step, last_step, "
                 "last, min, max, first_timestamp, last_timestamp",
    "points": "one row per tracked point: run_id, name, context (JSON), step, epoch, timestamp, value "
              "(read lazily, only the sequences a query's filters reach)",
    "artifacts": "one row per artifact: run_id, name, kind, path, size, created_at, level, epoch, linked",
}

# The Experiment Manager's hierarchy (docs/experiments.md): an experiment record run,
# its trials (parent runs) and their repeats (trial runs), and the epochs of a repeat.
VIEWS = {
    "experiments": """
        SELECT r.run_id, r.experiment AS name, p_id.value_json AS id,
               coalesce(p_desc.value_str, r.description) AS "desc", r.status,
               r.created_at, r.ended_at, r.duration
        FROM runs r
        LEFT JOIN params p_id ON p_id.run_id = r.run_id AND p_id.key = 'yaml_id'
        LEFT JOIN params p_desc ON p_desc.run_id = r.run_id AND p_desc.key = 'desc'
        WHERE r.kind = 'experiment' AND NOT r.archived""",
    "trials": """
        SELECT r.run_id, r.parent AS experiment_id, r.experiment, r.name, p_id.value_json AS id,
               r.status, r.created_at, r.ended_at, r.duration
        FROM runs r
        LEFT JOIN params p_id ON p_id.run_id = r.run_id AND p_id.key = 'yaml_id'
        WHERE r.kind = 'trial' AND NOT r.archived""",
    "trial_runs": """
        SELECT r.run_id, r.parent AS trial_id, r.experiment, p_trial.value_str AS trial,
               p_rep.value_int AS "repeat", p_seed.value_int AS seed, p_att.value_int AS attempt,
               r.status, r.created_at, r.ended_at, r.duration
        FROM runs r
        LEFT JOIN params p_trial ON p_trial.run_id = r.run_id AND p_trial.key = 'trial'
        LEFT JOIN params p_rep ON p_rep.run_id = r.run_id AND p_rep.key = 'repeat'
        LEFT JOIN params p_seed ON p_seed.run_id = r.run_id AND p_seed.key = 'seed'
        LEFT JOIN params p_att ON p_att.run_id = r.run_id AND p_att.key = 'attempt'
        WHERE r.kind = 'repeat' AND NOT r.archived""",
    "results": """
        SELECT run_id, substr(key, 9) AS metric, value_num AS value
        FROM params WHERE starts_with(key, 'results.') AND value_num IS NOT NULL""",
    "epochs": """
        SELECT run_id AS trial_run_id, CAST(epoch AS BIGINT) AS idx, min(timestamp) AS time,
               max(timestamp) AS end_time, count(*) AS points
        FROM points WHERE epoch IS NOT NULL GROUP BY run_id, CAST(epoch AS BIGINT)""",
}


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:
        raise ImportError(
            "repo.sql needs DuckDB, which is not installed: pip install 'runstore[sql]'"
        ) from None
    return duckdb


class _Connection:
    """One DuckDB connection over one repository, kept current as the repository changes.

    Each part is rebuilt only when what it shows changed: the run tables when runs or
    params were committed, the sequences table when points were, the points dataset
    only when sequences were added or removed (its fragments read blocks when a query
    runs, so new points need no rebuild). A live training run therefore costs a
    query one sequence scan, not a rebuild of everything."""

    def __init__(self, repo: Any) -> None:
        self.repo = repo
        self.lock = threading.Lock()
        self.version: tuple | None = None
        self.seq_keys: tuple | None = None
        self.con: Any = None
        self.files: Any = None

    def current(self) -> Any:
        from . import sql_tables as _sql_tables

        version = self.repo._versions()
        if self.con is not None and version == self.version:
            return self.con
        if self.con is None:
            self.con = _duckdb().connect(":memory:")
            self.files = _sql_tables._BlockFiles(self.repo)
        con, old = self.con, self.version
        runs_changed = old is None or version[0] != old[0]
        seqs_changed = old is None or version[1] != old[1]
        if runs_changed:
            runs = self.repo._scan_runs()
            for name, table in _sql_tables.build_tables(runs, []).items():
                if name != "sequences":
                    con.register(name, table)
        if seqs_changed or runs_changed:
            seqs = self.repo._scan_sequences()
            con.register("sequences", _sql_tables.build_tables([], seqs)["sequences"])
            self.files.forget()
            keys = tuple((run_id, seq_id) for run_id, seq_id, _ in seqs)
            if keys != self.seq_keys:
                con.register("points", _sql_tables.points_dataset(self.repo, seqs, self.files))
                self.seq_keys = keys
        if old is None:
            for name, body in VIEWS.items():
                con.execute(f"CREATE VIEW {name} AS {body}")
        self.version = version
        return con

    def close(self) -> None:
        if self.con is not None:
            con, self.con = self.con, None
            self.version = self.seq_keys = None
            try:
                con.close()
            except Exception:  # noqa: BLE001 - closing a connection that failed to build
                pass


_connections: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_connections_lock = threading.Lock()


def _connection(repo: Any) -> _Connection:
    with _connections_lock:
        conn = _connections.get(repo)
        if conn is None:
            conn = _connections[repo] = _Connection(repo)
            # DuckDB complains about leaked objects when a connection outlives the
            # interpreter; close it with the Repo (or at exit).
            weakref.finalize(repo, conn.close)
        return conn


def sql(repo: Any, query: str, params: Sequence[Any] | dict | None = None) -> SQLResult:
    """Run ``query`` (DuckDB SQL) over ``repo``; see :meth:`runstore.Repo.sql`."""
    if not isinstance(query, str) or not query.strip():
        raise SQLError("repo.sql needs the text of a query, e.g. repo.sql(\"SELECT * FROM runs\")")
    conn = _connection(repo)
    duckdb = _duckdb()
    with conn.lock:
        con = conn.current()
        try:
            relation = con.sql(query, params=params) if params is not None else con.sql(query)
            table = _to_arrow(relation) if relation is not None else None  # None: not a SELECT
        except duckdb.Error as exc:
            raise SQLError(f"{_first_line(exc)}\n  in: {query.strip()}\n"
                           f"  tables: {', '.join(TABLES)}; views: {', '.join(VIEWS)} "
                           "(columns: docs/query.md, or SELECT * FROM <table> LIMIT 0)") from None
    return SQLResult(table, query)


def _to_arrow(relation: Any) -> Any:
    # DuckDB 2 renamed fetch_arrow_table()/arrow() to to_arrow_table(); accept both.
    fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    return fetch()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if len(text) < 400 else text[:400] + "..."


class SQLResult:
    """The answer of :meth:`runstore.Repo.sql`: an Arrow table with conversions.

    ``to_arrow()``, ``to_pandas()``, ``to_polars()``, ``rows()`` (tuples), ``column(name)``
    (a NumPy array), ``len()``, iteration over row dicts, and a terminal table as its
    ``str``/``print``."""

    def __init__(self, table: Any, query: str) -> None:
        self._table = table
        self.query = query

    def to_arrow(self) -> Any:
        return self._arrow()

    def _arrow(self) -> Any:
        if self._table is None:
            import pyarrow as pa

            return pa.table({})
        return self._table

    def to_pandas(self) -> Any:
        from .collections import _require

        _require("pandas")
        return self._arrow().to_pandas()

    def to_polars(self) -> Any:
        from .collections import _require

        pl = _require("polars")
        return pl.from_arrow(self._arrow())

    def rows(self) -> list[tuple]:
        table = self._arrow()
        columns = [c.to_pylist() for c in table.columns]
        return list(zip(*columns)) if columns else []

    def column(self, name: str) -> Any:
        return self._arrow().column(name).to_numpy(zero_copy_only=False)

    @property
    def columns(self) -> list[str]:
        return list(self._arrow().column_names)

    def __len__(self) -> int:
        return self._arrow().num_rows

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._arrow().to_pylist())

    def __str__(self) -> str:
        return self.text(width=100)

    def text(self, width: int = 100, max_rows: int = 50) -> str:
        """The result as a terminal table ``width`` characters wide."""
        from rich.console import Console

        console = Console(width=width, record=True, file=_Null())
        console.print(self.rich_table(max_rows))
        return console.export_text().rstrip()

    def __repr__(self) -> str:
        return f"<SQLResult {len(self)} rows x {len(self.columns)} columns>\n{self}"

    def rich_table(self, max_rows: int = 50) -> Any:
        """A rich Table of the first ``max_rows`` rows (floats with 6 significant digits)."""
        from rich.table import Table

        table = Table(show_edge=False, pad_edge=False)
        for name in self.columns:
            table.add_column(name, overflow="fold")
        for row in self.rows()[:max_rows]:
            table.add_row(*(_cell(v) for v in row))
        if len(self) > max_rows:
            table.caption = f"{len(self) - max_rows} more rows"
        return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


class _Null:
    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        pass
