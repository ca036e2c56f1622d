"""The Lightning logger's logic, shared by ``lightning.pytorch`` and the older
``pytorch_lightning`` package (each gets its own subclass of its own ``Logger``
base, because each Trainer checks loggers against its own package's classes)."""

from __future__ import annotations

import os
from argparse import Namespace
from typing import Any, Mapping

from ._common import Guard, guarded, merge_params, open_run, prefix_map, track_metrics

_STATUS = {"success": "finished", "finished": "finished", "failed": "failed", "interrupted": "failed"}


def make_logger_class(pl: Any, package: str) -> type:
    """A ``RunstoreLogger`` class on ``pl.loggers.logger.Logger``."""
    base = pl.loggers.logger.Logger
    rank_zero_only = pl.utilities.rank_zero.rank_zero_only

    class RunstoreLogger(base):  # type: ignore[misc, valid-type]
        """Lightning ``Logger`` writing to a runstore run.

        >>> trainer = Trainer(logger=RunstoreLogger(repo="runs", experiment="mnist"))  # doctest: +SKIP

        Metric names with a ``train_``/``val_``/``test_`` (or ``train/`` ...) prefix
        become the bare name with context ``{"subset": ...}`` (``context_from_prefix``).
        ``log_checkpoints=True`` records each saved checkpoint file as an artifact.
        Only the process of global rank 0 writes.
        """

        def __init__(self, repo: Any = None, experiment: str | None = None, name: str | None = None,
                     run_id: str | None = None, context_from_prefix: bool | Mapping[str, str] = True,
                     log_checkpoints: bool = False, run: Any = None, **run_kwargs: Any) -> None:
            super().__init__()
            self._repo_arg, self._experiment_name, self._run_name = repo, experiment, name
            self._run_id, self._run_kwargs, self._given_run = run_id, run_kwargs, run
            self._prefixes = prefix_map(context_from_prefix)
            self._log_checkpoints = log_checkpoints
            self._run: Any = None
            self._guard = Guard(f"{package} logger")
            self._logged_ckpts: set[str] = set()

        # -- the run, created on first use in rank 0 only ------------------------------
        @property
        def experiment(self) -> Any:
            """The runstore ``Run`` (None outside rank 0)."""
            if rank_zero_only.rank != 0:
                return None
            if self._run is None:
                self._run = open_run(self._given_run, self._repo_arg, self._experiment_name, self._run_name,
                                     self._run_id, **self._run_kwargs)
                self._run_id = self._run.id
            elif self._run.closed and self._given_run is None:
                # finalize() closed it after fit(); trainer.test() afterwards resumes it
                from .. import Run

                self._run = Run(repo=self._run.repo, run_id=self._run.id)
            return self._run

        @property
        def run(self) -> Any:
            return self.experiment

        @property
        def name(self) -> str:
            return self._experiment_name or "default"

        @property
        def version(self) -> str:
            if self._run_id is None and rank_zero_only.rank == 0:
                self._guard(lambda: self.experiment)
            return self._run_id or "unknown"

        @property
        def save_dir(self) -> str | None:
            return None  # checkpoints go under the Trainer's default_root_dir

        # -- Logger API ----------------------------------------------------------------
        @rank_zero_only
        @guarded
        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            if isinstance(params, Namespace):
                params = vars(params)
            if params:
                merge_params(self.experiment, "hparams", params)

        @rank_zero_only
        @guarded
        def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
            epoch = metrics.get("epoch")
            track_metrics(self.experiment, metrics, step, self._prefixes, epoch=epoch, skip=("epoch",))

        @rank_zero_only
        @guarded
        def save(self) -> None:
            if self._run is not None and not self._run.closed:
                self._run.flush()

        @rank_zero_only
        @guarded
        def finalize(self, status: str) -> None:
            if self._run is None or self._run.closed:
                return
            if self._given_run is not None and status == "success":
                self._run.flush()  # the caller's run: the caller closes it
                return
            self._run.close(_STATUS.get(status, "failed"))

        @rank_zero_only
        @guarded
        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            if not self._log_checkpoints:
                return
            paths = set(getattr(checkpoint_callback, "best_k_models", {}) or {})
            # without a monitored metric only best_model_path / the last saved file are set
            for attr in ("best_model_path", "last_model_path", "_last_checkpoint_saved"):
                path = getattr(checkpoint_callback, attr, "")
                if isinstance(path, str) and path:
                    paths.add(path)
            run = self.experiment
            for path in sorted(paths):
                if path in self._logged_ckpts or not os.path.exists(path):
                    continue
                run.log_artifact(path, kind="checkpoint")
                self._logged_ckpts.add(path)

    RunstoreLogger.__module__ = f"runstore.integrations.{package.replace('.', '_')}"
    return RunstoreLogger
