"""Bring history along: import runs from TensorBoard, MLflow and Aim.

>>> from runstore import importers
>>> runs = importers.tensorboard("runs/", repo="my-repo")        # doctest: +SKIP
>>> print(runs.summary())                                       # doctest: +SKIP

Each function reads the source without writing to it, writes one runstore run
per source run through the public API (original steps, wall-clock times,
params, tags, status and parents kept) and returns an :class:`ImportResult`:
the list of runs imported, plus ``unchanged``, ``points``, ``skipped`` and
``summary()``. Importing again is idempotent: runs already imported and
unchanged are skipped; ``force=True`` imports them again. docs/import.md has
what maps to what.
"""

from __future__ import annotations

import os
from typing import Mapping

from .. import Repo
from ._common import ImportResult, Progress, write_runs

__all__ = ["ImportResult", "aim", "mlflow", "tensorboard"]


def _repo(repo: "Repo | str | os.PathLike | None") -> Repo:
    return repo if isinstance(repo, Repo) else Repo(repo)


def tensorboard(logdir: str | os.PathLike, repo: "Repo | str | os.PathLike | None" = None, *,
                experiment: str | None = None, force: bool = False, verify: bool = True,
                contexts: bool | Mapping[str, str] = True, progress: Progress | None = None) -> ImportResult:
    """Import every run of a TensorBoard log directory (or one event file).

    ``experiment`` defaults to the log directory's name; ``verify`` checks each
    record's CRC-32C; ``contexts`` maps ``train/``-style tag prefixes to a
    ``{"subset": ...}`` context (False keeps tags as they are, a dict gives your
    own prefix -> subset map); ``progress(done, total, name)`` is called per run.
    """
    from . import _tensorboard

    root, runs = _tensorboard.read_runs(logdir, experiment=experiment, verify=verify)
    return write_runs(_repo(repo), "tensorboard", str(root), runs, len(runs), force=force,
                      progress=progress, contexts=contexts)


def mlflow(uri: str | os.PathLike, repo: "Repo | str | os.PathLike | None" = None, *,
           experiment: str | list[str] | None = None, force: bool = False,
           contexts: bool | Mapping[str, str] = True, progress: Progress | None = None) -> ImportResult:
    """Import MLflow runs from ``sqlite:///path/mlflow.db``, a file store folder
    (``mlruns/``) or an ``http(s)://`` tracking server (needs ``runstore[mlflow]``).

    ``experiment`` imports only the MLflow experiment(s) of that name (runs keep
    their MLflow experiment name); ``contexts`` as for :func:`tensorboard`.
    """
    from . import _mlflow

    wanted = [experiment] if isinstance(experiment, str) else list(experiment) if experiment else None
    source, runs, notes = _mlflow.read_runs(os.fspath(uri), wanted)
    return write_runs(_repo(repo), "mlflow", source, runs, len(runs), force=force, progress=progress,
                      contexts=contexts, notes=notes)


def aim(path: str | os.PathLike, repo: "Repo | str | os.PathLike | None" = None, *,
        python: str | os.PathLike | None = None, experiment: str | None = None, force: bool = False,
        contexts: bool | Mapping[str, str] = True, progress: Progress | None = None) -> ImportResult:
    """Import every run of the Aim repository at ``path`` (the folder holding ``.aim``).

    Read through the ``aim`` package in a subprocess: this interpreter's when aim
    is installed here, else ``python`` (e.g. ``"/opt/aim-venv/bin/python"``).
    ``experiment`` replaces Aim's experiment names; ``contexts`` maps name
    prefixes only of metrics tracked without a context.
    """
    from . import _aim

    root = _aim.find_repo(path)
    stream = _aim.AimStream(root, _aim.interpreter(python))
    result = write_runs(_repo(repo), "aim", str(root), stream.runs(), stream.total, experiment=experiment,
                        force=force, progress=progress, contexts=contexts)
    result.skipped.extend(stream.problems)
    return result
