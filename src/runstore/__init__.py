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
    InvalidContextError,
    InvalidParamError,
    InvalidValueError,
    MatchError,
    ParamChangedError,
    QueryNameError,
    QuerySyntaxError,
    RepositoryError,
    RunClosedError,
    RunNotFoundError,
    RunstoreError,
    SequenceNotFoundError,
    StorageFullError,
)
from .experiment import (
    Callback,
    Checkpoint,
    EarlyStopping,
    Experiment,
    MetricsCSV,
    Pipeline,
    RunStatus,
    insert_value,
    load_config,
    main,
    multiply,
)
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
from .repo import Repo
from .run import Run
from .sequence import Sequence

__version__ = "0.1.0"

__all__ = [
    "ActiveRunError",
    "AmbiguousRunError",
    "Callback",
    "Checkpoint",
    "ConfigError",
    "EarlyStopping",
    "Experiment",
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
    "RunNotFoundError",
    "RunStatus",
    "RunstoreError",
    "Sequence",
    "SequenceNotFoundError",
    "StorageFullError",
    "active_run",
    "end_run",
    "insert_value",
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
