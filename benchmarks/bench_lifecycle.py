"""Many live runs in one process (issue 20, item 14): creation, group flush, close.

    python benchmarks/bench_lifecycle.py [--runs 10000]

Figures, each beside a baseline measured in the same process:

* creating N live runs: the cost per run at N/10 and at N (linear: the ratio ~1);
* one value tracked in each of N live runs, then flushed: the flush thread's one
  transaction for all of them, against the old way (one fsync'd transaction per
  run, ``run.flush()`` each) and against the floor (one raw LMDB transaction
  putting N records of the same size);
* time from the last ``track`` to every value being visible to a reader, with
  the background thread and a 1 s flush interval (the promise: interval + slack);
* closing N live runs at exit: one transaction, against ``close()`` one by one;
* the first run in a fresh process (import + open + create).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

import lmdb

from _common import row, workdir
from runstore import Repo, Run
from runstore.tracking import lifecycle as _lifecycle


def create(repo: Repo, n: int, interval: float = 3600.0) -> tuple[list[Run], float]:
    t = time.perf_counter()
    runs = [Run(repo=repo, experiment="bench", flush_interval=interval) for _ in range(n)]
    return runs, time.perf_counter() - t


def visible(repo: Repo) -> int:
    env = repo._env
    with env.read() as txn:
        return txn.stat(env.dbs["seqs"])["entries"]


def raw_floor(base, n: int) -> float:
    env = lmdb.open(str(base / "raw"), map_size=1 << 30, metasync=False)
    value = os.urandom(120)
    t = time.perf_counter()
    with env.begin(write=True) as txn:
        for i in range(n):
            txn.put(i.to_bytes(16, "big"), value)
    elapsed = time.perf_counter() - t
    env.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    n = parser.parse_args().runs
    base = workdir("lifecycle")
    try:
        print(f"bench_lifecycle: {n:,} live runs in one process ({base})")

        small = Repo(base / "small")
        runs, t_small = create(small, n // 10)
        for run in runs:
            run.close()
        repo = Repo(base / "big")
        runs, t_big = create(repo, n)
        per_small, per_big = t_small / (n // 10), t_big / n
        row(f"create {n // 10:,} runs: per run", f"{per_small * 1e3:.3f} ms")
        row(f"create {n:,} runs: per run", f"{per_big * 1e3:.3f} ms", f"{per_big / per_small:.2f}x (linear: ~1)")

        for run in runs:
            run.track(1.0, name="x")
        t = time.perf_counter()
        _lifecycle.flush_runs(runs)  # what the flush thread does once per interval
        group = time.perf_counter() - t
        assert visible(repo) == n
        for run in runs:
            run.track(2.0, name="x")
        t = time.perf_counter()
        for run in runs:
            run.flush()  # the baseline: one transaction (one fsync) per run
        one_by_one = time.perf_counter() - t
        floor = raw_floor(base, n)
        row(f"flush one value in each of {n:,} runs: one transaction", f"{group * 1e3:.1f} ms")
        row("  baseline: one transaction per run (run.flush() each)", f"{one_by_one * 1e3:.1f} ms",
            f"group is {one_by_one / group:.0f}x faster")
        row(f"  floor: one raw LMDB transaction of {n:,} puts", f"{floor * 1e3:.1f} ms",
            f"group is {group / floor:.1f}x the floor")

        t = time.perf_counter()
        _lifecycle._finish_all("finished")
        closed = time.perf_counter() - t
        assert all(run.closed for run in runs)
        more, _ = create(repo, n // 10)
        t = time.perf_counter()
        for run in more:
            run.close()
        per_close = (time.perf_counter() - t) / len(more)
        row(f"close {n:,} live runs at exit: one transaction", f"{closed * 1e3:.1f} ms")
        row(f"  baseline: close() one by one ({n // 10:,} measured, x10)", f"{per_close * n * 1e3:.1f} ms",
            f"{per_close * n / closed:.0f}x slower")

        live = Repo(base / "live")
        runs, _ = create(live, n, interval=1.0)
        for run in runs:
            run.track(1.0, name="x")
        tracked = time.perf_counter()
        while visible(live) < n:
            time.sleep(0.005)
        row(f"last track() -> all {n:,} values visible (interval 1 s)", f"{time.perf_counter() - tracked:.2f} s",
            "(promise: <= interval + slack)")
        _lifecycle._finish_all("finished")

        code = ("import time; t = time.perf_counter(); from runstore import Repo, Run; "
                f"Run(repo=Repo({str(base / 'fresh')!r})).close(); print(time.perf_counter() - t)")
        first = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                     check=True).stdout)
        row("fresh process: import + open + first run + close", f"{first * 1e3:.0f} ms")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
