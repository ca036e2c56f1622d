"""Print mean +- std of every final metric per trial of the example experiment.

    python examples/experiment/pipeline.py      # run the experiment first
    python examples/analyze.py                  # or: python examples/analyze.py PATH/TO/REPO

It queries the repeat runs (``run.kind == 'repeat'``, one per trial and repeat, not
archived), recomputes the statistics from each run's ``results`` and checks them
against the summary the experiment stored on each trial's parent run.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from runstore import Repo

EXPERIMENT = "spiral"


def main(repo_path: str) -> int:
    repo = Repo(repo_path, create=False)
    repeats = list(repo.query(
        f"run.experiment == '{EXPERIMENT}' and run.kind == 'repeat' and run.status == 'finished' "
        "and not run.archived"
    ))
    if not repeats:
        print(f"no finished runs of experiment {EXPERIMENT!r} in {repo_path}; run examples/experiment/pipeline.py first")
        return 1
    by_trial: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    parents: dict[str, str] = {}
    for run in repeats:
        params = run.params
        for metric, value in params.get("results", {}).items():
            by_trial[params["trial"]][metric].append(value)
        parents[params["trial"]] = run.parent

    for trial, metrics in sorted(by_trial.items()):
        parent = repo.get_run(parents[trial])
        stored = parent.params.get("summary", {})
        n = len(next(iter(metrics.values())))
        print(f"trial {trial} ({n} repeats, seeds {parent.params.get('seeds')}):")
        for metric, values in sorted(metrics.items()):
            arr = np.asarray(values)
            mean = arr.mean()
            std = arr.std(ddof=1) if len(arr) > 1 else 0.0  # sample std, as in the parent's summary
            check = "" if np.isclose(stored.get(metric, {}).get("mean", np.nan), mean) else "  (parent summary differs!)"
            print(f"  {metric:<16} {mean:8.4f} +- {std:.4f}{check}")
    return 0


if __name__ == "__main__":
    default = Path(__file__).parent / "experiment" / "runs"
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(default)))
