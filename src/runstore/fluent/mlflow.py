"""The rest of MLflow's fluent names, so that MLflow code runs after changing the import.

``set_experiment``/``set_tracking_uri`` set the defaults of ``start_run``;
``get_experiment_by_name`` and ``search_runs`` read the repository (filters are
written in runstore's query language, see docs/query.md); ``log_dict``,
``log_text`` and ``log_figure`` store artifacts of the active run.
:class:`MLflowManager` is the manager class of seed 002, a thin wrapper over
the fluent API for code written against it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .. import fluent
from ..errors import InvalidParamError, InvalidValueError
from ..tracking.repo import Repo
from ..tracking.run import Run

__all__ = [
    "MLflowExperiment",
    "MLflowManager",
    "get_experiment_by_name",
    "log_dict",
    "log_figure",
    "log_text",
    "search_runs",
    "set_experiment",
    "set_tracking_uri",
]


@dataclasses.dataclass(frozen=True)
class MLflowExperiment:
    """What ``get_experiment_by_name`` returns (MLflow's ``Experiment`` fields).

    Experiments are not separate records in runstore, only the ``experiment``
    attribute of runs, so ``experiment_id`` is the name itself."""

    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    run_count: int


def _repo(repo: Repo | str | os.PathLike[str] | None) -> Repo:
    if isinstance(repo, Repo):
        return repo
    return Repo(repo if repo is not None else fluent._defaults["repo"])


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidParamError(f"{what} must be a non-empty string, got {name!r}")
    return name


def set_experiment(experiment_name: str) -> MLflowExperiment:
    """Runs started afterwards (in any thread) belong to ``experiment_name`` unless
    ``start_run(experiment=...)`` says otherwise. Returns the experiment."""
    fluent._defaults["experiment"] = _check_name(experiment_name, "the experiment name")
    found = get_experiment_by_name(experiment_name)
    return found or MLflowExperiment(experiment_name, experiment_name, str(_repo(None).path / "artifacts"), "active", 0)


def set_tracking_uri(uri: str | os.PathLike[str] | None) -> None:
    """The repository later runs go to (a path; ``file://`` prefixes are accepted); None: the default."""
    if uri is not None:
        uri = os.fspath(uri)
        if uri.startswith("file://"):
            uri = uri[len("file://"):]
        elif "://" in uri:
            raise InvalidParamError(
                f"runstore repositories are local directories; {uri!r} is not a path "
                "(runstore has no tracking server: use a path such as ./mlruns)"
            )
    fluent._defaults["repo"] = uri


def get_experiment_by_name(name: str, repo: Repo | str | os.PathLike[str] | None = None) -> MLflowExperiment | None:
    """The experiment with that name, or None when no run belongs to it (as in MLflow)."""
    store = _repo(repo)
    runs = store.query(f"run.experiment == {json.dumps(_check_name(name, 'the experiment name'))}")
    if not len(runs):
        return None
    archived = all(runs.to_list("archived"))
    return MLflowExperiment(name, name, str(store.path / "artifacts"), "deleted" if archived else "active", len(runs))


def search_runs(
    experiment_names: list[str] | None = None,
    filter_string: str = "",
    output_format: str = "pandas",
    order_by: list[str] | None = None,
    max_results: int | None = None,
    repo: Repo | str | os.PathLike[str] | None = None,
    experiment_ids: list[str] | None = None,
) -> Any:
    """Runs matching ``filter_string`` (runstore's query language, e.g.
    ``"run.hparams.lr < 0.01 and run.status == 'finished'"``).

    ``output_format="pandas"`` (MLflow's default) gives a DataFrame with MLflow's
    columns: ``run_id``, ``experiment_id``, ``run_name``, ``status``,
    ``start_time``, ``end_time``, ``params.<dotted key>``, ``metrics.<name>``
    (the last value of each sequence without a context) and ``tags.<key>``;
    ``"list"`` gives the runs (a RunCollection). ``order_by`` takes keys such as
    ``"hparams.lr DESC"`` or ``"loss.last"``; newest runs first otherwise.
    """
    if output_format not in ("pandas", "list"):
        raise InvalidParamError(f"output_format must be 'pandas' or 'list', got {output_format!r}")
    store = _repo(repo)
    runs = store.query(filter_string or None)
    names = list(experiment_names or []) + list(experiment_ids or [])
    if names:
        runs = runs.filter(experiment=names)
    if order_by:
        for clause in reversed(list(order_by)):
            key, _, direction = str(clause).strip().partition(" ")
            runs = runs.sort(key, reverse=direction.strip().upper() == "DESC")
    else:
        runs = runs.sort("created_at", reverse=True)
    if max_results is not None:
        runs = runs[: int(max_results)]
    if output_format == "list":
        return runs
    return _frame(store, runs)


def _frame(store: Repo, runs: Any) -> Any:
    import pandas as pd

    from ..query.tables import leaf_paths, walk

    ids = runs.ids
    metrics: dict[str, dict[str, float]] = {rid: {} for rid in ids}
    if ids:
        wanted = set(ids)
        for seq in store.query_sequences(None):
            if seq.run.id in wanted and not seq.context:
                metrics[seq.run.id][seq.name] = seq.last
    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "run_id": run.id,
            "experiment_id": run.experiment,
            "run_name": run.name,
            "status": run.status.upper(),
            "start_time": pd.to_datetime(run.created_at, unit="s", utc=True),
            "end_time": pd.to_datetime(run.ended_at, unit="s", utc=True) if run.ended_at else pd.NaT,
        }
        params = run.params
        for path in leaf_paths([params]):
            row["params." + ".".join(map(str, path))] = walk(params, path)
        for name, value in metrics[run.id].items():
            row[f"metrics.{name}"] = value
        for tag in run.tags:
            key, eq, value = tag.partition("=")
            row[f"tags.{key}"] = value if eq else ""
        rows.append(row)
    base = ["run_id", "experiment_id", "run_name", "status", "start_time", "end_time"]
    frame = pd.DataFrame(rows, columns=None if rows else base)
    return frame


# -- artifacts from memory ------------------------------------------------------------------
def _artifact_name(artifact_file: Any) -> str:
    name = os.fspath(artifact_file) if isinstance(artifact_file, (str, os.PathLike)) else None
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise InvalidParamError(
            f"artifact_file must be a plain file name such as 'config.json', got {artifact_file!r} "
            "(runstore keeps one flat folder of artifacts per run)"
        )
    return name


def _log_bytes(data: bytes, artifact_file: str, kind: str) -> dict[str, Any]:
    name = _artifact_name(artifact_file)
    run = fluent._current()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        return run.log_artifact(path, kind=kind, name=name)


def log_dict(dictionary: Mapping[str, Any], artifact_file: str) -> dict[str, Any]:
    """Store a dict as a JSON (``.json``) or YAML (``.yaml``/``.yml``) artifact of the active run."""
    if not isinstance(dictionary, Mapping):
        raise InvalidValueError(f"log_dict takes a dict, got {type(dictionary).__name__}")
    name = _artifact_name(artifact_file)
    if name.endswith((".yaml", ".yml")):
        from omegaconf import OmegaConf

        text = OmegaConf.to_yaml(OmegaConf.create(dict(dictionary)))
    else:
        text = json.dumps(dictionary, indent=2, default=str)
    return _log_bytes(text.encode(), name, "dict")


def log_text(text: str, artifact_file: str) -> dict[str, Any]:
    """Store a string as a text artifact of the active run."""
    if not isinstance(text, str):
        raise InvalidValueError(f"log_text takes a str, got {type(text).__name__}")
    return _log_bytes(text.encode(), artifact_file, "text")


def log_figure(figure: Any, artifact_file: str) -> dict[str, Any]:
    """Save a matplotlib figure (format from the file suffix, e.g. ``.png``) as an artifact."""
    savefig = getattr(figure, "savefig", None)
    if not callable(savefig):
        raise InvalidValueError(
            f"log_figure takes a matplotlib figure (with .savefig), got {type(figure).__name__}"
        )
    name = _artifact_name(artifact_file)
    run = fluent._current()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        savefig(path)
        return run.log_artifact(path, kind="figure", name=name)


# -- seed 002 ------------------------------------------------------------------------------
class MLflowManager:
    """Seed 002's manager: ``start_run`` as a context manager, ``log_metrics``,
    ``log_params``, ``end_run`` and a ``logger``, over runstore's fluent API.

    Logging without an active run writes a warning to ``logger`` and does
    nothing (the seed's "checks for active runs"), instead of starting a run.
    """

    def __init__(self, experiment: str | None = None, repo: Repo | str | os.PathLike[str] | None = None) -> None:
        self.logger = logging.getLogger(self.__class__.__name__)
        self.experiment = experiment
        self.repo = repo

    @contextlib.contextmanager
    def start_run(self, run_name: str | None = None, nested: bool = False) -> Iterator[Run]:
        """Start a run (a child of the active one with ``nested=True``); ends it when the block ends."""
        run = fluent.start_run(run_name=run_name, nested=nested, experiment=self.experiment, repo=self.repo)
        with run:  # failed on an exception, killed on Ctrl-C, finished otherwise
            yield run

    def _active(self, what: str) -> Run | None:
        run = fluent.active_run()
        if run is None:
            self.logger.warning("no active run: %s not logged (use 'with manager.start_run():')", what)
        return run

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if not isinstance(metrics, Mapping):
            raise InvalidValueError(f"log_metrics takes a dict of name -> value, got {type(metrics).__name__}")
        if self._active(f"metrics {sorted(metrics)}") is not None:
            fluent.log_metrics(metrics, step=step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not isinstance(params, Mapping):
            raise InvalidParamError(f"log_params takes a dict of name -> value, got {type(params).__name__}")
        if self._active(f"params {sorted(params)}") is not None:
            fluent.log_params(params)

    def end_run(self) -> None:
        """End the active run if there is one."""
        if fluent.active_run() is not None:
            fluent.end_run()
