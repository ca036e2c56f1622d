"""Tracking cost: track(), the sequence handle, track_many, building a repository, reads.

    python benchmarks/bench_track.py [--steps 200000] [--runs 1000]

Every figure is reported next to a baseline measured in the same process
(machines are shared and noisy): the floor for track() is a plain Python
function appending (step, value) to lists keyed by (name, sorted context items).
"""

from __future__ import annotations

import argparse
import shutil
import time

import numpy as np

from _common import row, workdir
from peers._workloads import floor_factory
from runstore import Repo, Run

NAMES = ["loss", "acc", "lr", "grad_norm", "throughput"]


def time_floor(steps: int) -> float:
    track = floor_factory()
    t = time.perf_counter()
    for step in range(steps):
        for name in NAMES:
            track(0.5, name, step, context={"subset": "train"})
    return time.perf_counter() - t


def time_track(repo: Repo, steps: int) -> float:
    run = Run(repo=repo, experiment="bench")
    track = run.track
    t = time.perf_counter()
    for step in range(steps):
        for name in NAMES:
            track(0.5, name, step=step, context={"subset": "train"})
    run.close()  # the flush of the last points counts
    return time.perf_counter() - t


def time_handle(repo: Repo, steps: int) -> float:
    run = Run(repo=repo, experiment="bench")
    handles = [run.sequence(name, context={"subset": "train"}).append for name in NAMES]
    t = time.perf_counter()
    for step in range(steps):
        for append in handles:
            append(0.5, step)
    run.close()
    return time.perf_counter() - t


def time_track_many(repo: Repo, n: int) -> float:
    values = np.random.default_rng(0).random(n)
    run = Run(repo=repo, experiment="bench")
    t = time.perf_counter()
    run.track_many(values, name="loss")
    run.close()
    return time.perf_counter() - t


def build(repo: Repo, runs: int, steps: int) -> float:
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for i in range(runs):
        run = Run(repo=repo, experiment="build")
        run["hparams"] = {"lr": float(10 ** rng.uniform(-4, -1)), "batch_size": int(2 ** (4 + i % 4)), "model": "mlp"}
        for step in range(steps):
            run.track(1.0 / (step + 1), name="loss", step=step)
        run.close()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--bulk", type=int, default=10_000_000)
    args = ap.parse_args()
    base = workdir("track")
    try:
        n_points = args.steps * len(NAMES)
        print(f"track(): 1 run, {len(NAMES)} metrics x {args.steps:,} steps, each call with a context dict")
        floors, tracks, handles = [], [], []
        for i in range(3):  # interleaved so that machine noise hits both alike
            floors.append(time_floor(args.steps))
            tracks.append(time_track(Repo(base / f"track{i}"), args.steps))
            handles.append(time_handle(Repo(base / f"handle{i}"), args.steps))
        f, tr, h = (float(np.median(x)) / n_points * 1e9 for x in (floors, tracks, handles))
        row("floor: append (step, value) to a dict of lists", f"{f:.0f} ns/value", "1.00x")
        row("run.track(value, name, step, context) incl. close()", f"{tr:.0f} ns/value", f"{tr / f:.2f}x floor")
        row("run.sequence(...).append(value, step) incl. close()", f"{h:.0f} ns/value", f"{h / f:.2f}x floor")

        print(f"\ntrack_many(): {args.bulk:,} values in one call, including close() (flush + fsync)")
        times = [time_track_many(Repo(base / f"bulk{i}"), args.bulk) for i in range(3)]
        tm = float(np.median(times))
        copy_t = min(_time_copy(args.bulk) for _ in range(3))
        row("track_many + close", f"{args.bulk / tm / 1e6:.1f} M values/s", f"{tm / copy_t:.1f}x a NumPy copy")

        print(f"\nbuild: {args.runs:,} runs x 100 steps x 1 metric, 3 params each, every run closed")
        repo = Repo(base / "build")
        bt = build(repo, args.runs, 100)
        size = repo.disk_usage()
        floor_build = time_floor_build(args.runs, 100)
        row("build time", f"{bt:.2f} s", f"{bt / floor_build:.1f}x floor")
        row("bytes on disk per tracked point", f"{size / (args.runs * 100):.1f} B", f"({size / 1e6:.1f} MB)")

        print("\nread: one 10,000,000-point sequence into NumPy")
        repo = Repo(base / "read")
        run = Run(repo=repo, experiment="read")
        run.track_many(np.random.default_rng(1).random(10_000_000), name="loss", epochs=np.zeros(10_000_000))
        run.close()
        seq = repo.get_run(run.id).sequence("loss")
        reads = []
        for _ in range(5):
            t = time.perf_counter()
            cols = seq.numpy()
            reads.append(time.perf_counter() - t)
        rt = float(np.median(reads))
        nbytes = sum(c.nbytes for c in cols.values())
        copy_t = min(_time_copy(10_000_000 * 4) for _ in range(3))
        row("read 4 columns (steps, values, epochs, timestamps)", f"{nbytes / rt / 1e9:.2f} GB/s",
            f"{rt / copy_t:.1f}x a NumPy copy of the same bytes")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _time_copy(n: int) -> float:
    a = np.ones(n)
    t = time.perf_counter()
    a.copy()
    return time.perf_counter() - t


def time_floor_build(runs: int, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(runs):
        track = floor_factory()
        for step in range(steps):
            track(1.0 / (step + 1), "loss", step, {})
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
