"""Query benchmarks: param queries over 1,000 and 100,000 runs, sequence exports.

Run:  python benchmarks/bench_query.py [--quick] [--dir DIR]

Every figure is a median of repeated calls, printed next to a baseline measured
in the same process: a naive per-run Python evaluation of the same query (what
Aim does: one Python expression per run), so the ratio means something on any
machine.  Repositories are generated once under DIR (default
/tmp/runstore-bench) and reused by later runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from runstore import Repo, Run
from runstore.analysis import run_query, sequence_query
from runstore.query import compile_query
from runstore.storage.gc import gc_paused as _gc_paused
from runstore.query.reference import run_matches

PARAM_QUERY = "run.hparams.lr < 0.01 and run.experiment == 'mnist'"
SEQ_QUERY = "seq.name == 'loss' and run.hparams.lr < 0.01"
EXPERIMENTS = ("mnist", "cifar", "imagenet")
MODELS = ("lstm", "gru", "transformer", "cnn")


def timed(fn, repeat: int = 5) -> tuple[float, object]:
    """Median seconds of ``repeat`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def make_runs(path: Path, n: int, steps: int = 0, seed: int = 0) -> Repo:
    """A repository of ``n`` runs (reused when it already exists)."""
    marker = path / ".complete"
    repo = Repo(path)
    if marker.exists():
        return repo
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    for i in range(n):
        run = Run(repo=repo, experiment=EXPERIMENTS[i % 3], name=f"run-{i}", tags=["best"] if i % 10 == 0 else [])
        run["hparams"] = {
            "lr": float(10 ** rng.uniform(-4, -1)),
            "batch_size": int(2 ** rng.integers(4, 9)),
            "accum": int(rng.integers(1, 8)),
            "model": MODELS[i % 4],
            "dropout": float(rng.uniform(0, 0.5)),
            "layers": int(rng.integers(1, 12)),
        }
        run["seed"] = i
        if steps:
            values = np.exp(-np.arange(steps) / steps) + rng.normal(0, 0.01, steps)
            run.track_many(values, name="loss", context={"subset": "train"})
            run.track_many(values[::10] + 0.1, name="loss", context={"subset": "val"})
        run.close()
        if i and i % 10_000 == 0:
            print(f"  ... {i} runs in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    marker.touch()
    return repo


def naive_param_query(repo: Repo, text: str) -> list[str]:
    """Per-run Python evaluation of the same plan over a fresh scan (Aim's model)."""
    plan = compile_query(text)
    with _gc_paused():  # same scan conditions as runstore's own, so the ratio is about evaluation
        runs = repo._scan_runs()
    return [r[0] for r, ok in zip(runs, run_matches(plan, runs, [])) if ok]


def bench_params(base: Path, n: int) -> dict:
    repo = make_runs(base / f"runs-{n}", n)
    # "First call": a new Repo object each time, so nothing is cached but the open environment.
    k = 3 if n > 10_000 else 9
    fresh_repos = iter([Repo(repo.path) for _ in range(k)])  # opened outside the timing
    first_s, first = timed(lambda: run_query(next(fresh_repos), PARAM_QUERY), repeat=k)
    fresh = Repo(repo.path)
    run_query(fresh, PARAM_QUERY)
    repeated_s, result = timed(lambda: run_query(fresh, PARAM_QUERY), repeat=21)
    naive_s, naive = timed(lambda: naive_param_query(fresh, PARAM_QUERY), repeat=3 if n > 10_000 else 7)
    assert naive == result.ids == first.ids, "vectorised and naive results differ"
    # The naive loop over rows already in memory (no scan): the fairest baseline for a repeated query.
    plan, rows = compile_query(PARAM_QUERY), fresh._scan_runs()
    naive_mem_s, _ = timed(lambda: run_matches(plan, rows, []), repeat=3 if n > 10_000 else 7)
    return {"runs": n, "matches": len(result), "first_ms": first_s * 1e3, "repeated_ms": repeated_s * 1e3,
            "naive_ms": naive_s * 1e3, "naive_in_memory_ms": naive_mem_s * 1e3,
            "speedup_repeated": naive_s / repeated_s, "speedup_vs_in_memory": naive_mem_s / repeated_s,
            "speedup_first": naive_s / first_s}


def naive_seq_export(repo: Repo) -> object:
    """Per-run Python: check the param, read each matching sequence, concatenate."""
    import pyarrow as pa

    parts = []
    for run in repo.runs():
        lr = run.params.get("hparams", {}).get("lr")
        if not isinstance(lr, (int, float)) or not lr < 0.01:
            continue
        for name, ctx in run.sequences():
            if name != "loss":
                continue
            seq = run.sequence(name, ctx)
            steps, values, epochs, times = seq.steps, seq.values, seq.epochs, seq.timestamps
            parts.append((run.id, name, ctx.get("subset"), steps, values, epochs, times))
    counts = [len(p[3]) for p in parts]
    return pa.table({
        "run_id": np.repeat([p[0] for p in parts], counts),
        "name": np.repeat([p[1] for p in parts], counts),
        "context.subset": np.repeat([p[2] for p in parts], counts),
        "step": np.concatenate([p[3] for p in parts]),
        "value": np.concatenate([p[4] for p in parts]),
        "epoch": np.concatenate([p[5] for p in parts]),
        "timestamp": np.concatenate([p[6] for p in parts]),
    })


def bench_sequences(base: Path, n: int, steps: int, naive: bool = True) -> dict:
    repo = make_runs(base / f"seqs-{n}x{steps}", n, steps=steps)
    fresh_repos = iter([Repo(repo.path) for _ in range(3)])
    first_s, _ = timed(lambda: sequence_query(next(fresh_repos), SEQ_QUERY).to_arrow(), repeat=3)
    fresh = Repo(repo.path)
    sequence_query(fresh, SEQ_QUERY).to_arrow()
    repeated_s, table = timed(lambda: sequence_query(fresh, SEQ_QUERY).to_arrow(), repeat=9 if steps < 10**5 else 3)
    out = {"runs": n, "steps": steps, "points": table.num_rows, "first_ms": first_s * 1e3,
           "repeated_ms": repeated_s * 1e3, "points_per_s": table.num_rows / repeated_s}
    if naive:
        naive_s, naive_table = timed(lambda: naive_seq_export(fresh), repeat=3)
        assert naive_table.num_rows == table.num_rows
        out.update(naive_ms=naive_s * 1e3, speedup=naive_s / repeated_s)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/runstore-bench", type=Path)
    parser.add_argument("--quick", action="store_true", help="1,000-run cases only")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    # Warm up the process (imports, the cached LALR tables, pyarrow's lazy pandas
    # import): "first call" below means the first query on a freshly opened Repo.
    warm = make_runs(args.dir / "warmup", 3, steps=3)
    sequence_query(warm, SEQ_QUERY).to_arrow()
    run_query(warm, PARAM_QUERY)

    print(f"param query: {PARAM_QUERY!r}")
    for n in (1_000,) if args.quick else (1_000, 100_000):
        r = bench_params(args.dir, n)
        print(f"  {r['runs']:>7} runs ({r['matches']} match): first {r['first_ms']:8.2f} ms, repeated "
              f"{r['repeated_ms']:7.3f} ms | naive per-run {r['naive_ms']:8.1f} ms (scan incl.), "
              f"{r['naive_in_memory_ms']:8.1f} ms (rows in memory) | repeated is {r['speedup_repeated']:.0f}x / "
              f"{r['speedup_vs_in_memory']:.0f}x faster, first call {r['speedup_first']:.1f}x")

    print(f"sequence export: query_sequences({SEQ_QUERY!r}).to_arrow()")
    cases = [(1_000, 100, True)] if args.quick else [(1_000, 100, True), (100, 1_000_000, False)]
    for n, steps, naive in cases:
        r = bench_sequences(args.dir, n, steps, naive)
        line = (f"  {n:>5} runs x {steps:>9} steps: {r['points']:>11,} points, first {r['first_ms']:8.1f} ms, "
                f"repeated {r['repeated_ms']:8.1f} ms = {r['points_per_s'] / 1e6:7.1f} M points/s")
        if naive:
            line += f" | naive per-run {r['naive_ms']:.1f} ms ({r['speedup']:.1f}x)"
        print(line)


if __name__ == "__main__":
    main()
