"""Flush lag under a pure-Python training loop (issue 22, target 8; tests/test_crash.py's child).

    python benchmarks/bench_flush_lag.py [--trials 10] [--kill 2.5 | --kill 0.9,1.7] [--baseline SRC]

Each trial runs tests/writer_child.py in a fresh process (three float sequences, an 8x8
image every 10 steps, a text every 50, a 5-value ``track_many`` every 500 steps; flush
interval 0.1 s; it prints "step time" every 100 steps), SIGKILLs it after ``--kill``
seconds (a range: uniform in it) and reads back the last stored step. The lag is the kill
time minus the report time of that step: test_crash.py requires it under 0.8 s. The child
also times every group flush, every ``track_many`` call and every wait of ``track()`` for
a late flush (``Run._flush_overdue``). ``--baseline SRC`` runs another source tree's
runstore (its ``src`` directory) in alternation: the machine's load hits both alike.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CHILD = Path(__file__).resolve().parent.parent / "tests" / "writer_child.py"


def child() -> None:
    """In the writer process: time the flush path, then run writer_child.py."""
    import runpy

    from runstore.tracking import lifecycle
    from runstore.tracking import run as runmod

    def timed(owner, name, tag):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                os.write(2, f"{tag} {time.perf_counter() - t:.6f}\n".encode())

        setattr(owner, name, wrapper)

    timed(lifecycle, "_write_group", "G")
    timed(runmod.Run, "track_many", "M")
    timed(runmod.Run, "_flush_overdue", "O")
    sys.argv = [str(CHILD), *sys.argv[2:]]
    runpy.run_path(str(CHILD), run_name="__main__")


def trial(src: str | None, kill: float, base: str) -> dict:
    env = dict(os.environ, PYTHONPATH=src) if src else dict(os.environ)
    with tempfile.TemporaryDirectory(dir=base) as d:
        repo = str(Path(d) / "r")
        with open(Path(d) / "events", "w") as events:
            proc = subprocess.Popen([sys.executable, __file__, "--child", repo, "loop", "1", "0.1"],
                                    stdout=subprocess.PIPE, stderr=events, text=True, env=env)
            run_id = proc.stdout.readline().strip()
            reports: list = []

            def read() -> None:
                for line in proc.stdout:
                    parts = line.split()
                    if len(parts) == 2:
                        reports.append((int(parts[0]), float(parts[1])))

            reader = threading.Thread(target=read)
            reader.start()
            time.sleep(kill)
            proc.send_signal(signal.SIGKILL)
            killed = time.time()
            proc.wait()
            reader.join()
        code = ("import sys; from runstore import Repo; r = Repo(sys.argv[1]).get_run(sys.argv[2]); "
                "k = {'subset': 'train'}; print(r.sequence('loss', context=k).last_step "
                "if ('loss', k) in r.sequences() else -1)")
        out = subprocess.run([sys.executable, "-c", code, repo, run_id], capture_output=True, text=True, env=env)
        last = int(out.stdout.strip() or -1)
        at = [t for s, t in reports if s <= last]
        ev: dict = {"G": [], "M": [], "O": []}
        for line in (Path(d) / "events").read_text().splitlines():
            tag, _, secs = line.partition(" ")
            if tag in ev:
                ev[tag].append(float(secs))
    return {"lag": killed - max(at) if at else float("nan"), "steps": reports[-1][0] if reports else 0,
            "flushes": ev["G"], "calls": ev["M"], "waits": ev["O"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--kill", default="2.5", help="seconds before the SIGKILL, or a range lo,hi (uniform)")
    ap.add_argument("--baseline", default=None, help="another runstore src directory, run in alternation")
    ap.add_argument("--dir", default=None, help="where the trials' repositories go (default: a temp dir)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args()
    if args.child:
        return child()
    lo, _, hi = args.kill.partition(",")
    rng = random.Random(1234)
    variants = [("this tree", None)] + ([("baseline " + args.baseline, args.baseline)] if args.baseline else [])
    rows: dict = {label: [] for label, _ in variants}
    base = args.dir or tempfile.gettempdir()
    print(f"flush lag: tests/writer_child.py, flush interval 0.1 s, SIGKILL after {args.kill} s, "
          f"{args.trials} trials per tree (interleaved)")
    for _ in range(args.trials):
        kill = rng.uniform(float(lo), float(hi)) if hi else float(lo)
        for label, src in variants:
            rows[label].append(trial(src, kill, base))
    for label, _ in variants:
        rs = rows[label]
        flushes = [f for r in rs for f in r["flushes"]]
        lags = sorted(r["lag"] for r in rs)
        print(f" {label}:")
        print(f"  lag (s), sorted             {' '.join(f'{x:.2f}' for x in lags)}   (test_crash.py's bound: 0.8)")
        print(f"  longest flush per trial (s) {' '.join(f'{x:.2f}' for x in sorted(max(r['flushes'], default=0) for r in rs))}")
        print(f"  flushes {len(flushes)}, median {statistics.median(flushes) * 1e3 if flushes else 0:.0f} ms, "
              f"over 0.1 s {sum(f > 0.1 for f in flushes)}, over 0.15 s {sum(f > 0.15 for f in flushes)}")
        calls = [max(r["calls"], default=0) for r in rs]
        print(f"  longest track_many per trial (ms) {' '.join(f'{x * 1e3:.0f}' for x in sorted(calls))}")
        waits = [w for r in rs for w in r["waits"]]
        print(f"  track() calls into _flush_overdue {len(waits)}, {sum(waits):.2f} s in all; "
              f"steps reached, median {statistics.median(r['steps'] for r in rs):.0f}")


if __name__ == "__main__":
    main()
