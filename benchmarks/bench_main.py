"""What `@runstore.main` (Hydra underneath) costs per job and per process start.

Run:  python benchmarks/bench_main.py [--jobs N] [--runs-before M ...] [--dir DIR] | grep -v 'HYDRA]'
(Hydra logs each job's launch line on stdout, as in any Hydra app.)

Baselines, measured in the same process:
- Hydra alone: a plain `hydra.main` app with the same structured config, swept the same
  way in-process (Hydra's basic sweeper and launcher), its function doing nothing. What
  `@runstore.main` adds per job is the difference.
- A hand-written loop that stores what each job stores, without Hydra (a Run with the
  config as params, one tracked value, closed): what the repository itself costs.
- For the fresh process: `python -c "import runstore"` (starting Python and importing
  runstore) and the one-job plain Hydra script.

The `@runstore.main` figures are in-process sweeps (`train(["-m", ...])`), so they include
Hydra composing each job's config (twice: the basic sweeper composes every job to
validate the batch, then the launcher composes it again), writing its output folder,
.hydra files and job log, and runstore validating and matching the config against the
experiment's runs, and recording .hydra as an artifact. `--runs-before` fills the
experiment with earlier runs first (matching reads them).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import row, workdir  # noqa: E402

import hydra  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402

import runstore  # noqa: E402
from runstore import Repo, Run  # noqa: E402


@dataclass
class Config:
    lr: float = 0.1
    seed: int = 0


ConfigStore.instance().store(name="hydra_alone", node=Config)


@hydra.main(config_path=None, config_name="hydra_alone", version_base="1.3")
def hydra_alone(cfg) -> float:
    return cfg.lr


def build_train(experiment: str):
    @runstore.main(Config, experiment=experiment)
    def train(run, cfg):
        run.track(cfg.lr, name="loss")
        return cfg.lr

    return train


SCRIPT = textwrap.dedent("""
    from dataclasses import dataclass
    import runstore

    @dataclass
    class Config:
        lr: float = 0.1

    @runstore.main(Config, experiment="fresh")
    def train(run, cfg):
        run.track(cfg.lr, name="loss")

    if __name__ == "__main__":
        train()
""")

HYDRA_SCRIPT = textwrap.dedent("""
    from dataclasses import dataclass
    import hydra
    from hydra.core.config_store import ConfigStore

    @dataclass
    class Config:
        lr: float = 0.1

    ConfigStore.instance().store(name="config", node=Config)

    @hydra.main(config_path=None, config_name="config", version_base="1.3")
    def train(cfg):
        return cfg.lr

    if __name__ == "__main__":
        train()
""")


def fresh(args: list[str], cwd: Path) -> float:
    # as an installed package runs: with compiled bytecode (an environment that sets
    # PYTHONDONTWRITEBYTECODE would recompile runstore's ~100 modules at every start)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True, cwd=cwd, env=env)
    return time.perf_counter() - t


def seeds(block: int, n: int) -> str:
    return "seed=" + ",".join(str(block * n + i) for i in range(n))


def per_job(before: int, n: int, repeat: int) -> None:
    base = workdir(f"main-{before}")
    os.chdir(base)  # Hydra's multirun/ folders land here
    repo = Repo(base / "repo")
    for i in range(before):
        with Run(repo=repo, experiment="bench") as r:
            r["hparams"] = {"lr": -1.0 - i, "seed": i}
    print(f"{n} jobs per sweep, experiment with {before:,} earlier runs (median of {repeat})")
    blocks = itertools.count(1)  # block 0: the sweep run once up front, then skipped

    def plain():
        k = next(blocks)
        for i in range(n):
            with Run(repo=repo, experiment="plain") as r:
                r.update_params({"hparams": {"lr": 0.1, "seed": k * n + i}, "overrides": [f"seed={k * n + i}"],
                                 "attempt": 1})
                r.track(0.1, name="loss")

    def alone():
        saved = sys.argv
        sys.argv = ["bench_main.py", "-m", seeds(next(blocks), n)]
        try:
            hydra_alone()
        finally:
            sys.argv = saved

    train = build_train("bench")
    where = ["-q", "--repo", str(repo.path)]

    def sweep():
        train(["-m", seeds(next(blocks), n), *where])

    def skipped():  # the same sweep again: every job matched and skipped
        train(["-m", seeds(0, n), *where])

    train(["-m", seeds(0, n), *where])
    alone()  # warm: Hydra's first composition imports and caches plugins
    # interleaved (one of each per round), so that the machine's load swings hit all four alike
    times: dict[str, list[float]] = {"plain": [], "hydra": [], "sweep": [], "skip": []}
    for _ in range(repeat):
        for key, fn in (("plain", plain), ("hydra", alone), ("sweep", sweep), ("skip", skipped)):
            t = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t)
    t_plain, t_hydra, t_sweep, t_skip = (statistics.median(times[k]) for k in ("plain", "hydra", "sweep", "skip"))
    # every swept job is a run (the earlier runs, block 0, the timed sweeps, the plain loop's)
    assert len(repo.runs()) == before + n * (1 + repeat) + n * repeat
    row("baseline: Run + params + 1 point + close, per job", f"{t_plain / n * 1e3:.2f} ms")
    row("baseline: Hydra alone (hydra.main, same sweep), per job", f"{t_hydra / n * 1e3:.2f} ms")
    row("@runstore.main sweep (Hydra basic launcher), per job", f"{t_sweep / n * 1e3:.2f} ms",
        f"{t_sweep / t_hydra:.2f}x Hydra alone, {(t_sweep - t_hydra) / n * 1e3:+.1f} ms/job")
    row("same sweep again (every job skipped), per job", f"{t_skip / n * 1e3:.2f} ms",
        f"{t_skip / t_hydra:.2f}x Hydra alone, {(t_skip - t_hydra) / n * 1e3:+.1f} ms/job")
    os.chdir(Path(__file__).parent)
    shutil.rmtree(base, ignore_errors=True)


def fresh_process(repeat: int) -> None:
    base = workdir("main-fresh")
    (base / "train.py").write_text(SCRIPT)
    (base / "plain.py").write_text(HYDRA_SCRIPT)
    fresh(["-c", "import runstore, hydra"], base)  # writes bytecode caches if they are missing
    t_import = min(fresh(["-c", "import runstore"], base) for _ in range(repeat))
    t_hydra = min(fresh([str(base / "plain.py")], base) for _ in range(repeat))
    t_first = min(fresh([str(base / "train.py"), "--new-run", "-q", "--repo", str(base / "repo")], base)
                  for _ in range(repeat))
    print(f"fresh process (best of {repeat})")
    row("baseline: python -c 'import runstore'", f"{t_import:.2f} s")
    row("baseline: python plain.py (one job, Hydra alone)", f"{t_hydra:.2f} s")
    row("python train.py (one job, @runstore.main)", f"{t_first:.2f} s",
        f"{t_first / t_import:.1f}x import, {t_first / t_hydra:.1f}x Hydra alone")
    shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--runs-before", type=int, nargs="*", default=[0, 2_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir")
    opts = parser.parse_args()
    if opts.dir:
        os.environ["RUNSTORE_BENCH_DIR"] = opts.dir
    for before in opts.runs_before:
        per_job(before, opts.jobs, opts.repeat)
    fresh_process(max(opts.repeat, 5))


if __name__ == "__main__":
    main()
