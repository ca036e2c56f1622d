"""A small generated repository for the UI tests (API and browser)."""

from __future__ import annotations

import numpy as np

from runstore import Repo, Run

MODELS = ("lstm", "gru", "cnn")


def make_ui_repo(path, runs: int = 24, steps: int = 300) -> tuple[Repo, list[str], Run]:
    """(repo, run ids in creation order, the last run, left open: status 'running')."""
    repo = Repo(path)
    rng = np.random.default_rng(0)
    ids = []
    parent = None
    for i in range(runs):
        model = MODELS[i % 3]
        lr = [1e-3, 1e-2, 1e-1][(i // 3) % 3]
        run = Run(repo=repo, experiment="mnist" if i % 4 else "cifar", name=f"{model}-{i}",
                  tags=["best"] if i % 5 == 0 else [], parent=parent if i in (1, 2) else None)
        run["hparams"] = {"lr": lr, "model": model, "layers": 2 + i % 4, "seed": i,
                          "optim": {"name": "adam", "beta": 0.9}}
        x = np.arange(steps)
        loss = np.exp(-x * lr * 5) + rng.normal(0, 0.02, steps) + 0.1
        run.track_many(loss, name="loss", context={"subset": "train"})
        run.track_many(loss[::10] + 0.05, name="loss", steps=x[::10], context={"subset": "val"})
        run.track_many(1 - loss, name="acc", context={"subset": "train"})
        run.track_many(np.linspace(0.1, 0.0, steps) + (0.0 if i else -0.5), name="lr")  # values <= 0 too
        if i == 0:
            parent = run.id
        status = "failed" if i == 5 else "finished"
        if i == runs - 1:
            run.flush()  # the last run stays open ("running") for the live tests
            ids.append(run.id)
            return repo, ids, run
        run.close(status)
        ids.append(run.id)
    raise AssertionError("unreachable")
