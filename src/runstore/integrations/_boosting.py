"""What the gradient-boosting callbacks (xgboost, lightgbm) share: data set names as
subsets, and a run that is closed when boosting ends."""

from __future__ import annotations

from typing import Any, Mapping

from ._common import Guard, open_run, prefix_map


def subset_of(dataset: str, prefixes: Mapping[str, str] | None) -> str:
    """``"validation_0"`` / ``"valid"`` / ``"eval"`` -> ``"val"``; ``"train"`` -> ``"train"``;
    a name no prefix matches is kept as it is (``"holdout"``)."""
    if prefixes:
        lowered = dataset.lower()
        if lowered in prefixes:
            return prefixes[lowered]
        for sep in ("_", "-", "/"):
            head = lowered.partition(sep)[0]
            if head in prefixes:
                return prefixes[head]
    return dataset


class BoostingRun:
    """The run a boosting callback writes to, opened on the first iteration."""

    def __init__(self, what: str, run: Any, repo: Any, experiment: str | None, name: str | None,
                 run_id: str | None, context_from_prefix: bool | Mapping[str, str], close_on_end: bool | None,
                 run_kwargs: dict) -> None:
        self._args = (run, repo, experiment, name, run_id)
        self._run_kwargs = run_kwargs
        self._prefixes = prefix_map(context_from_prefix) or {}
        self._subsets: dict[str, str] = {}
        self._close = (run is None) if close_on_end is None else close_on_end
        self._run: Any = None
        self._guard = Guard(what)

    @property
    def run(self) -> Any:
        if self._run is None:
            self._run = open_run(*self._args, **self._run_kwargs)
        return self._run

    @property
    def run_id(self) -> str | None:
        return None if self._run is None else self._run.id

    def subset(self, dataset: str) -> str:
        found = self._subsets.get(dataset)
        if found is None:
            found = subset_of(dataset, self._prefixes)
            if found in self._subsets.values():  # validation_0 took "val": validation_1 keeps its name
                found = dataset
            self._subsets[dataset] = found
        return found

    def track_eval(self, dataset: str, metric: str, value: Any, step: int) -> None:
        context = {"subset": self.subset(dataset)}
        if isinstance(value, (tuple, list)):  # cv: (mean, stdv)
            self.run.track(float(value[0]), name=metric, step=step, context=context)
            self.run.track(float(value[1]), name=metric + "_stdv", step=step, context=context)
        else:
            self.run.track(float(value), name=metric, step=step, context=context)

    def end(self) -> None:
        if self._run is None or self._run.closed:
            return
        if self._close:
            self._run.close("finished")
        else:
            self._run.flush()
