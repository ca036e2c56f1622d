"""Optuna: a run per trial, and several processes sharing one study through the
journal storage in the repository."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runstore import Repo

WORKER = textwrap.dedent("""
    import sys
    import optuna
    from runstore.integrations.optuna import RunstoreCallback, runstore_journal_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    repo = sys.argv[1]

    def objective(trial):
        x = trial.suggest_float("x", -5, 5)
        for step in range(3):
            trial.report((x - 1) ** 2 + 1 / (step + 1), step)
        return (x - 1) ** 2

    study = optuna.load_study(study_name="shared", storage=runstore_journal_storage(repo))
    study.optimize(objective, n_trials=3, callbacks=[RunstoreCallback(repo=repo)])
""")


def test_a_run_per_trial_with_params_value_state_and_curve(tmp_path):
    import optuna

    from runstore.integrations.optuna import RunstoreCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        layers = trial.suggest_int("layers", 1, 3)
        for step in range(4):
            trial.report(lr * (4 - step), step)
        if trial.number == 2:
            raise optuna.TrialPruned()
        if trial.number == 3:
            raise ValueError("diverged")
        return lr * layers

    study = optuna.create_study(study_name="search", sampler=optuna.samplers.RandomSampler(seed=0))
    callback = RunstoreCallback(repo=tmp_path / "repo")
    study.optimize(objective, n_trials=4, callbacks=[callback], catch=(ValueError,))

    repo = Repo(tmp_path / "repo")
    trials = {run["optuna.number"]: run for run in repo.query("run.optuna.number >= 0")}
    assert sorted(trials) == [0, 1, 2, 3]
    first = trials[0]
    assert first.experiment == "search" and first.name == "trial-0" and first.status == "finished"
    assert first["hparams"] == study.trials[0].params
    assert first["value"] == pytest.approx(study.trials[0].value)
    seq = first.sequence("intermediate_value")
    assert list(seq.steps) == [0, 1, 2, 3]
    assert trials[2].status == "finished" and "pruned" in trials[2].tags and trials[2]["optuna.state"] == "PRUNED"
    assert trials[3].status == "failed" and "value" not in trials[3].params
    parents = {run.parent for run in trials.values()}
    assert len(parents) == 1
    study_run = repo.get_run(parents.pop())
    assert study_run.name == "search" and study_run["optuna.directions"] == ["minimize"]
    assert study_run["best"][0]["number"] == study.best_trial.number
    assert study.user_attrs["runstore_run"] == study_run.id


@pytest.mark.slow
def test_processes_share_one_study_through_the_journal(tmp_path):
    import optuna

    from runstore.integrations.optuna import runstore_journal_storage

    repo_path = tmp_path / "repo"
    optuna.create_study(study_name="shared", storage=runstore_journal_storage(repo_path))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    root = Path(__file__).resolve().parents[2]
    workers = [subprocess.Popen([sys.executable, str(script), str(repo_path)], cwd=root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err.decode()

    study = optuna.load_study(study_name="shared", storage=runstore_journal_storage(repo_path))
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(9))  # unique trial numbers across the three processes
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    runs = Repo(repo_path).query("run.optuna.number >= 0")
    assert sorted(r["optuna.number"] for r in runs) == list(range(9))
    assert len({r.parent for r in runs}) == 1  # one study run, however the processes raced
    assert (repo_path / "optuna" / "journal.log").exists()
