"""Optuna: a run per trial, and a journal storage in the repository.

    import optuna
    from runstore.integrations.optuna import RunstoreCallback, runstore_journal_storage

    study = optuna.create_study(study_name="lr-search", storage=runstore_journal_storage("runs"),
                                load_if_exists=True)
    study.optimize(objective, n_trials=20, callbacks=[RunstoreCallback(repo="runs")])

``RunstoreCallback`` is called by Optuna after each trial with ``(study, trial)`` and
writes one run per trial: experiment = the study's name, name ``trial-<number>``, the
sampled params under ``params``, the objective under ``value`` (``values`` for several
objectives, with ``metric_names`` when given), the trial's state and number under
``optuna``, the pruning reports (``trial.report(v, step)``) as the curve
``intermediate_value``. A failed trial's run is ``failed``; a pruned one is
``finished`` with the tag ``pruned``. All trial runs are children of one run for
the study (its id kept in the study's user attribute ``runstore_run``), whose param
``best`` follows the best trial.

``runstore_journal_storage(repo)`` is Optuna's ``JournalStorage`` on a journal file
inside the repository folder (``<repo>/optuna/<name>.log``), written through Optuna's
own file backend and lock: several processes, on this machine, share one study
without a database server.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ._common import Guard, clean_params, require

_optuna = require("optuna", "optuna")
_journal = _optuna.storages.journal


class RunstoreJournalBackend(_journal.BaseJournalBackend):
    """Optuna's ``BaseJournalBackend`` on a file inside a runstore repository."""

    def __init__(self, repo: Any = None, name: str = "journal") -> None:
        from .. import Repo

        if not name or "/" in name or name.startswith("."):
            from ..errors import ConfigError

            raise ConfigError(f"a journal name is a plain file name, got {name!r}")
        repo = repo if isinstance(repo, Repo) else Repo(repo)
        if getattr(repo, "spool_dir", None) is not None:  # Repo("grpc://..."): no directory here
            from ..errors import ConfigError

            raise ConfigError(
                f"the journal storage is a file in a local repository, and {repo.path} is served by runstore "
                "server; give runstore_journal_storage the repository's directory (processes on the server's "
                "host), or use one of Optuna's storages that spans machines (RDB, gRPC proxy)"
            )
        folder = Path(repo.path) / "optuna"
        folder.mkdir(exist_ok=True)
        self.path = folder / f"{name}.log"
        # Optuna's own backend and lock: appends are whole lines under an open(O_EXCL) lock
        self._file = _journal.JournalFileBackend(str(self.path), lock_obj=_journal.JournalFileOpenLock(str(self.path)))

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        return self._file.read_logs(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self._file.append_logs(logs)


def runstore_journal_storage(repo: Any = None, name: str = "journal") -> Any:
    """An Optuna ``JournalStorage`` kept in the repository (pass it as ``storage=``)."""
    return _journal.JournalStorage(RunstoreJournalBackend(repo, name))


_STATUS = {"COMPLETE": "finished", "PRUNED": "finished", "FAIL": "failed", "RUNNING": "running",
           "WAITING": "running"}


class RunstoreCallback:
    """An Optuna study callback writing one run per finished trial."""

    def __init__(self, repo: Any = None, experiment: str | None = None,
                 metric_names: Sequence[str] | None = None, parent: bool = True, **run_kwargs: Any) -> None:
        from .. import Repo

        self.repo = repo if isinstance(repo, Repo) else Repo(repo)
        self._experiment = experiment
        self._metric_names = list(metric_names) if metric_names else None
        self._parent = parent
        self._run_kwargs = {"system_metrics": False, **run_kwargs}  # the trial is over: nothing to sample
        self._guard = Guard("optuna callback")
        self.run_ids: dict[int, str] = {}  # trial number -> run id, for the trials this process saw
        self._parents: dict[str, str] = {}  # study name -> its run id

    def __call__(self, study: Any, trial: Any) -> None:
        self._guard(self._record, study, trial)

    def _record(self, study: Any, trial: Any) -> None:
        from .. import Run

        experiment = self._experiment or study.study_name
        parent = self._parent_run(study, experiment) if self._parent else None
        state = trial.state.name
        run = Run(repo=self.repo, experiment=experiment, name=f"trial-{trial.number}", parent=parent,
                  tags=["pruned"] if state == "PRUNED" else None, **self._run_kwargs)
        try:
            run["hparams"] = clean_params(trial.params)
            info = {"study": study.study_name, "number": trial.number, "state": state,
                    "distributions": {k: repr(v) for k, v in trial.distributions.items()}}
            if trial.datetime_start and trial.datetime_complete:
                info["duration"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.user_attrs:
                info["user_attrs"] = clean_params(trial.user_attrs)
            run["optuna"] = info
            values = trial.values
            if values is not None:
                if len(values) == 1 and not self._metric_names:
                    run["value"] = float(values[0])
                elif self._metric_names and len(self._metric_names) == len(values):
                    run["values"] = {name: float(v) for name, v in zip(self._metric_names, values)}
                else:
                    run["values"] = [float(v) for v in values]
            for step, value in sorted(trial.intermediate_values.items()):
                run.track(float(value), name="intermediate_value", step=int(step))
        finally:
            run.close(_STATUS.get(state, "finished"))
        self.run_ids[trial.number] = run.id
        if parent is not None:
            self._update_best(study, parent)

    def _parent_run(self, study: Any, experiment: str) -> str:
        from .. import Run

        known = self._parents.get(study.study_name)
        if known is not None:
            return known
        # processes sharing the study must agree on one study run: check-and-create under a
        # file lock in the repository (same machine; storages spanning machines may race
        # at the very first trial and get two study runs, which is harmless)
        # (a grpc:// repository has no directory here: the lock goes beside its client spool,
        # which is per server and per machine too)
        folder = getattr(self.repo, "spool_dir", None) or self.repo.path
        with _file_lock(Path(folder) / "optuna" / "study-run.lock"):
            found = _study_attr(study, "runstore_run")
            if not (found and found in self.repo):
                with Run(repo=self.repo, experiment=experiment, name=study.study_name, system_metrics=False,
                         tags=["optuna-study"]) as run:
                    run["optuna"] = {"study": study.study_name,
                                     "directions": [d.name.lower() for d in study.directions]}
                study.set_user_attr("runstore_run", run.id)
                found = run.id
        self._parents[study.study_name] = found
        return found

    def _update_best(self, study: Any, parent: str) -> None:
        try:
            best = study.best_trials if len(study.directions) > 1 else [study.best_trial]
        except ValueError:  # no completed trial yet
            return
        view = self.repo.get_run(parent)
        view["best"] = [{"number": t.number, "values": [float(v) for v in t.values],
                         "params": clean_params(t.params), "run": self.run_ids.get(t.number)}
                        for t in best][:10]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no lock (see _parent_run)
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _study_attr(study: Any, key: str) -> Any:
    # study.user_attrs may be cached by the storage: ask the storage itself
    return study._storage.get_study_user_attrs(study._study_id).get(key)


__all__ = ["RunstoreCallback", "RunstoreJournalBackend", "runstore_journal_storage"]
