"""Ray Tune with a real local Ray: a run per trial, training_iteration as the step."""

import pytest

from runstore import Repo
from tests.integrations.conftest import curve

pytestmark = pytest.mark.slow


def test_tuner_writes_a_run_per_trial(tmp_path):
    import ray
    from ray import tune

    from runstore.integrations.ray import RunstoreLoggerCallback

    def _trainable(config):  # defined here: Ray's workers get it by value, not by module name
        from ray import tune

        for i in range(3):
            tune.report({"train_loss": config["lr"] * (3 - i), "val_acc": 0.5 + 0.1 * i})

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        callback = RunstoreLoggerCallback(repo=tmp_path / "repo", experiment="tune")
        tuner = tune.Tuner(_trainable, param_space={"lr": tune.grid_search([0.1, 0.2])},
                           run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), callbacks=[callback],
                                                     verbose=0))
        results = tuner.fit()
        assert not results.errors
    finally:
        ray.shutdown()
    runs = Repo(tmp_path / "repo").query("run.experiment == 'tune'")
    assert sorted(r["hparams.lr"] for r in runs) == [0.1, 0.2]
    for run in runs:
        assert run.status == "finished"
        steps, values = curve(run, "loss", {"subset": "train"})
        assert steps == [1, 2, 3] and values == pytest.approx([run["hparams.lr"] * k for k in (3, 2, 1)])
        assert curve(run, "acc", {"subset": "val"})[0] == [1, 2, 3]
        assert not any(name.startswith("time_") for name, _ in run.sequences())
