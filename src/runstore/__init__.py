"""runstore: an embedded, columnar repository of machine-learning experiment runs.

>>> from runstore import Repo, Run
>>> repo = Repo("runs")                                   # doctest: +SKIP
>>> with Run(repo=repo, experiment="mnist") as run:       # doctest: +SKIP
...     run["hparams"] = {"lr": 1e-3}
...     run.track(0.31, name="loss", context={"subset": "train"})
>>> repo.query("run.hparams.lr < 0.01")                   # doctest: +SKIP
"""

from .errors import (
    ActiveRunError,
    AmbiguousRunError,
    ConfigError,
    ImportSourceError,
    InvalidContextError,
    InvalidParamError,
    InvalidValueError,
    MatchError,
    ParamChangedError,
    QueryNameError,
    QuerySyntaxError,
    RepositoryError,
    RunClosedError,
    RunLockedError,
    RunNotFoundError,
    RunstoreError,
    QueryWarning,
    SQLError,
    SequenceNotFoundError,
    StorageFullError,
)
# The experiment layer (omegaconf, yaml, ...) is imported on first use of one of
# its names, not by ``import runstore``: a training script that only tracks should
# not pay ~100 ms for a config system it does not use (issue 22).
_LAZY = {
    name: ".experiment"
    for name in ("Callback", "Checkpoint", "EarlyStopping", "Experiment", "MetricsCSV", "Pipeline",
                 "RunStatus", "insert_value", "iter_run_dirs", "load_config", "main", "multiply")
}
# MLflow's remaining fluent names and seed 002's manager (pandas only when search_runs runs).
_LAZY.update({
    name: ".fluent.mlflow"
    for name in ("MLflowManager", "get_experiment_by_name", "log_dict", "log_figure", "log_text",
                 "search_runs", "set_experiment", "set_tracking_uri")
})
_LAZY.update({"RunCollection": ".analysis.collections", "SequenceCollection": ".analysis.collections"})


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runstore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


from .fluent import (
    active_run,
    end_run,
    log_artifact,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    set_tag,
    set_tags,
    start_run,
)
from .tracking.objects import Array, Audio, Distribution, Figure, Image, Text
from .tracking.repo import Repo
from .tracking.run import Run
from .tracking.sequence import Sequence

__version__ = "0.1.0"

__all__ = [
    "Array",
    "Audio",
    "Distribution",
    "Figure",
    "Image",
    "Text",
    "MLflowManager",
    "QueryWarning",
    "RunCollection",
    "SequenceCollection",
    "get_experiment_by_name",
    "log_dict",
    "log_figure",
    "log_text",
    "search_runs",
    "set_experiment",
    "set_tracking_uri",
    "ActiveRunError",
    "AmbiguousRunError",
    "Callback",
    "Checkpoint",
    "ConfigError",
    "EarlyStopping",
    "Experiment",
    "ImportSourceError",
    "InvalidContextError",
    "InvalidParamError",
    "InvalidValueError",
    "MatchError",
    "MetricsCSV",
    "ParamChangedError",
    "Pipeline",
    "QueryNameError",
    "QuerySyntaxError",
    "Repo",
    "RepositoryError",
    "Run",
    "RunClosedError",
    "RunLockedError",
    "RunNotFoundError",
    "RunStatus",
    "RunstoreError",
    "SQLError",
    "Sequence",
    "SequenceNotFoundError",
    "StorageFullError",
    "active_run",
    "end_run",
    "insert_value",
    "iter_run_dirs",
    "load_config",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "main",
    "multiply",
    "set_tag",
    "set_tags",
    "start_run",
]
