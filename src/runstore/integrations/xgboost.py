"""XGBoost training callback.

    import xgboost as xgb
    from runstore.integrations.xgboost import RunstoreCallback

    xgb.train(params, dtrain, 50, evals=[(dtrain, "train"), (dval, "validation")],
              callbacks=[RunstoreCallback(repo="runs", experiment="xgb")])

Every eval metric of every iteration becomes a point (step = boosting round) with the
data set's name as context: ``rmse`` with ``{"subset": "train"}`` and
``{"subset": "val"}`` (``validation``, ``valid``, ``eval`` and ``validation_0``, the
sklearn API's name, map to ``val``; other names are kept). The booster's
configuration goes under the param ``xgboost``, the best iteration (with early
stopping) under ``summary``.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from ._boosting import BoostingRun
from ._common import guarded, merge_params, require

_xgb = require("xgboost", "xgboost")


class RunstoreCallback(_xgb.callback.TrainingCallback):
    """An ``xgboost.callback.TrainingCallback`` logging to a runstore run."""

    def __init__(self, repo: Any = None, experiment: str | None = None, name: str | None = None,
                 run_id: str | None = None, context_from_prefix: bool | Mapping[str, str] = True,
                 run: Any = None, close_on_end: bool | None = None, **run_kwargs: Any) -> None:
        super().__init__()
        self._state = BoostingRun("xgboost callback", run, repo, experiment, name, run_id, context_from_prefix,
                                  close_on_end, run_kwargs)
        self._guard = self._state._guard

    @property
    def run(self) -> Any:
        return self._state.run

    @property
    def run_id(self) -> str | None:
        return self._state.run_id

    def before_training(self, model: Any) -> Any:
        self._guard(self._config, model)
        return model

    def _config(self, model: Any) -> None:
        config = json.loads(model.save_config())
        learner = config.get("learner", {})
        flat = {}
        for section in ("learner_train_param", "generic_param", "learner_model_param"):
            flat.update(learner.get(section, {}))
        booster = learner.get("gradient_booster", {})
        flat["booster"] = booster.get("name")
        for key, value in booster.items():
            if isinstance(value, dict) and key.endswith("_param"):
                flat.update(value)
        updater = booster.get("updater")
        if isinstance(updater, dict):  # xgboost 1.x
            updater = list(updater.values())
        for item in updater or []:
            if isinstance(item, dict):
                for key, value in item.items():
                    if isinstance(value, dict) and key.endswith("_param"):
                        flat.update(value)
        merge_params(self.run, "xgboost", {k: _number(v) for k, v in flat.items() if v is not None})

    @guarded
    def after_iteration(self, model: Any, epoch: int, evals_log: Mapping[str, Mapping[str, list]]) -> bool:
        for dataset, metrics in evals_log.items():
            for metric, history in metrics.items():
                if history:
                    self._state.track_eval(dataset, metric, history[-1], epoch)
        return False  # never stop training

    def after_training(self, model: Any) -> Any:
        self._guard(self._end, model)
        return model

    def _end(self, model: Any) -> None:
        best = {k: _number(v) for k, v in model.attributes().items() if k.startswith("best_")}
        if best and self._state._run is not None:
            merge_params(self.run, "summary", best)
        self._state.end()


def _number(value: Any) -> Any:
    # xgboost's config holds every value as a string: "0.3", "6", "reg:squarederror"
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                continue
    return value


__all__ = ["RunstoreCallback"]
