"""Object sequences (issue 13): the training-thread cost of track(Image/Distribution),
durability of 1,000 images, and reads of big image and distribution sequences.

    python benchmarks/bench_objects.py [--images 100000] [--dir DIR]

Targets (issue 13), each printed next to a baseline measured in the same process
(machines are shared and noisy; the scalar floor is ``run.track(0.5, name=...)``):

- training-thread cost of ``track(Image(64x64x3 uint8))`` <= 20 us;
- 1,000 such images durable (committed, seen by another handle) within 2 s of the last track;
- ``track(Distribution(1 M-element tensor))`` <= 5 ms on the training thread;
- reading the last image of a 100,000-image sequence <= 5 ms;
- reading 1,000 distributions of 64 bins as one 1,000x64 matrix <= 20 ms.

The last lines time the first read in a fresh process (import + open + read).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, row, workdir  # noqa: E402

from runstore import Distribution, Image, Repo, Run  # noqa: E402


def per_call(fn, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t) / n


def scalar_floor(repo: Repo, n: int = 20_000) -> float:
    with Run(repo=repo, experiment="floor") as run:
        track = run.track
        return per_call(lambda i: track(0.5, name="loss", step=i), n)


def image_track(repo: Repo, n: int = 1000, rounds: int = 3) -> tuple[float, float, float]:
    """(seconds per track() call for the first n images of a run, the same in later
    rounds (a training loop's steady state), seconds from the last track until another
    handle sees all the images of the last round)."""
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n)]
    run = Run(repo=repo, experiment="images")
    track = run.track
    other = Repo(repo.path)  # a second handle: sees only committed data
    costs, durable = [], 0.0
    for r in range(rounds):
        costs.append(per_call(lambda i: track(Image(pixels[i]), name="samples", step=r * n + i), n))
        last = time.perf_counter()
        while True:
            try:
                if other.get_run(run.id).sequence("samples").count >= (r + 1) * n:
                    break
            except Exception:
                pass
            time.sleep(0.005)
        durable = time.perf_counter() - last
    run.close()
    return costs[0], statistics.median(costs[1:]), durable


def distribution_track(repo: Repo, x, n: int = 20) -> float:
    with Run(repo=repo, experiment="dist") as run:
        times = []
        for i in range(n):
            t = time.perf_counter()
            run.track(Distribution(x, bins=64), name="weights", step=i)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


FRESH = """
import sys, time
t = time.perf_counter()
from runstore import Repo
run = Repo(sys.argv[1]).get_run(sys.argv[2])
if sys.argv[3] == "image":
    px = run.sequence("big")[-1].to_numpy()
else:
    m = run.sequence("dists").to_numpy()
    assert m.shape == (1000, 64)
print(time.perf_counter() - t)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    base = args.dir or workdir("objects")
    shutil.rmtree(base / "repo", ignore_errors=True)
    repo = Repo(base / "repo")

    print("training thread")
    floor = scalar_floor(repo)
    row("scalar floor: run.track(0.5)", f"{floor * 1e6:.2f} us")
    first, steady, durable = image_track(repo)
    row("track(Image(64x64x3 uint8)), first 1,000 of a run", f"{first * 1e6:.1f} us", f"{first / floor:.1f}x floor")
    row("track(Image(64x64x3 uint8)), later rounds  [<= 20 us]", f"{steady * 1e6:.1f} us",
        f"{steady / floor:.1f}x floor")
    row("1,000 images durable after the last track  [<= 2 s]", f"{durable:.2f} s")
    x = np.random.default_rng(1).normal(size=1_000_000).astype(np.float32)
    copy = best_of(lambda: x.copy(), 5)[0]
    dist = distribution_track(repo, x)
    row("track(Distribution(1 M float32 NumPy))  [<= 5 ms]", f"{dist * 1e3:.2f} ms", f"{dist / copy:.1f}x a copy")
    try:
        import torch

        tx = torch.from_numpy(x.copy())
        dist_t = distribution_track(repo, tx)
        row("track(Distribution(1 M float32 torch tensor))  [<= 5 ms]", f"{dist_t * 1e3:.2f} ms",
            f"{dist_t / copy:.1f}x a copy")
    except ImportError:
        pass
    row("baseline: x.copy() of the 1 M-element array", f"{copy * 1e3:.2f} ms")

    print(f"reads (a sequence of {args.images:,} 16x16 images; 1,000 distributions of 64 bins)")
    t = time.perf_counter()
    rng = np.random.default_rng(2)
    with Run(repo=repo, experiment="big", flush_interval=3600) as run:
        for i in range(args.images):
            run.track(Image(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)), name="big", step=i)
            run.track(float(i), name="scalar", step=i)
            if i % 10_000 == 9_999:
                run.flush()
        edges = np.linspace(-1, 1, 65)
        for i in range(1000):
            run.track(Distribution.from_histogram(rng.integers(0, 100, 64), edges), name="dists", step=i)
    row(f"wrote {args.images:,} images + {args.images:,} scalars", f"{time.perf_counter() - t:.1f} s")
    view = Repo(repo.path).get_run(run.id)
    big, scalar, dists = view.sequence("big"), view.sequence("scalar"), view.sequence("dists")
    base_last = best_of(lambda: scalar[-1], 9)[0]
    last = best_of(lambda: big[-1].to_numpy(), 9)[0]
    row("scalar seq[-1] of the same length (baseline)", f"{base_last * 1e3:.3f} ms")
    row("image seq[-1].to_numpy()  [<= 5 ms]", f"{last * 1e3:.3f} ms", f"{last / base_last:.1f}x scalar")
    base_vals = best_of(lambda: scalar[:64_000].values, 9)[0]
    mat = best_of(lambda: dists.to_numpy(), 9)[0]
    assert dists.to_numpy().shape == (1000, 64)
    row("scalar seq[:64000].values (baseline: as many floats)", f"{base_vals * 1e3:.3f} ms")
    row("distributions seq.to_numpy() -> 1000x64  [<= 20 ms]", f"{mat * 1e3:.3f} ms", f"{mat / base_vals:.1f}x")
    for what in ("image", "dists"):
        out = subprocess.run([sys.executable, "-c", FRESH, str(repo.path), run.id, what],
                             capture_output=True, text=True, check=True)
        row(f"fresh process: import + open + {'last image' if what == 'image' else '1000x64 matrix'}",
            f"{float(out.stdout) * 1e3:.0f} ms")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
