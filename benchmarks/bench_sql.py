"""SQL benchmark: one run's curve out of a 10 M-point repository through ``repo.sql``.

Run:  python benchmarks/bench_sql.py [--points N] [--dir DIR]

The repository holds ``--runs`` runs x 4 sequences (10 M points by default). Timed,
in one process:

- baseline: the Python API, ``repo.get_run(id).sequence("loss").numpy()``;
- ``repo.sql("SELECT step, value FROM points WHERE run_id = ? AND name = 'loss'")``
  (the target is <= 50 ms: only that sequence's blocks are read);
- the same query for an aggregate over one run, and a summary-table query
  (``sequences``), which reads no points at all;
- a full scan, ``SELECT count(*), avg(value) FROM points`` (reads everything: the
  cost a query without a pushed-down filter pays);
- building the points dataset for 10k and 100k sequences (paid when sequences are
  added; new points alone need no rebuild).

The last lines time the first query in a fresh process (import + open + connect +
query) and how many sequences the one-curve query read.
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

NAMES = ("loss", "acc", "lr", "grad_norm")


def build(path: Path, points: int, runs: int) -> list[str]:
    repo = Repo(path)
    per_seq = points // (runs * len(NAMES))
    ids = []
    steps = np.arange(per_seq)
    for i in range(runs):
        with Run(repo=repo, experiment="bench", name=f"r{i}") as run:
            run["hparams"] = {"lr": 10 ** -(i % 4), "i": i}
            for name in NAMES:
                run.track_many(np.random.default_rng(i).random(per_seq), name=name, steps=steps,
                               epochs=steps // 1000, context={"subset": "train"})
        ids.append(run.id)
    return ids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--dir")
    args = ap.parse_args()
    base = Path(args.dir) if args.dir else workdir("sql")
    path = base / "repo"
    try:
        t = time.perf_counter()
        ids = build(path, args.points, args.runs)
        print(f"built {args.points:,} points in {args.runs} runs x {len(NAMES)} sequences "
              f"in {time.perf_counter() - t:.1f} s")
        repo = Repo(path)
        target = ids[len(ids) // 2]
        repo.sql("SELECT 1")  # connect once (the first call also scans runs and sequences)

        def api():
            return repo.get_run(target).sequence("loss", {"subset": "train"}).numpy()

        def curve():
            return repo.sql("SELECT step, value FROM points WHERE run_id = ? AND name = 'loss' ORDER BY step",
                            [target]).to_arrow()

        def one_run_agg():
            return repo.sql("SELECT name, avg(value), max(step) FROM points WHERE run_id = ? GROUP BY name",
                            [target]).rows()

        def summaries():
            return repo.sql("SELECT run_id, last FROM sequences WHERE name = 'loss' ORDER BY last DESC "
                            "LIMIT 5").rows()

        def full_scan():
            return repo.sql("SELECT count(*), avg(value) FROM points").rows()

        assert len(curve()) == len(api()["steps"])
        base_med, _ = best_of(api, 7)
        row("baseline: run.sequence('loss').numpy()", f"{base_med * 1e3:.2f} ms")
        for label, fn, n in (("SQL: one curve (WHERE run_id = ? AND name = 'loss')", curve, 7),
                             ("SQL: one run, avg/max per sequence", one_run_agg, 7),
                             ("SQL: sequences table, top 5 by last loss", summaries, 7),
                             ("SQL: full scan count/avg over all points", full_scan, 3)):
            med, _ = best_of(fn, n)
            row(label, f"{med * 1e3:.2f} ms", f"x{med / base_med:.1f}")

        read: list = []
        original = repo._read_sequences
        repo._read_sequences = lambda keys: (read.extend(keys), original(keys))[1]
        curve()
        repo._read_sequences = original
        row("sequences read by the one-curve query", f"{len(set(read))} of {args.runs * len(NAMES)}")

        # Building the points dataset grows with the number of sequences (not points):
        # measured on synthetic sequence records, so no 100k-sequence repository is needed.
        from runstore.analysis import sql_tables as _sql_tables

        for n in (10_000, 100_000):
            fake = [(f"{i:024x}", i % 7, {"name": "loss", "context": {"subset": "train", "k": i % 3}})
                    for i in range(n)]
            med, _ = best_of(lambda: _sql_tables.points_dataset(repo, fake), 3)
            row(f"points dataset over {n:,} sequences: build", f"{med * 1e3:.0f} ms",
                f"{med / n * 1e6:.1f} us/sequence")

        code = ("import time; t = time.perf_counter(); from runstore import Repo; r = Repo(%r, readonly=True); "
                "n = len(r.sql(\"SELECT step, value FROM points WHERE run_id = '%s' AND name = 'loss'\")); "
                "print(time.perf_counter() - t, n)") % (str(path), target)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        first, n = out.stdout.split()
        row("fresh process: import + open + first one-curve query", f"{float(first) * 1e3:.0f} ms")
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
