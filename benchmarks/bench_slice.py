"""Sequence slicing benchmark: ``seq[a:b]`` and ``seq.range(lo, hi)`` on a 10 M-point
sequence read only the blocks holding the slice (target: a 1,000-step slice reads < 1%
of the sequence's blocks).

Run:  python benchmarks/bench_slice.py [--points N] [--dir DIR]

Blocks are counted by wrapping the LMDB read transaction and counting gets on the
blocks database (a cursor scan counts as every block). The baseline, in the same
process, is what a user had before slicing existed: read the whole sequence
(``seq.steps``/``seq.values``) and slice the arrays. The last line times the first
slice in a fresh process (import + open + slice).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, row, workdir  # noqa: E402

from runstore import Repo, Run  # noqa: E402
from runstore.storage import blocks  # noqa: E402


class Counting:
    """An LMDB read transaction that counts the block records it hands out."""

    def __init__(self, txn, db, counts):
        self.txn, self.db, self.counts = txn, db, counts

    def __enter__(self):
        self.txn.__enter__()
        return self

    def __exit__(self, *exc):
        return self.txn.__exit__(*exc)

    def get(self, key, db=None):
        if db is self.db:
            self.counts["gets"] += 1
        return self.txn.get(key, db=db)

    def cursor(self, db=None):
        if db is self.db:
            self.counts["scans"] += 1
        return self.txn.cursor(db=db)


FRESH = """
import sys, time
t = time.perf_counter()
from runstore import Repo
seq = Repo(sys.argv[1]).get_run(sys.argv[2]).sequence("loss")
part = seq.range(int(sys.argv[3]), int(sys.argv[3]) + 1000)
assert len(part.values) == 1000
print(time.perf_counter() - t)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    base = args.dir or workdir("slice")
    shutil.rmtree(base / "repo", ignore_errors=True)
    n = args.points
    repo = Repo(base / "repo")
    t = time.perf_counter()
    with Run(repo=repo) as run:
        run.track_many(np.random.default_rng(0).random(n), name="loss")  # steps 0..n-1
    nblocks = -(-n // blocks.CAPACITY)
    print(f"{n:,} points in {nblocks:,} blocks of {blocks.CAPACITY} (written in {time.perf_counter() - t:.1f} s)")

    env = repo._env
    counts = {"gets": 0, "scans": 0}
    real = env.read
    env.read = lambda buffers=False: Counting(real(buffers), env.dbs["blocks"], counts)
    seq = repo.get_run(run.id).sequence("loss")
    middle = n // 2

    def by_position():
        return seq[middle:middle + 1000]

    def by_step():
        return seq.range(middle, middle + 1000)

    def whole():
        steps, values = seq.steps, seq.values
        keep = (steps >= middle) & (steps < middle + 1000)
        return steps[keep], values[keep]

    for label, fn in (("seq[a:a+1000]", by_position), ("seq.range(lo, lo+1000)", by_step)):
        counts.update(gets=0, scans=0)
        part = fn()
        assert len(part.values) == 1000 and counts["scans"] == 0
        share = counts["gets"] / nblocks
        row(f"{label}: blocks read", f"{counts['gets']} / {nblocks}", f"{share:.3%}")
    env.read = real
    t_pos, _ = best_of(by_position, 7)
    t_step, _ = best_of(by_step, 7)
    t_all, _ = best_of(whole, 3)
    row("seq[a:a+1000]", f"{t_pos * 1e3:.3f} ms", f"{t_all / t_pos:,.0f}x faster than reading all")
    row("seq.range(lo, hi)", f"{t_step * 1e3:.3f} ms", f"{t_all / t_step:,.0f}x faster than reading all")
    row("baseline: read the whole sequence and mask", f"{t_all * 1e3:.1f} ms")
    out = subprocess.run([sys.executable, "-c", FRESH, str(repo.path), run.id, str(middle)],
                         capture_output=True, text=True, check=True)
    row("fresh process: import + open + first range()", f"{float(out.stdout) * 1e3:.0f} ms")
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
