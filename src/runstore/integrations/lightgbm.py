"""LightGBM training callback.

    import lightgbm as lgb
    from runstore.integrations.lightgbm import runstore_callback

    lgb.train(params, train_set, 50, valid_sets=[train_set, valid_set], valid_names=["train", "valid"],
              callbacks=[runstore_callback(repo="runs", experiment="lgbm")])

Every eval result of every iteration becomes a point (step = iteration) with the
data set's name as context (``valid`` -> ``{"subset": "val"}``, ``training`` ->
``{"subset": "train"}``; other names kept); ``lgb.cv`` results add ``<metric>_stdv``.
The training params go under the param ``lightgbm``. The run is closed after the
last iteration; with early stopping (which ends training by an exception that no
callback sees) it is closed when the process exits, or call ``callback.close()``.
"""

from __future__ import annotations

from typing import Any, Mapping

from ._boosting import BoostingRun
from ._common import guarded, merge_params, require

_lgb = require("lightgbm", "lightgbm")


class RunstoreCallback:
    """A LightGBM callback (any callable taking ``CallbackEnv``) logging to a run."""

    order = 30  # after LightGBM's own record_evaluation (20), before early_stopping (30, stable)
    before_iteration = False

    def __init__(self, repo: Any = None, experiment: str | None = None, name: str | None = None,
                 run_id: str | None = None, context_from_prefix: bool | Mapping[str, str] = True,
                 run: Any = None, close_on_end: bool | None = None, **run_kwargs: Any) -> None:
        self._state = BoostingRun("lightgbm callback", run, repo, experiment, name, run_id, context_from_prefix,
                                  close_on_end, run_kwargs)
        self._guard = self._state._guard
        self._params_logged = False

    @property
    def run(self) -> Any:
        return self._state.run

    @property
    def run_id(self) -> str | None:
        return self._state.run_id

    @guarded
    def __call__(self, env: Any) -> None:
        if not self._params_logged:
            self._params_logged = True
            merge_params(self.run, "lightgbm", dict(env.params))
        for result in env.evaluation_result_list or ():
            dataset, metric, value = result[0], result[1], result[2]
            if len(result) == 5:  # lgb.cv: (dataset, metric, mean, higher_is_better, stdv)
                value = (value, result[4])
            self._state.track_eval(dataset, metric, value, env.iteration)
        if env.iteration + 1 >= env.end_iteration:
            self._state.end()

    def close(self) -> None:
        """End the run (training stopped early, or you are done with it)."""
        self._guard(self._state.end)


def runstore_callback(**kwargs: Any) -> RunstoreCallback:
    """``RunstoreCallback(**kwargs)``, named like LightGBM's own callbacks."""
    return RunstoreCallback(**kwargs)


__all__ = ["RunstoreCallback", "runstore_callback"]
