"""runstore on the peer workloads (see run_peers.py; runs under the interpreter that has runstore).

Used the way docs/guide.md shows: ``run.track`` per value (or ``run.log_metrics``
per step), params as a nested dict, ``close()`` at the end (it flushes the
buffered blocks in one LMDB write transaction, which fsyncs), and
``repo.query`` / ``repo.query_sequences`` for reading.
"""

from __future__ import annotations

import time

import _workloads as w

import runstore
from runstore import Repo, Run


def track_per_value(wd: w.Workdir, steps: int, _subset: int) -> tuple[float, int]:
    run = Run(repo=Repo(wd.sub("track-value")), experiment="bench")
    track, names, ctx = run.track, w.NAMES, w.CONTEXT
    t = time.perf_counter()
    for step in range(steps):
        values = w.step_values(step)
        for name in names:
            track(values[name], name, step=step, context=ctx)
    run.close()  # the last flush (and its fsync) counts
    return time.perf_counter() - t, steps


def track_batched(wd: w.Workdir, steps: int, _subset: int) -> tuple[float, int]:
    run = Run(repo=Repo(wd.sub("track-batched")), experiment="bench")
    log_metrics, ctx = run.log_metrics, w.CONTEXT
    t = time.perf_counter()
    for step in range(steps):
        log_metrics(w.step_values(step), step=step, context=ctx)
    run.close()
    return time.perf_counter() - t, steps


def build(wd: w.Workdir, params: list[dict]) -> tuple[float, str]:
    path = wd.sub("build")
    repo = Repo(path)
    t = time.perf_counter()
    for i, p in enumerate(params):
        run = Run(repo=repo, experiment="build")
        run["hparams"] = p
        for step, value in enumerate(w.loss_curve(i)):
            run.track(value, name=w.METRIC, step=step)
        run.close()
    return time.perf_counter() - t, str(path)


def select(path: str) -> list[str]:
    return Repo(path, create=False).query(f"run.hparams.lr < {w.LR_CUTOFF}").ids


def fetch(path: str) -> list[tuple]:
    seqs = Repo(path, create=False).query_sequences(f"seq.name == '{w.METRIC}' and run.hparams.lr < {w.LR_CUTOFF}")
    return [(s["steps"], s["values"]) for s in seqs.to_numpy()]


if __name__ == "__main__":
    w.main("runstore", runstore.__version__ if hasattr(runstore, "__version__") else "0.1.0",
           track_per_value=track_per_value, track_batched=track_batched, build=build, select=select, fetch=fetch,
           notes={"track_batched": "run.log_metrics(dict, step, context) per step",
                  "durability": "close() commits the last blocks in one LMDB transaction (fsync)"})
