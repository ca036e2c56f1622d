"""Aim on the peer workloads (run it with the interpreter that has aim installed).

Used the way Aim's docs show: ``Run(repo=..., experiment=...)``, params with
``run["hparams"] = {...}``, ``run.track(value, name=, step=, context=)`` (or a
dict of values per call, Aim's batching form), ``run.close()``; reads through
``Repo.query_runs`` / ``Repo.query_metrics`` with Aim's Python-expression query
language. Aim's default tracking is synchronous (AIM_ENABLE_TRACKING_THREAD
unset): each value is a RocksDB write (its write-ahead log is not synced per
write), and ``close()`` flushes the run's memtables and write-ahead log.
"""

from __future__ import annotations

import logging
import time
from importlib.metadata import version

import _workloads as w
from aim import Repo, Run
from aim.sdk.types import QueryReportMode

logging.getLogger("aim").setLevel(logging.ERROR)


def _repo(path) -> str:
    Repo.from_path(str(path), init=True)  # `aim init`: outside the clock
    return str(path)


def track_per_value(wd: w.Workdir, steps: int, _subset: int) -> tuple[float, int]:
    repo = _repo(wd.sub("track-value"))
    run = Run(repo=repo, experiment="bench")
    track, names, ctx = run.track, w.NAMES, w.CONTEXT
    t = time.perf_counter()
    for step in range(steps):
        values = w.step_values(step)
        for name in names:
            track(values[name], name=name, step=step, context=ctx)
    run.close()
    return time.perf_counter() - t, steps


def track_batched(wd: w.Workdir, steps: int, _subset: int) -> tuple[float, int]:
    repo = _repo(wd.sub("track-batched"))
    run = Run(repo=repo, experiment="bench")
    track, ctx = run.track, w.CONTEXT
    t = time.perf_counter()
    for step in range(steps):
        track(w.step_values(step), step=step, context=ctx)  # a dict: all names at once
    run.close()
    return time.perf_counter() - t, steps


def build(wd: w.Workdir, params: list[dict]) -> tuple[float, str]:
    repo = Repo.from_path(_repo(wd.sub("build")))
    t = time.perf_counter()
    for i, p in enumerate(params):
        run = Run(repo=repo, experiment="build")
        run["hparams"] = p
        for step, value in enumerate(w.loss_curve(i)):
            run.track(value, name=w.METRIC, step=step)
        run.close()
    return time.perf_counter() - t, str(wd.sub("build"))


def index(path: str) -> None:
    # What `aim storage reindex -y` does. Aim 3.x queries read the index database;
    # runs written by the SDK reach it only through the indexing thread of a running
    # `aim up` server or through this command.
    Repo.from_path(path)._recreate_index()


def select(path: str) -> list[str]:
    repo = Repo.from_path(path)
    q = repo.query_runs(f"run.hparams.lr < {w.LR_CUTOFF}", report_mode=QueryReportMode.DISABLED)
    return [rc.run.hash for rc in q.iter_runs()]


def fetch(path: str) -> list[tuple]:
    repo = Repo.from_path(path)
    q = repo.query_metrics(f"metric.name == '{w.METRIC}' and run.hparams.lr < {w.LR_CUTOFF}",
                           report_mode=QueryReportMode.DISABLED)
    out = []
    for metric in q.iter():
        steps, (values, _epochs, _times) = metric.data.numpy()
        out.append((steps, values))
    return out


if __name__ == "__main__":
    w.main("aim", version("aim"), track_per_value=track_per_value, track_batched=track_batched,
           build=build, index=index, select=select, fetch=fetch,
           notes={"track_batched": "run.track(dict_of_values, step=, context=) per step",
                  "durability": "synchronous writes to per-run RocksDB chunks (WAL not synced per write); "
                                "close() flushes memtables and WAL"})
