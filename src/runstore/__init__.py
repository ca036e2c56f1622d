"""runstore: an embedded, columnar repository of machine-learning experiment runs.

>>> from runstore import Repo, Run
>>> repo = Repo("runs")                                   # doctest: +SKIP
>>> with Run(repo=repo, experiment="mnist") as run:       # doctest: +SKIP
...     run["hparams"] = {"lr": 1e-3}
...     run.track(0.31, name="loss", context={"subset": "train"})
>>> repo.query("run.hparams.lr < 0.01")                   # doctest: +SKIP
"""

from .errors import (
    ConfigError,
    InvalidContextError,
    InvalidParamError,
    InvalidValueError,
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
from .repo import Repo
from .run import Run
from .sequence import Sequence

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "InvalidContextError",
    "InvalidParamError",
    "InvalidValueError",
    "ParamChangedError",
    "QueryNameError",
    "QuerySyntaxError",
    "Repo",
    "RepositoryError",
    "Run",
    "RunClosedError",
    "RunNotFoundError",
    "RunstoreError",
    "Sequence",
    "SequenceNotFoundError",
    "StorageFullError",
]
