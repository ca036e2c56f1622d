"""RunCollection benchmarks: filter with three criteria and group_by with two keys plus
two aggregations, over 100,000 runs (target: <= 100 ms each).

Run:  python benchmarks/bench_collection.py [--runs N] [--dir DIR]

The baseline, measured in the same process, is the per-run Python loop HydraFlow's
RunCollection does: ``run.get(key)`` for every run and criterion, over Run objects
that are already in memory (so the loop is not charged for reading storage).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_query import make_runs, timed  # noqa: E402

from runstore import Repo  # noqa: E402
from runstore.analysis.keys import run_get  # noqa: E402
from runstore.analysis import run_query  # noqa: E402

FILTER = dict(experiment="mnist", hparams__model=["lstm", "gru"], hparams__lr=(1e-4, 1e-2))
KEYS = ("experiment", "hparams.model")


def aggregations():
    return dict(count=len, lr=lambda g: float(g.to_numpy("hparams.lr").mean()))


def naive_filter(runs: list) -> list[str]:
    out = []
    for run in runs:
        if run_get(run, "experiment", None) != "mnist":
            continue
        if run_get(run, "hparams.model", None) not in ("lstm", "gru"):
            continue
        lr = run_get(run, "hparams.lr", None)
        if isinstance(lr, (int, float)) and 1e-4 <= lr <= 1e-2:
            out.append(run.id)
    return out


def naive_group_by(runs: list) -> dict:
    groups: dict = {}
    for run in runs:
        key = tuple(run_get(run, k, None) for k in KEYS)
        groups.setdefault(key, []).append(run)
    return {k: {"count": len(g), "lr": float(np.mean([run_get(r, "hparams.lr") for r in g]))}
            for k, g in groups.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/runstore-bench", type=Path)
    parser.add_argument("--runs", type=int, default=100_000)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    repo = make_runs(args.dir / f"runs-{args.runs}", args.runs)
    runs = run_query(Repo(repo.path), None)
    materialised = list(runs)  # the baseline's Run objects, built outside the timing
    runs.filter(**FILTER)  # build the columns once: the figures below are for a warm cache

    filter_s, result = timed(lambda: runs.filter(**FILTER), repeat=7)
    naive_filter_s, naive = timed(lambda: naive_filter(materialised), repeat=3)
    assert naive == result.ids
    print(f"filter({', '.join(f'{k}={v!r}' for k, v in FILTER.items())}) over {len(runs):,} runs "
          f"({len(result):,} match): {filter_s * 1e3:.1f} ms | per-run loop {naive_filter_s * 1e3:.0f} ms "
          f"({naive_filter_s / filter_s:.0f}x)")

    group_s, table = timed(lambda: runs.group_by(*KEYS, **aggregations()), repeat=7)
    naive_group_s, expected = timed(lambda: naive_group_by(materialised), repeat=3)
    got = {(row[0], row[1]): {"count": row[2], "lr": row[3]} for row in table.rows()}
    assert got.keys() == expected.keys()
    assert all(got[k]["count"] == v["count"] and abs(got[k]["lr"] - v["lr"]) < 1e-12 for k, v in expected.items())
    print(f"group_by{KEYS} with count=len and a mean over {len(runs):,} runs ({table.height} groups): "
          f"{group_s * 1e3:.1f} ms | per-run loop {naive_group_s * 1e3:.0f} ms ({naive_group_s / group_s:.0f}x)")

    groups_s, groups = timed(lambda: runs.group_by(*KEYS), repeat=7)
    print(f"group_by{KEYS} without aggregations (dict of RunCollections): {groups_s * 1e3:.1f} ms")
    sort_s, _ = timed(lambda: runs.sort("hparams.model", "hparams.lr"), repeat=7)
    print(f"sort('hparams.model', 'hparams.lr'): {sort_s * 1e3:.1f} ms")
    frame_s, _ = timed(lambda: runs.to_arrow("hparams.lr", "hparams.model", "experiment"), repeat=7)
    print(f"to_arrow('hparams.lr', 'hparams.model', 'experiment'): {frame_s * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
