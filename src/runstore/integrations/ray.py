"""Ray Tune logger callback: a run per trial.

    from ray import tune
    from runstore.integrations.ray import RunstoreLoggerCallback

    tuner = tune.Tuner(trainable, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                       run_config=tune.RunConfig(callbacks=[RunstoreLoggerCallback(repo="runs")]))
    tuner.fit()

Tune calls it in the driver process (the one that runs ``tuner.fit()``), so runs are
written from there, whatever cluster the trials ran on. Each trial's run: experiment =
``experiment=`` (default: the Tune experiment's name), name = the trial's name, its
config under ``hparams``, every numeric result at step ``training_iteration`` (names
with ``train_``/``val_`` ... prefixes become contexts, as everywhere), Tune's bookkeeping
(``time_this_iter_s``, ``timesteps_total``, ...) left out; ``failed`` when the trial
errored. System metrics are off for these runs: the driver is not where trials train.
"""

from __future__ import annotations

from typing import Any, Mapping

from ._common import Guard, clean_params, prefix_map, require, track_metrics

_tune_logger = require("ray.tune.logger", "'ray[tune]'")

# Tune's own bookkeeping in every result: not metrics of the model
_BOOKKEEPING = frozenset({
    "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "timesteps_total",
    "timesteps_since_restore", "iterations_since_restore", "time_since_restore", "episodes_total",
    "pid", "node_ip", "hostname", "date", "experiment_id", "trial_id", "done", "config",
    "checkpoint_dir_name", "should_checkpoint", "experiment_tag",
})


class RunstoreLoggerCallback(_tune_logger.LoggerCallback):
    """A Ray Tune ``LoggerCallback`` writing one runstore run per trial."""

    def __init__(self, repo: Any = None, experiment: str | None = None,
                 context_from_prefix: bool | Mapping[str, str] = True, **run_kwargs: Any) -> None:
        from .. import Repo

        # Tune pickles its callbacks (the Tuner may run its controller elsewhere): keep the
        # path, open the repository on first use in the process that calls back
        self._repo_path = str(repo.path) if isinstance(repo, Repo) else (None if repo is None else str(repo))
        self._repo: Any = None
        self._experiment = experiment
        self._prefixes = prefix_map(context_from_prefix)
        self._run_kwargs = {"system_metrics": False, **run_kwargs}
        self._runs: dict[str, Any] = {}
        self._guard = Guard("ray tune callback")
        self.run_ids: dict[str, str] = {}  # trial id -> run id

    @property
    def repo(self) -> Any:
        if self._repo is None:
            from .. import Repo

            self._repo = Repo(self._repo_path)
        return self._repo

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_repo"], state["_runs"] = None, {}
        return state

    def _run(self, trial: Any) -> Any:
        from .. import Run

        run = self._runs.get(trial.trial_id)
        if run is None:
            known = self.run_ids.get(trial.trial_id)
            if known is not None:  # restored after an end: resume the same run
                run = Run(repo=self.repo, run_id=known)
            else:
                experiment = self._experiment or _experiment_name(trial)
                run = Run(repo=self.repo, experiment=experiment, name=str(trial), **self._run_kwargs)
                run["hparams"] = clean_params(trial.config)
                run["ray"] = {"trial_id": trial.trial_id}
                self.run_ids[trial.trial_id] = run.id
            self._runs[trial.trial_id] = run
        return run

    def log_trial_start(self, trial: Any) -> None:
        self._guard(self._run, trial)

    def log_trial_restore(self, trial: Any) -> None:
        self._guard(self._run, trial)

    def log_trial_result(self, iteration: int, trial: Any, result: Mapping[str, Any]) -> None:
        self._guard(self._result, trial, result)

    def _result(self, trial: Any, result: Mapping[str, Any]) -> None:
        step = result.get("training_iteration")
        metrics = {k: v for k, v in result.items() if k not in _BOOKKEEPING and not isinstance(v, Mapping)}
        track_metrics(self._run(trial), metrics, int(step) if step is not None else None, self._prefixes)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._guard(self._end, trial, failed)

    def _end(self, trial: Any, failed: bool) -> None:
        run = self._runs.pop(trial.trial_id, None)
        if run is not None:
            run.close("failed" if failed else "finished")


def _experiment_name(trial: Any) -> str:
    path = getattr(trial, "local_experiment_path", None) or getattr(trial, "experiment_path", None)
    if path:
        return str(path).rstrip("/").rsplit("/", 1)[-1]
    return "ray-tune"


__all__ = ["RunstoreLoggerCallback"]
