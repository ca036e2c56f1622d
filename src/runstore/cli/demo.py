"""``runstore demo``: a small but real training job tracked into a repository.

Logistic regression in NumPy, trained by mini-batch gradient descent on a
generated binary classification problem, once per learning rate. Every step
tracks the training loss; every epoch tracks loss and accuracy on a held-out
validation split. Then a query picks runs by a hyperparameter and prints them.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..tracking.repo import Repo
from ..tracking.run import Run

LEARNING_RATES = (0.003, 0.01, 0.03, 0.1, 0.3)


def make_data(n: int = 4000, dim: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=dim)
    x = rng.normal(size=(n, dim))
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ w) / 2))).astype(np.float64)
    split = int(0.8 * n)
    return (x[:split], y[:split]), (x[split:], y[split:])


def _loss_acc(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    p = 1 / (1 + np.exp(-(x @ w + b)))
    eps = 1e-12
    loss = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))
    return float(loss), float(np.mean((p > 0.5) == y))


def train(run: Run, lr: float, epochs: int, batch_size: int, seed: int) -> dict:
    (xt, yt), (xv, yv) = make_data(seed=seed)
    rng = np.random.default_rng(seed)
    w, b = np.zeros(xt.shape[1]), 0.0
    train_loss = run.sequence("loss", context={"subset": "train"})  # a handle: no lookup per step
    step = 0
    for epoch in range(epochs):
        order = rng.permutation(len(xt))
        for start in range(0, len(xt), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = xt[idx], yt[idx]
            p = 1 / (1 + np.exp(-(xb @ w + b)))
            grad = p - yb
            w -= lr * xb.T @ grad / len(idx)
            b -= lr * float(grad.mean())
            loss, _ = _loss_acc(w, b, xb, yb)
            train_loss.append(loss, step=step, epoch=epoch)
            step += 1
        val_loss, val_acc = _loss_acc(w, b, xv, yv)
        run.log_metrics({"loss": val_loss, "acc": val_acc}, step=step, epoch=epoch, context={"subset": "val"})
    return {"val_loss": val_loss, "val_acc": val_acc}


def run_demo(path: str | os.PathLike | None = None, epochs: int = 20, quiet: bool = False, *,
             fresh: bool = False, repo_hint: str | None = None) -> Repo:
    """Train one run per learning rate into ``path`` (default: the default
    repository, ``./.runstore``), then print a query over them.

    Idempotent: when the repository already holds the demo's finished runs, nothing
    is trained again (``fresh=True`` trains a new set as experiment ``demo-2``, ...).
    ``repo_hint`` is the ``--repo`` to show in the suggested next commands."""
    say = (lambda *a: None) if quiet else print
    repo = Repo(path)
    experiment = "demo"
    done = _finished_demo_runs(repo, experiment)
    if done and fresh:
        n = 2
        while _has_experiment(repo, f"demo-{n}"):
            n += 1
        experiment = f"demo-{n}"
    elif done:
        say(f"runstore demo: nothing to train, the repository already has the demo's {len(done)} runs\n"
            f"  {repo.path}\n"
            "  (experiment 'demo'; runstore demo --fresh trains a new set)")
    if not done or fresh:
        say(f"runstore demo: logistic regression on generated data, experiment {experiment!r}, into")
        say(f"  {repo.path}")
        started = time.perf_counter()
        for lr in LEARNING_RATES:
            with Run(repo=repo, experiment=experiment, name=f"logreg-lr{lr:g}", tags=["demo", "numpy"]) as run:
                run["hparams"] = {"lr": lr, "epochs": epochs, "batch_size": 32,
                                  "model": {"kind": "logreg", "dim": 20}}
                final = train(run, lr, epochs, batch_size=32, seed=0)
                say(f"  run {run.handle}  lr={lr:<6g} val_loss={final['val_loss']:.4f}  "
                    f"val_acc={final['val_acc']:.3f}")
        say(f"trained {len(LEARNING_RATES)} runs in {time.perf_counter() - started:.2f}s")
    _show_query(repo, experiment, say)
    _next_commands(repo, experiment, repo_hint, say)
    return repo


def _finished_demo_runs(repo: Repo, experiment: str) -> list:
    names = {f"logreg-lr{lr:g}" for lr in LEARNING_RATES}
    runs = repo.query(f"run.experiment == {experiment!r} and run.status == 'finished'")
    found = {r.name: r for r in runs if r.name in names}
    return list(found.values()) if len(found) == len(names) else []


def _has_experiment(repo: Repo, experiment: str) -> bool:
    return len(repo.query(f"run.experiment == {experiment!r}")) > 0


def _next_commands(repo: Repo, experiment: str, repo_hint: str | None, say) -> None:
    import shlex

    rs = "runstore" + (f" --repo {shlex.quote(repo_hint)}" if repo_hint else "")
    runs = repo.query(f"run.experiment == {experiment!r}")
    best = max(runs, key=lambda r: r.get("acc@subset=val.last", default=0.0), default=None)
    other = min(runs, key=lambda r: r.get("acc@subset=val.last", default=0.0), default=None)
    where = f"\"run.experiment == '{experiment}'\""
    lines = [
        f"{rs} ls",
        f"{rs} show {best.handle}" if best else f"{rs} show <handle>",
        f"{rs} diff {best.handle} {other.handle}" if best and other else f"{rs} diff <handle> <handle>",
        f"{rs} plot {where} --metric loss@subset=val",
        f"{rs} experiments --metric acc@subset=val.max",
    ]
    try:
        from . import cli

        if "ui" in cli.commands:
            lines.append(f"{rs} ui")
    except ImportError:  # pragma: no cover - the CLI ships with runstore
        pass
    say("\nnext, try:")
    for cmd in lines:
        say(f"  {cmd}")


def _show_query(repo: Repo, experiment: str, say) -> None:
    query = f"run.experiment == {experiment!r} and run.hparams.lr >= 0.01 and seq.name == 'acc'"
    t = time.perf_counter()
    runs = repo.query(query)
    ms = (time.perf_counter() - t) * 1000
    say(f"\nrepo.query() selected {len(runs)} runs in {ms:.1f} ms:\n  {query}")
    seqs = repo.query_sequences(
        f"seq.name == 'acc' and seq.context.subset == 'val' and run.experiment == {experiment!r} "
        "and run.hparams.lr >= 0.01"
    )
    rows = sorted(((s.run["hparams"]["lr"], s.last, s.max, s.run.handle) for s in seqs), key=lambda r: -r[1])
    say(f"  {'lr':>8}  {'val acc (last)':>14}  {'val acc (best)':>14}  run")
    for lr, last, best, rid in rows:
        say(f"  {lr:>8g}  {last:>14.3f}  {best:>14.3f}  {rid}")
    table = seqs.to_arrow()
    say(f"\nthe same curves as one Arrow table (seqs.to_arrow()), {table.num_rows} rows:\n"
        f"  {', '.join(table.column_names)}")
