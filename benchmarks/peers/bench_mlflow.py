"""MLflow with its SQLite tracking store on the peer workloads (run it with the interpreter that has mlflow).

Used the way MLflow's docs show for programmatic logging: ``MlflowClient`` on a
``sqlite:///`` tracking URI, ``create_run`` / ``log_batch`` (its batching API:
at most 1,000 metrics and 100 params per call) / ``set_terminated``, and
``search_runs`` + ``get_metric_history`` for reading. Every call is one SQLite
transaction, committed (and fsynced: SQLite's default synchronous=FULL) before
it returns, so nothing is left to flush at the end.

MLflow params are strings, and ``search_runs`` compares params only with
``=``, ``!=``, ``LIKE``, ``ILIKE``, ``IS [NOT] NULL``: ``params.lr < 0.01`` is
not expressible. The
nearest honest equivalent, and what MLflow users do, is to log the number as a
metric as well; so every run of workload 2 logs ``lr`` as a param *and* as a
one-point metric (in the same ``log_batch`` call; +1 % points), and selection
filters on ``metrics.lr < 0.01``. The other way, fetching every run and
filtering ``float(params["lr"])`` in Python, is measured too ("select_params_client_side").
"""

from __future__ import annotations

import logging
import os
import time

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

import _workloads as w  # noqa: E402
import numpy as np  # noqa: E402

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.ERROR)
logging.getLogger("alembic").setLevel(logging.ERROR)

EXPERIMENT = "bench"


def _store(path) -> tuple[MlflowClient, str]:
    """A fresh SQLite store (schema migrations run here, outside the clock) and an experiment."""
    path.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{path / 'mlflow.db'}")
    exp = client.create_experiment(EXPERIMENT, artifact_location=(path / "artifacts").as_uri())
    return client, exp


def _client(path: str) -> tuple[MlflowClient, str]:
    client = MlflowClient(tracking_uri=f"sqlite:///{os.path.join(path, 'mlflow.db')}")
    return client, client.get_experiment_by_name(EXPERIMENT).experiment_id


def _key(name: str) -> str:
    # MLflow has no context: the nearest equivalent is a prefix in the metric key.
    return f"{w.CONTEXT['subset']}/{name}"


def track_per_value(wd: w.Workdir, steps: int, subset: int) -> tuple[float, int]:
    """client.log_metric per value: one SQLite transaction each, so timed on a subset of steps."""
    client, exp = _store(wd.sub("track-value"))
    run_id = client.create_run(exp).info.run_id
    keys = {name: _key(name) for name in w.NAMES}
    log_metric, names = client.log_metric, w.NAMES
    t = time.perf_counter()
    for step in range(subset):
        values = w.step_values(step)
        for name in names:
            log_metric(run_id, keys[name], values[name], step=step)
    client.set_terminated(run_id)
    return time.perf_counter() - t, subset


def track_batched(wd: w.Workdir, steps: int, _subset: int) -> tuple[float, int]:
    """client.log_batch with 1,000 metrics (200 steps) per call, MLflow's documented maximum."""
    client, exp = _store(wd.sub("track-batched"))
    run_id = client.create_run(exp).info.run_id
    keys = {name: _key(name) for name in w.NAMES}
    per_call = 1000 // len(w.NAMES)
    t = time.perf_counter()
    batch: list[Metric] = []
    for step in range(steps):
        ts = int(time.time() * 1000)
        for name, value in w.step_values(step).items():
            batch.append(Metric(keys[name], value, ts, step))
        if (step + 1) % per_call == 0:
            client.log_batch(run_id, metrics=batch)
            batch = []
    if batch:
        client.log_batch(run_id, metrics=batch)
    client.set_terminated(run_id)
    return time.perf_counter() - t, steps


def track_fluent_per_step(wd: w.Workdir, steps: int, subset: int) -> tuple[float, int]:
    """mlflow.log_metrics(dict, step) once per step, synchronous (a training loop's usual call)."""
    path = wd.sub("track-fluent")
    client, exp = _store(path)
    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlflow.db'}")
    mlflow.set_experiment(experiment_id=exp)
    keys = {name: _key(name) for name in w.NAMES}
    mlflow.start_run()
    t = time.perf_counter()
    for step in range(subset):
        mlflow.log_metrics({keys[k]: v for k, v in w.step_values(step).items()}, step=step)
    mlflow.end_run()
    return time.perf_counter() - t, subset


def track_fluent_async(wd: w.Workdir, steps: int, subset: int) -> tuple[float, int]:
    """mlflow.log_metrics(dict, step, synchronous=False): a background thread batches the
    writes; end_run() waits for it, so the data is durable when the clock stops. Timed on
    a subset of steps: on this store it is no faster than the synchronous call."""
    path = wd.sub("track-async")
    client, exp = _store(path)
    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlflow.db'}")
    mlflow.set_experiment(experiment_id=exp)
    keys = {name: _key(name) for name in w.NAMES}
    mlflow.start_run()
    t = time.perf_counter()
    for step in range(subset):
        mlflow.log_metrics({keys[k]: v for k, v in w.step_values(step).items()}, step=step, synchronous=False)
    mlflow.end_run()  # flushes the async queue
    return time.perf_counter() - t, subset


def build(wd: w.Workdir, params: list[dict]) -> tuple[float, str]:
    path = wd.sub("build")
    client, exp = _store(path)
    t = time.perf_counter()
    for i, p in enumerate(params):
        run_id = client.create_run(exp).info.run_id
        ts = int(time.time() * 1000)
        metrics = [Metric(w.METRIC, v, ts, step) for step, v in enumerate(w.loss_curve(i))]
        metrics.append(Metric("lr", p["lr"], ts, 0))  # numeric copy of the param, see the module docstring
        client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in p.items()])
        client.set_terminated(run_id)
    return time.perf_counter() - t, str(path)


def _search(client: MlflowClient, exp: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([exp], filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def select(path: str) -> list[str]:
    client, exp = _client(path)
    return [r.info.run_id for r in _search(client, exp, f"metrics.lr < {w.LR_CUTOFF}")]


def select_params_client_side(path: str) -> list[str]:
    client, exp = _client(path)
    return [r.info.run_id for r in _search(client, exp, "") if float(r.data.params["lr"]) < w.LR_CUTOFF]


def fetch(path: str) -> list[tuple]:
    client, exp = _client(path)
    out = []
    for run in _search(client, exp, f"metrics.lr < {w.LR_CUTOFF}"):
        history = client.get_metric_history(run.info.run_id, w.METRIC)
        steps = np.fromiter((m.step for m in history), np.int64, len(history))
        values = np.fromiter((m.value for m in history), np.float64, len(history))
        order = np.argsort(steps, kind="stable")
        out.append((steps[order], values[order]))
    return out


if __name__ == "__main__":
    w.main("mlflow", mlflow.__version__, track_per_value=track_per_value, track_batched=track_batched,
           extras={"log_metrics_per_step_sync": track_fluent_per_step,
                   "log_metrics_per_step_async": track_fluent_async},
           build=build, select=select, fetch=fetch,
           extra_reads={"select_params_client_side": select_params_client_side},
           notes={"track_per_value": "client.log_metric per value (timed on --subset-steps steps)",
                  "track_batched": "client.log_batch, 1,000 metrics per call",
                  "build": "one log_batch per run (100 points + the lr metric + 3 params), then set_terminated",
                  "select": "search_runs filter_string 'metrics.lr < 0.01' (params are strings)",
                  "durability": "each call is a committed SQLite transaction (synchronous=FULL)"})
