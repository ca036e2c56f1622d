"""The workloads every peer script runs, and the plumbing they share.

This module is imported by scripts running under *other* interpreters (the
peers' virtual environment does not have runstore), so it depends on nothing
but the standard library and NumPy.

A peer script defines one function per workload and hands them to ``main``::

    main("aim", version, track_per_value=..., track_batched=..., build=..., select=..., fetch=...)

``main`` makes a fresh scratch directory, measures the plain-Python floor in the
same process, runs the workloads in order, removes the directory and prints one
JSON line prefixed with ``RESULT_MARKER`` (peers print chatter of their own on
stdout, so the driver looks only for that line).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESULT_MARKER = "@@PEER-RESULT@@ "

# No tool may phone home during a measurement: MLflow 3 records usage telemetry on
# create_run/log_metric/log_batch and ships it from a background thread; the Hugging
# Face client under trackio has telemetry too. Every script imports this module before
# its tool, so these defaults apply to standalone runs as well as to the driver's.
OFFLINE_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)

# Workload 1: one run, five metrics x TRACK_STEPS steps, all with one context.
NAMES = ("loss", "acc", "lr", "grad_norm", "throughput")
CONTEXT = {"subset": "train"}
TRACK_STEPS = 20_000

# Workload 2: RUNS runs x RUN_STEPS steps x 1 metric ("loss"), three params each.
RUNS = 1_000
RUN_STEPS = 100
METRIC = "loss"

# Workloads 3 and 4: the runs whose learning rate is below LR_CUTOFF.
LR_CUTOFF = 0.01


def run_params(n_runs: int) -> list[dict[str, Any]]:
    """The three params of every run of workload 2 (the same for every tool).

    lr is log-uniform in [1e-4, 1e-1), so about two thirds of the runs match
    ``lr < 0.01``.
    """
    rng = np.random.default_rng(0)
    lrs = 10 ** rng.uniform(-4, -1, n_runs)
    return [{"lr": float(lr), "batch_size": int(2 ** (4 + i % 4)), "model": "mlp"}
            for i, lr in enumerate(lrs)]


def loss_curve(i: int) -> list[float]:
    """The RUN_STEPS values of run ``i``'s loss (plain floats, like a training loop)."""
    return [1.0 / (step + 1) + 1e-6 * i for step in range(RUN_STEPS)]


def expected_selection(n_runs: int) -> int:
    return sum(p["lr"] < LR_CUTOFF for p in run_params(n_runs))


# -- the plain-Python floor ----------------------------------------------------------------
def floor_factory():
    """The floor "tracker": append (step, value) to a dict of lists keyed by
    (name, sorted context items). Also used by benchmarks/bench_track.py, so
    every benchmark compares against the same baseline."""
    store: dict = {}

    def track(value, name, step, context):
        key = (name, tuple(sorted(context.items())))
        points = store.get(key)
        if points is None:
            points = store[key] = []
        points.append((step, value))

    return track


def floor_per_value(steps: int) -> float:
    """Seconds of the workload-1 loop with the floor tracker: what any tracker must
    at least do per call, in pure Python. The loop is the one the tools run (the
    step's values built as a dict, one call per value), so only the call differs."""
    track = floor_factory()
    names, ctx = NAMES, CONTEXT
    t = time.perf_counter()
    for step in range(steps):
        values = step_values(step)
        for name in names:
            track(values[name], name, step, context=ctx)
    return time.perf_counter() - t


def step_values(step: int) -> dict[str, float]:
    """The five values of one step (a fresh dict, as a training loop would build)."""
    return {"loss": 1.0 / (step + 1), "acc": 0.5, "lr": 1e-3, "grad_norm": 1.5, "throughput": 1e4}


# -- measurement helpers -------------------------------------------------------------------
def disk_bytes(path: str | os.PathLike) -> int:
    """Bytes actually allocated on disk (st_blocks * 512) under ``path``."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="One sample of every peer workload (see benchmarks/peers/run_peers.py).")
    ap.add_argument("--steps", type=int, default=TRACK_STEPS, help="steps of workload 1 (5 metrics each)")
    ap.add_argument("--runs", type=int, default=RUNS, help="runs of workload 2")
    ap.add_argument("--subset-steps", type=int, default=200,
                    help="steps actually timed for per-call APIs too slow to run in full (extrapolated)")
    ap.add_argument("--build-runs", type=int, default=None,
                    help="build only this many runs (a slow tool's subset; select/fetch times are extrapolated)")
    # internal: the driver of a read phase in a fresh process
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--spawned-at", type=float, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


class Workdir:
    """A fresh scratch directory, removed on exit (``$RUNSTORE_BENCH_DIR`` or the system temp dir)."""

    def __init__(self, tool: str) -> None:
        base = os.environ.get("RUNSTORE_BENCH_DIR") or tempfile.gettempdir()
        Path(base).mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f"peer-{tool}-", dir=base))

    def sub(self, name: str) -> Path:
        return self.path / name

    def __enter__(self) -> Workdir:
        return self

    def __exit__(self, *exc: Any) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def emit(result: dict[str, Any]) -> None:
    sys.stdout.flush()
    print(RESULT_MARKER + json.dumps(result), flush=True)


def parse_result(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    raise RuntimeError("no result line in the output:\n" + stdout[-2000:])


def _read_phase(fn: Callable[[str], Any], store: str, spawned_at: float | None = None,
                prepare: Callable[[str], Any] | None = None) -> None:
    """Time ``fn(store)`` twice in this (fresh) process: the first call pays every
    cold cost a new analysis session pays (opening the store, building caches);
    the second shows what is cached in-process. The OS page cache is warm in both.

    The tool's imports are outside both clocks for every tool alike: the module
    imports at the top of each script, and ``prepare(store)`` for a tool that can
    only be imported once its store is known (trackio reads TRACKIO_DIR at import).
    ``process`` is the wall time from the driver spawning this process to the end
    of the first call: interpreter start, every import and the first call."""
    if prepare is not None:
        prepare(store)
    first, out = timed(lambda: fn(store))
    process = time.time() - spawned_at if spawned_at is not None else None
    second, _ = timed(lambda: fn(store))
    if out and isinstance(out[0], tuple):  # curves: (steps, values) arrays
        ok = all(len(st) == RUN_STEPS and len(v) == RUN_STEPS for st, v in out)
        emit({"first": first, "second": second, "process": process, "count": len(out),
              "points": int(sum(len(v) for _, v in out)), "complete": ok})
    else:
        emit({"first": first, "second": second, "process": process, "count": len(out)})


def _run_phase(phase: str, store: str) -> dict[str, Any]:
    cmd = [sys.executable, sys.argv[0], "--phase", phase, "--store", store, "--spawned-at", repr(time.time())]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"{phase} phase failed:\n{proc.stderr[-3000:]}")
    return parse_result(proc.stdout)


def main(tool: str, version: str, *, track_per_value: Callable | None = None,
         track_batched: Callable | None = None, build: Callable | None = None,
         index: Callable | None = None, select: Callable | None = None, fetch: Callable | None = None,
         extras: dict[str, Callable] | None = None, extra_reads: dict[str, Callable] | None = None,
         notes: dict[str, str] | None = None, argv: list[str] | None = None,
         prepare: Callable[[str], Any] | None = None) -> None:
    """Run every workload a tool supports and print one JSON result line.

    - ``track_per_value(workdir, steps, subset_steps) -> (seconds, steps_timed)`` and
      ``track_batched(...)`` time workload 1 (one call per value / the tool's
      batching API), including making the data durable; ``steps_timed`` is
      smaller than ``steps`` when the tool is too slow to run in full (the
      per-value figure is then measured on that subset). Each writes into new
      subdirectories of ``workdir``, whose size gives the disk per point of one
      long run.
    - ``build(workdir, params) -> (seconds, store_path)`` writes workload 2 for
      the runs in ``params``.
    - ``extras``: more workload-1 variants, name -> the same signature as
      ``track_batched``; reported next to it, never in the main table.
    - ``extra_reads``: more read variants, name -> the signature of ``select`` or
      ``fetch``; reported under "extras", never in the main table.
    - ``index(store_path)``: a step the tool needs before its queries see the runs
      (Aim without a running ``aim up``); timed on its own, and not part of build.
    - ``select(store_path) -> run keys`` and ``fetch(store_path) -> list of
      (steps, values) NumPy arrays`` run in a fresh process each (see _read_phase).
    - ``prepare(store_path)``: imports a tool can only do once it knows its store,
      run in the read process before the clocks (see _read_phase).
    """
    args = parse_args(argv)
    reads = {"select": select, "fetch": fetch, **(extra_reads or {})}
    if args.phase:
        _read_phase(reads[args.phase], args.store, args.spawned_at, prepare)
        return
    out: dict[str, Any] = {"tool": tool, "version": version, "python": sys.version.split()[0],
                           "steps": args.steps, "runs": args.runs, "notes": dict(notes or {})}
    with Workdir(tool) as wd:
        floors = []
        for label, fn in (("track_per_value", track_per_value), ("track_batched", track_batched)):
            if fn is None:
                continue
            # the floor is sampled around every timed variant and the median taken,
            # so that a burst of machine noise moves one sample, not the ratio
            floors += [floor_per_value(args.steps), floor_per_value(args.steps)]
            before = set(wd.path.iterdir())
            secs, steps_timed = fn(wd, args.steps, min(args.subset_steps, args.steps))
            floors.append(floor_per_value(args.steps))
            points = steps_timed * len(NAMES)
            size = sum(disk_bytes(p) for p in set(wd.path.iterdir()) - before)
            out[label] = {"seconds": secs, "steps_timed": steps_timed, "ns_per_value": secs / points * 1e9,
                          "disk_bytes": size, "bytes_per_point": size / points}
        for label, fn in (extras or {}).items():
            secs, steps_timed = fn(wd, args.steps, min(args.subset_steps, args.steps))
            out.setdefault("extras", {})[label] = {"seconds": secs, "steps_timed": steps_timed,
                                                   "ns_per_value": secs / (steps_timed * len(NAMES)) * 1e9}
        # disk per point of one long run (workload 1): the fully timed variant, batched if both are
        long = [out[k] for k in ("track_batched", "track_per_value")
                if k in out and out[k]["steps_timed"] == args.steps]
        if long:
            out["disk_long_run"] = {"bytes": long[0]["disk_bytes"], "bytes_per_point": long[0]["bytes_per_point"]}
        if floors:
            floor_ns = statistics.median(floors) / (args.steps * len(NAMES)) * 1e9
            out["floor_ns_per_value"] = floor_ns
            for entry in [out.get("track_per_value"), out.get("track_batched"), *out.get("extras", {}).values()]:
                if entry:
                    entry["x_floor"] = entry["ns_per_value"] / floor_ns

        if build is not None:
            built = min(args.build_runs or args.runs, args.runs)
            params = run_params(args.runs)[:built]
            secs, store = build(wd, params)
            scale = args.runs / built
            out["build"] = {"seconds": secs, "runs_built": built, "seconds_extrapolated": secs * scale,
                            "points": built * RUN_STEPS}
            size = disk_bytes(store)  # before any index step: what tracking itself stores
            out["disk"] = {"bytes": size, "bytes_per_point": size / (built * RUN_STEPS)}
            if index is not None:
                secs, _ = timed(lambda: index(store))
                out["index"] = {"seconds": secs, "seconds_extrapolated": secs * scale}
            expected = expected_selection(built)
            for phase, fn in reads.items():
                if fn is None:
                    continue
                r = _run_phase(phase, str(store))
                r.update(seconds=r["first"], seconds_extrapolated=r["first"] * scale, expected=expected)
                if r.get("process") is not None:  # imports are not scaled: only the call's share
                    r["process_extrapolated"] = r["process"] + r["first"] * (scale - 1)
                if phase in ("select", "fetch"):
                    out[phase] = r
                else:
                    out.setdefault("extras", {})[phase] = r
    emit(out)
