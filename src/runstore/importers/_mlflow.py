"""Import MLflow runs: a SQLite database or a file store (``mlruns/``) read
directly with the standard library, or a tracking server (``http(s)://``)
through ``MlflowClient``.

What maps to what (docs/import.md has the table): experiment name, run name
(``runs.name``, else the ``mlflow.runName`` tag), status, start/end times,
params (typed back to bool/int/float where the text reads so; dotted keys
nested as runstore's own ``log_params`` nests them), tags as ``key=value``
run tags (``mlflow.note.content`` becomes the description,
``mlflow.parentRunId`` the parent), every metric point with its step and
timestamp (NaN from ``is_nan``; the +-1.797e308 MLflow stores for +-inf back to
+-inf), and the artifacts folder copied when it is on this machine.
Deleted runs and experiments are not imported (the summary counts them).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlparse

import numpy as np

from ..errors import ImportSourceError
from ._common import Series, SourceRun, nested_params, typed

_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed", "RUNNING": "running",
           "SCHEDULED": "running"}
_STATUS_NUMBERS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_MAPPED_TAGS = ("mlflow.runName", "mlflow.parentRunId", "mlflow.note.content")
_DBL_MAX = sys.float_info.max


def read_runs(uri: str, experiments: list[str] | None = None,
              client: bool = False) -> tuple[str, list[SourceRun], list[str]]:
    """(the source as recorded on imported runs, the runs, notes about what is not imported).

    ``client=True`` reads any tracking URI through MlflowClient (the path http(s)
    URIs always take; tests run it against a local store)."""
    text = str(uri)
    if text.startswith(("http://", "https://")) or client:
        return text, *_client_runs(text, experiments)
    if text.startswith("sqlite:///"):
        path = Path(unquote(text[len("sqlite:///"):])).expanduser()
        return _sqlite_runs(path, experiments)
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0]
        raise ImportSourceError(
            f"cannot import MLflow from {scheme}:// directly: give sqlite:///path/to/mlflow.db, a file store "
            "folder (mlruns/) or the http(s):// address of an MLflow server (`mlflow server "
            f"--backend-store-uri {scheme}://...` serves this store)")
    path = Path(unquote(urlparse(text).path) if text.startswith("file://") else text).expanduser()
    if path.is_file():
        return _sqlite_runs(path, experiments)
    return _file_store_runs(path, experiments)


# -- SQLite ---------------------------------------------------------------------------

def _sqlite_runs(path: Path, wanted: list[str] | None) -> tuple[str, list[SourceRun], list[str]]:
    if not path.is_file():
        raise ImportSourceError(f"{path} does not exist: give the MLflow database (sqlite:///path/to/mlflow.db)")
    path = path.resolve()
    # Read-only and without creating a journal: the source is never written.
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise ImportSourceError(f"{path} is not an SQLite database ({exc}); give MLflow's mlflow.db") from None
    missing = {"runs", "metrics", "params", "tags", "experiments"} - tables
    if missing:
        raise ImportSourceError(f"{path} is not an MLflow database: it has no {', '.join(sorted(missing))} "
                                "table(s)")
    source = f"sqlite:///{path}"
    notes: list[str] = []
    # Columns added over MLflow's history (runs.name, metrics.step, metrics.is_nan):
    # an older database lacks them, and gets their defaults.
    have = {t: {row[1] for row in db.execute(f"PRAGMA table_info({t})")} for t in ("runs", "metrics")}
    name_col = "name" if "name" in have["runs"] else "NULL"
    step_col = "step" if "step" in have["metrics"] else "0"
    nan_col = "is_nan" if "is_nan" in have["metrics"] else "0"
    exps = {row[0]: (row[1], row[2]) for row in db.execute(
        "SELECT experiment_id, name, lifecycle_stage FROM experiments")}
    _check_wanted(wanted, {name for name, _ in exps.values()}, source)
    counts = {row[0]: row[1:] for row in db.execute(
        "SELECT run_uuid, count(*), max(timestamp) FROM metrics GROUP BY run_uuid")}
    params: dict[str, dict[str, str]] = {}
    for key, value, run_id in db.execute("SELECT key, value, run_uuid FROM params"):
        params.setdefault(run_id, {})[key] = value
    tags: dict[str, dict[str, str]] = {}
    for key, value, run_id in db.execute("SELECT key, value, run_uuid FROM tags"):
        tags.setdefault(run_id, {})[key] = value if value is not None else ""
    runs = []
    deleted = 0
    rows = db.execute(f"SELECT run_uuid, {name_col}, status, start_time, end_time, lifecycle_stage, artifact_uri, "
                      "experiment_id FROM runs ORDER BY start_time, run_uuid").fetchall()
    for run_id, name, status, start, end, stage, artifact_uri, exp_id in rows:
        exp_name, exp_stage = exps.get(exp_id, (str(exp_id), "active"))
        if wanted and exp_name not in wanted:
            continue
        if stage == "deleted" or exp_stage == "deleted":
            deleted += 1
            continue
        run_params, run_tags = params.get(run_id, {}), tags.get(run_id, {})
        fingerprint = _digest(status, end, counts.get(run_id), sorted(run_params.items()), sorted(run_tags.items()))
        runs.append(_source_run(run_id, fingerprint, exp_name, name, status, start, end, run_params, run_tags,
                                _sqlite_series(db, run_id, step_col, nan_col),
                                _local_artifacts(artifact_uri, path.parent)))
    if deleted:
        notes.append(f"{deleted} deleted run{'s' if deleted != 1 else ''} (lifecycle_stage 'deleted'): not imported")
    return source, runs, notes


def _sqlite_series(db: sqlite3.Connection, run_id: str, step_col: str = "step",
                   nan_col: str = "is_nan") -> Callable[[], list[Series]]:
    def load() -> list[Series]:
        # rowid order is the order the points were logged in (MLflow's index on
        # run_uuid finds them without a sort)
        rows = db.execute(f"SELECT key, value, timestamp, {step_col}, {nan_col} FROM metrics WHERE run_uuid = ? "
                          "ORDER BY rowid", (run_id,)).fetchall()
        if not rows:
            return []
        keys, values, stamps, steps, nans = zip(*rows)
        vals = np.array(values, np.float64)
        vals[np.array(nans, bool)] = np.nan
        return _group(keys, _inf_back(vals), np.array(stamps, np.float64) / 1000.0, np.array(steps, np.int64))
    return load


def _inf_back(values: np.ndarray) -> np.ndarray:
    # MLflow stores +-inf as +-sys.float_info.max (SQL has no infinity)
    values[values == _DBL_MAX] = np.inf
    values[values == -_DBL_MAX] = -np.inf
    return values


def _group(keys: Any, values: np.ndarray, stamps: np.ndarray, steps: np.ndarray) -> list[Series]:
    names, inverse = np.unique(np.array(keys, dtype=object), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    out = []
    for idx in np.split(order, bounds):
        out.append(Series(str(names[inverse[idx[0]]]), {}, steps[idx], values[idx], stamps[idx]))
    return out


# -- the file store (mlruns/) ---------------------------------------------------------------

def _file_store_runs(root: Path, wanted: list[str] | None) -> tuple[str, list[SourceRun], list[str]]:
    import yaml  # PyYAML comes with omegaconf, a runstore dependency

    if not root.is_dir():
        raise ImportSourceError(f"{root} does not exist: give the MLflow file store folder (mlruns/), "
                                "sqlite:///path/to/mlflow.db or an http(s):// server address")
    root = root.resolve()
    exp_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and (d / "meta.yaml").is_file()]
    if not exp_dirs:
        raise ImportSourceError(f"{root} is not an MLflow file store: no experiment folders with a meta.yaml "
                                "(is it the mlruns/ folder?)")
    notes: list[str] = []
    runs: list[SourceRun] = []
    deleted = 0
    names = []
    for exp_dir in exp_dirs:
        exp = _yaml(yaml, exp_dir / "meta.yaml")
        exp_name = str(exp.get("name", exp_dir.name))
        names.append(exp_name)
        if wanted and exp_name not in wanted:
            continue
        if exp.get("lifecycle_stage") == "deleted":
            deleted += sum(1 for d in exp_dir.iterdir() if (d / "meta.yaml").is_file())
            continue
        for run_dir in sorted(d for d in exp_dir.iterdir() if (d / "meta.yaml").is_file()):
            meta = _yaml(yaml, run_dir / "meta.yaml")
            if meta.get("lifecycle_stage") == "deleted":
                deleted += 1
                continue
            status = meta.get("status")
            status = _STATUS_NUMBERS.get(status, status) if isinstance(status, int) else status
            params = _key_files(run_dir / "params")
            tags = _key_files(run_dir / "tags")
            files = [p for sub in ("params", "tags", "metrics") for p in sorted((run_dir / sub).rglob("*"))
                     if p.is_file()]
            fingerprint = _digest((run_dir / "meta.yaml").read_bytes(),
                                  [(str(p.relative_to(run_dir)), p.stat().st_size, p.stat().st_mtime_ns) for p in files])
            runs.append(_source_run(
                str(meta.get("run_id") or meta.get("run_uuid") or run_dir.name), fingerprint, exp_name,
                meta.get("run_name") or None, status, meta.get("start_time"), meta.get("end_time"), params, tags,
                _file_series(run_dir / "metrics"), _local_artifacts(meta.get("artifact_uri"), root)))
    _check_wanted(wanted, set(names), str(root))
    runs.sort(key=lambda r: (r.created_at or 0.0, r.source_id))
    if deleted:
        notes.append(f"{deleted} deleted run{'s' if deleted != 1 else ''} (lifecycle_stage 'deleted'): not imported")
    return str(root), runs, notes


def _yaml(yaml: Any, path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ImportSourceError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def _key_files(folder: Path) -> dict[str, str]:
    """A params/ or tags/ folder: one file per key (keys with '/' are sub-folders)."""
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _file_series(folder: Path) -> Callable[[], list[Series]]:
    def load() -> list[Series]:
        out = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []:
            # each line: "<timestamp ms> <value> <step>"; values may be nan / inf / -inf
            tokens = np.array(path.read_bytes().split(), dtype=object)
            if len(tokens) % 3:
                tokens = tokens[: len(tokens) // 3 * 3]
            stamps = tokens[0::3].astype(np.float64) / 1000.0
            values = np.array([float(v) for v in tokens[1::3]], np.float64)
            steps = tokens[2::3].astype(np.int64)
            out.append(Series(path.relative_to(folder).as_posix(), {}, steps, _inf_back(values), stamps))
        return out
    return load


# -- a tracking server, through MlflowClient --------------------------------------------------

def _client_runs(uri: str, wanted: list[str] | None) -> tuple[list[SourceRun], list[str]]:
    try:
        from mlflow.entities import ViewType
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ImportSourceError(f"importing from an MLflow server ({uri}) needs the MLflow client: "
                                "pip install 'runstore[mlflow]' (mlflow-skinny)") from None
    client = MlflowClient(tracking_uri=uri)
    try:
        exps = client.search_experiments(view_type=ViewType.ALL)
    except Exception as exc:  # the client raises many kinds for an unreachable server
        raise ImportSourceError(f"cannot reach the MLflow server at {uri}: {exc}") from None
    _check_wanted(wanted, {e.name for e in exps}, uri)
    runs: list[SourceRun] = []
    deleted = 0
    for exp in exps:
        if wanted and exp.name not in wanted:
            continue
        token = None
        while True:
            page = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000,
                                      page_token=token)
            for run in page:
                info = run.info
                if info.lifecycle_stage == "deleted" or exp.lifecycle_stage == "deleted":
                    deleted += 1
                    continue
                fingerprint = _digest(info.status, info.end_time, sorted(run.data.metrics.items()),
                                      sorted(run.data.params.items()), sorted(run.data.tags.items()))
                runs.append(_source_run(info.run_id, fingerprint, exp.name, info.run_name, info.status,
                                        info.start_time, info.end_time, dict(run.data.params),
                                        dict(run.data.tags), _client_series(client, info.run_id,
                                                                            list(run.data.metrics)), []))
            token = page.token
            if not token:
                break
    runs.sort(key=lambda r: (r.created_at or 0.0, r.source_id))
    notes = [f"{deleted} deleted runs: not imported"] if deleted else []
    return runs, notes


def _client_series(client: Any, run_id: str, keys: list[str]) -> Callable[[], list[Series]]:
    def load() -> list[Series]:
        out = []
        for key in sorted(keys):
            history = client.get_metric_history(run_id, key)
            out.append(Series(key, {}, np.array([m.step for m in history], np.int64),
                              _inf_back(np.array([m.value for m in history], np.float64)),
                              np.array([m.timestamp for m in history], np.float64) / 1000.0))
        return out
    return load


# -- shared --------------------------------------------------------------------------------

def _source_run(run_id: str, fingerprint: str, experiment: str, name: str | None, status: Any, start: Any,
                end: Any, params: dict[str, str], tags: dict[str, str], series: Any,
                artifacts: list[Path]) -> SourceRun:
    skipped: list[str] = []
    return SourceRun(
        source_id=run_id,
        fingerprint=fingerprint,
        name=name or tags.get("mlflow.runName") or None,
        experiment=experiment,
        created_at=start / 1000.0 if start is not None else None,
        ended_at=end / 1000.0 if end is not None else None,
        status=_STATUS.get(str(status), "finished"),
        description=tags.get("mlflow.note.content") or None,
        params=nested_params({k: typed(v) for k, v in params.items()}, skipped),
        tags=[f"{k}={v}" for k, v in sorted(tags.items()) if k not in _MAPPED_TAGS],
        parent_id=tags.get("mlflow.parentRunId") or None,
        series=series,
        artifacts=artifacts,
        skipped=skipped,
    )


def _local_artifacts(artifact_uri: Any, base: Path) -> list[Path]:
    """The entries of a run's artifact folder when it is on this machine."""
    if not artifact_uri:
        return []
    uri = str(artifact_uri)
    if uri.startswith("file://"):
        folder = Path(unquote(urlparse(uri).path))
    elif "://" in uri or uri.startswith("mlflow-artifacts:"):
        return []  # remote (s3://, gs://, a server's proxy): not copied
    else:
        folder = Path(uri) if os.path.isabs(uri) else base / uri
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _check_wanted(wanted: list[str] | None, names: set[str], source: str) -> None:
    unknown = sorted(set(wanted or ()) - names)
    if unknown:
        raise ImportSourceError(f"{source} has no experiment named {', '.join(map(repr, unknown))}; "
                                f"it has {', '.join(map(repr, sorted(names))) or 'none'}")


def _digest(*parts: Any) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()
