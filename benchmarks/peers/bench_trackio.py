"""trackio (local mode) on the peer workloads (run it with the interpreter that has trackio).

Used the way trackio's README shows: ``trackio.init(project=, name=, config=)``,
``trackio.log(dict, step=)`` once per step (its only logging call; there is no
per-value call and no context), ``trackio.finish()``. ``log`` appends to an
in-memory queue that a background thread writes to the project's SQLite file
every 0.5 s; ``finish()`` joins that thread, so the data is in SQLite when the
clock stops (WAL mode with synchronous=NORMAL: committed, but not fsynced until
a checkpoint).

Reading: ``trackio.Api().runs(project)`` and ``run.config`` (public) select the
runs; trackio has no query language, so ``lr < 0.01`` is a Python filter over
the configs. The points come from ``SQLiteStorage.get_metric_values``, what the
``trackio get metric`` command calls (trackio has no public Python API that
returns a metric's history); every row holds one step's metrics as JSON.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from importlib.metadata import version
from pathlib import Path

import _workloads as w

PROJECT_TRACK, PROJECT_BUILD = "track", "build"


def _trackio(directory) -> object:
    """trackio, imported with TRACKIO_DIR = ``directory``.

    trackio reads TRACKIO_DIR once, at import, so every process of this script
    imports it lazily, after choosing its directory (one per process)."""
    if "TRACKIO_DIR" not in os.environ:
        Path(directory).mkdir(parents=True, exist_ok=True)
        os.environ["TRACKIO_DIR"] = str(directory)
    assert os.environ["TRACKIO_DIR"] == str(directory), "one trackio directory per process"
    import trackio

    return trackio


@contextlib.contextmanager
def _quiet():
    # init() and finish() print banners and dashboard instructions; keep them out of the result stream
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _init(trackio, project: str, name: str, config: dict | None = None) -> None:
    with _quiet():
        trackio.init(project=project, name=name, config=config, auto_log_cpu=False, auto_log_gpu=False, embed=False)


def _finish(trackio) -> None:
    with _quiet():
        trackio.finish()


def track_batched(wd: w.Workdir, steps: int, _subset: int) -> tuple[float, int]:
    trackio = _trackio(wd.sub("trackio"))
    _init(trackio, PROJECT_TRACK, "track-batched")
    log = trackio.log
    prefix = w.CONTEXT["subset"] + "/"  # no context: the nearest equivalent is a key prefix
    t = time.perf_counter()
    for step in range(steps):
        log({prefix + k: v for k, v in w.step_values(step).items()}, step=step)
    _finish(trackio)
    return time.perf_counter() - t, steps


def build(wd: w.Workdir, params: list[dict]) -> tuple[float, str]:
    trackio = _trackio(wd.sub("trackio"))
    if (wd.sub("trackio") / f"{PROJECT_TRACK}.db").exists():
        with _quiet():
            trackio.delete_project(PROJECT_TRACK, force=True)  # leave only workload 2's files for the disk figure
    log = trackio.log
    t = time.perf_counter()
    for i, p in enumerate(params):
        _init(trackio, PROJECT_BUILD, f"run-{i}", config=p)
        for step, value in enumerate(w.loss_curve(i)):
            log({w.METRIC: value}, step=step)
        _finish(trackio)
    return time.perf_counter() - t, str(wd.sub("trackio"))


def _prepare(path: str) -> None:
    """The imports of a read, outside the clocks as every tool's are (trackio can be
    imported only once its directory is known, so not at the top of this script)."""
    _trackio(path)
    import numpy  # noqa: F401
    import trackio.sqlite_storage  # noqa: F401


def _selected(trackio) -> list:
    runs = trackio.Api().runs(PROJECT_BUILD)
    return [r for r in runs if (r.config or {}).get("lr", float("inf")) < w.LR_CUTOFF]


def select(path: str) -> list[str]:
    return [r.name for r in _selected(_trackio(path))]


def fetch(path: str) -> list[tuple]:
    import numpy as np

    trackio = _trackio(path)
    from trackio.sqlite_storage import SQLiteStorage

    out = []
    for run in _selected(trackio):
        rows = SQLiteStorage.get_metric_values(PROJECT_BUILD, run.name, w.METRIC, run_id=run.id)
        steps = np.fromiter((r["step"] for r in rows), np.int64, len(rows))
        values = np.fromiter((r["value"] for r in rows), np.float64, len(rows))
        order = np.argsort(steps, kind="stable")
        out.append((steps[order], values[order]))
    return out


if __name__ == "__main__":
    w.main("trackio", version("trackio"), track_batched=track_batched, build=build, select=select, fetch=fetch,
           prepare=_prepare,
           notes={"track_batched": "trackio.log(dict, step) per step (trackio has no per-value call)",
                  "select": "Api().runs(project) + Python filter on run.config['lr'] (no query language)",
                  "fetch": "SQLiteStorage.get_metric_values per run (what `trackio get metric` calls)",
                  "durability": "a background thread writes SQLite every 0.5 s (WAL, synchronous=NORMAL); "
                                "finish() joins it"})
