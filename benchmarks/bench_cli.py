"""Terminal commands over many runs: `runstore ls` (newest 20, fitted, metric columns),
`runstore query`, and naming a run by its handle.

Run:  python benchmarks/bench_cli.py [--runs N] [--dir DIR]

Baselines, measured in the same process: `runstore --version` in a fresh process (the
cost of starting Python and importing runstore and click: what no command can beat), and
in-process `Repo(path).query("")` plus the names of the runs (the library work every
listing does: a new Repo, as each command makes, reads every run record).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, row, workdir  # noqa: E402

from click.testing import CliRunner  # noqa: E402

from runstore import Repo, Run  # noqa: E402
from runstore.cli import cli  # noqa: E402


def build(path: Path, n: int) -> Repo:
    repo = Repo(path)
    for i in range(n):
        run = Run(repo=repo, experiment=f"exp{i % 7}", name=f"run-{i}")
        run["hparams"] = {"lr": 10 ** -(i % 4), "batch": 32 * (1 + i % 3), "seed": i}
        run.track_many([1.0 / (s + 1) for s in range(20)], name="loss", context={"subset": "train"})
        run.track(0.5, name="loss", step=19, context={"subset": "val"})
        run.track(0.9, name="acc", step=19, context={"subset": "val"})
        run.close()
    return repo


def fresh(args: list[str]) -> float:
    env = {**os.environ, "COLUMNS": "120"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "runstore", *args], check=True, capture_output=True, env=env)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, nargs="*", default=[2_000, 20_000])
    parser.add_argument("--dir")
    opts = parser.parse_args()
    if opts.dir:
        os.environ["RUNSTORE_BENCH_DIR"] = opts.dir
    runner = CliRunner()
    for n in opts.runs:
        path = workdir(f"cli-{n}") / "repo"
        t = time.perf_counter()
        repo = build(path, n)
        print(f"{n:,} runs x 3 sequences (built in {time.perf_counter() - t:.1f} s)")
        version = min(fresh(["--version"]) for _ in range(3))
        ls_fresh = min(fresh(["--repo", str(path), "ls"]) for _ in range(3))
        row("fresh process: runstore --version (baseline)", f"{version * 1000:.0f} ms")
        row("fresh process: runstore ls", f"{ls_fresh * 1000:.0f} ms", f"{ls_fresh / version:.2f}x baseline")

        def ls():
            result = runner.invoke(cli, ["--repo", str(path), "ls"], env={"COLUMNS": "120"})
            assert result.exit_code == 0, result.output

        def query_table():
            result = runner.invoke(cli, ["--repo", str(path), "query", "run.hparams.lr < 0.5"],
                                   env={"COLUMNS": "120"})
            assert result.exit_code == 0, result.output

        base, _ = best_of(lambda: Repo(path, create=False).query("").to_list("name"), 5)
        ls_warm, _ = best_of(ls, 5)
        q_warm, _ = best_of(query_table, 3)
        handle = repo.query("")[n // 2].handle
        get, _ = best_of(lambda: repo.get_run(handle), 5)
        row('in process: Repo(path).query("").to_list("name") (baseline)', f"{base * 1000:.1f} ms")
        row("in process: runstore ls", f"{ls_warm * 1000:.1f} ms", f"{ls_warm / base:.1f}x baseline")
        row("in process: runstore query (table, first 1000 rows)", f"{q_warm * 1000:.0f} ms")
        row("repo.get_run(handle)", f"{get * 1000:.1f} ms")


if __name__ == "__main__":
    main()
