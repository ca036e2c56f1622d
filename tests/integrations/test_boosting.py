"""xgboost and lightgbm callbacks with the real libraries, a few boosting rounds."""

import numpy as np
import pytest

from runstore import Repo
from tests.integrations.conftest import curve


def _data(n=200):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5))
    return x, x[:, 0] * 2 + rng.normal(scale=0.1, size=n)


def test_xgboost_train_logs_every_eval_metric_per_round(tmp_path):
    import xgboost as xgb

    from runstore.integrations.xgboost import RunstoreCallback

    x, y = _data()
    dtrain, dval = xgb.DMatrix(x[:150], y[:150]), xgb.DMatrix(x[150:], y[150:])
    cb = RunstoreCallback(repo=tmp_path / "repo", experiment="xgb", system_metrics=False)
    xgb.train({"max_depth": 3, "eta": 0.3, "eval_metric": ["rmse", "mae"], "nthread": 1}, dtrain, 5,
              evals=[(dtrain, "train"), (dval, "validation")], early_stopping_rounds=3, callbacks=[cb],
              verbose_eval=False)
    run = Repo(tmp_path / "repo").get_run(cb.run_id)
    assert run.status == "finished" and run.experiment == "xgb"
    for subset in ("train", "val"):
        for metric in ("rmse", "mae"):
            steps, values = curve(run, metric, {"subset": subset})
            assert steps == [0, 1, 2, 3, 4] and all(v > 0 for v in values)
    train = curve(run, "rmse", {"subset": "train"})[1]
    assert train[-1] < train[0]  # it learned
    assert run["xgboost.max_depth"] == 3 and run["xgboost.eta"] == pytest.approx(0.3)
    assert run["summary.best_iteration"] == 4


def test_two_validation_sets_keep_apart(tmp_path):
    import xgboost as xgb

    from runstore.integrations.xgboost import RunstoreCallback

    x, y = _data()
    dtrain = xgb.DMatrix(x[:150], y[:150])
    # the names xgboost's sklearn API gives eval_set entries
    evals = [(xgb.DMatrix(x[150:], y[150:]), "validation_0"), (xgb.DMatrix(x[:50], y[:50]), "validation_1")]
    cb = RunstoreCallback(repo=tmp_path / "repo", system_metrics=False)
    xgb.train({"max_depth": 2, "nthread": 1}, dtrain, 4, evals=evals, callbacks=[cb], verbose_eval=False)
    run = Repo(tmp_path / "repo").get_run(cb.run_id)
    assert curve(run, "rmse", {"subset": "val"})[0] == [0, 1, 2, 3]
    assert curve(run, "rmse", {"subset": "validation_1"})[0] == [0, 1, 2, 3]  # not interleaved into "val"


def test_lightgbm_train_logs_every_eval_result(tmp_path):
    import lightgbm as lgb

    from runstore.integrations.lightgbm import runstore_callback

    x, y = _data()
    train = lgb.Dataset(x[:150], y[:150])
    valid = lgb.Dataset(x[150:], y[150:], reference=train)
    cb = runstore_callback(repo=tmp_path / "repo", experiment="lgbm", system_metrics=False)
    lgb.train({"objective": "regression", "metric": ["l2", "l1"], "num_leaves": 7, "verbose": -1,
               "num_threads": 1, "learning_rate": 0.2}, train, 6, valid_sets=[train, valid],
              valid_names=["training", "valid"], callbacks=[cb])
    run = Repo(tmp_path / "repo").get_run(cb.run_id)
    assert run.status == "finished"
    for subset in ("train", "val"):
        assert curve(run, "l2", {"subset": subset})[0] == list(range(6))
        assert curve(run, "l1", {"subset": subset})[0] == list(range(6))
    assert run["lightgbm.num_leaves"] == 7 and run["lightgbm.objective"] == "regression"


def test_lightgbm_cv_adds_the_spread(tmp_path):
    import lightgbm as lgb

    from runstore.integrations.lightgbm import RunstoreCallback

    x, y = _data()
    cb = RunstoreCallback(repo=tmp_path / "repo", system_metrics=False)
    lgb.cv({"objective": "regression", "metric": "l2", "num_leaves": 7, "verbose": -1, "num_threads": 1},
           lgb.Dataset(x, y), num_boost_round=3, nfold=3, callbacks=[cb], stratified=False)
    run = Repo(tmp_path / "repo").get_run(cb.run_id)
    assert curve(run, "l2", {"subset": "val"})[0] == [0, 1, 2]
    assert all(v >= 0 for v in curve(run, "l2_stdv", {"subset": "val"})[1])
