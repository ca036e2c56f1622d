"""What the integrations, system metrics and environment capture cost.

    python benchmarks/bench_integrations.py [--runs 1000] [--steps 20000]

1. Per-step overhead of each framework adapter (the call the framework makes per
   logging step, with 4 metrics) against the same 4 direct ``run.track`` calls, in
   the same process, interleaved.
2. Creating runs: the 1,000-run build of bench_track.py with the defaults
   (environment captured, system metrics watched) against both turned off.
3. The first ``Run()`` in a fresh process, with the defaults and with both off
   (environment capture runs once per process: this is where it shows).
4. The sampler: one ``Probe.sample()`` (psutil), and a tracking loop while the
   sampling thread runs every 50 ms against the same loop without it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("KERAS_BACKEND", "torch")

from _common import row, workdir  # noqa: E402

from runstore import Repo, Run  # noqa: E402

METRICS = {"train_loss": 0.5, "train_acc": 0.9, "lr": 1e-3, "grad_norm": 1.5}


def per_step(steps: int, call) -> float:
    t = time.perf_counter()
    for step in range(steps):
        call(step)
    return (time.perf_counter() - t) / steps


def adapters(base: Path, steps: int) -> None:
    print(f"per logging step, 4 metrics, {steps:,} steps (median of 3, interleaved)")
    cases = {}

    def direct(repo):
        run = Run(repo, system_metrics=False, capture_env=False)

        def call(step):
            run.track(0.5, name="loss", step=step, context={"subset": "train"})
            run.track(0.9, name="acc", step=step, context={"subset": "train"})
            run.track(1e-3, name="lr", step=step)
            run.track(1.5, name="grad_norm", step=step)
        return call, run

    cases["run.track x 4 (baseline)"] = direct

    try:
        from runstore.integrations.lightning import RunstoreLogger

        def lightning(repo):
            logger = RunstoreLogger(repo=repo, system_metrics=False, capture_env=False)
            return (lambda step: logger.log_metrics(METRICS, step)), logger.experiment
        cases["lightning RunstoreLogger.log_metrics"] = lightning
    except ImportError:
        pass
    try:
        from transformers import TrainerControl, TrainerState

        from runstore.integrations.transformers import RunstoreCallback as HF

        def hf(repo):
            cb, state, control = HF(repo=repo, system_metrics=False, capture_env=False), TrainerState(), TrainerControl()

            def call(step):
                state.global_step = step
                cb.on_log(None, state, control, logs=METRICS)
            return call, cb.run
        cases["transformers RunstoreCallback.on_log"] = hf
    except ImportError:
        pass
    try:
        from runstore.integrations.keras import RunstoreCallback as KerasCB

        def keras(repo):
            cb = KerasCB(repo=repo, system_metrics=False, capture_env=False)
            logs = {"loss": 0.5, "acc": 0.9, "lr": 1e-3, "grad_norm": 1.5}
            return (lambda step: cb.on_train_batch_end(step, logs)), cb.run
        cases["keras RunstoreCallback.on_train_batch_end"] = keras
    except ImportError:
        pass

    times: dict[str, list[float]] = {k: [] for k in cases}
    for i in range(3):
        for label, make in cases.items():
            call, run = make(Repo(base / f"adapter-{i}-{len(times[label])}-{abs(hash(label))}"))
            times[label].append(per_step(steps, call))
            run.close()
    base_t = statistics.median(times["run.track x 4 (baseline)"])
    for label, ts in times.items():
        t = statistics.median(ts)
        row(label, f"{t * 1e6:.1f} us/step", f"{t / base_t:.2f}x")


def build(repo: Repo, runs: int, **kwargs) -> float:
    t = time.perf_counter()
    for i in range(runs):
        run = Run(repo=repo, experiment="build", **kwargs)
        run["hparams"] = {"lr": 1e-3, "batch_size": 32}
        for step in range(100):
            run.track(1.0 / (step + 1), name="loss", step=step)
        run.close()
    return time.perf_counter() - t


def creation(base: Path, runs: int) -> None:
    print(f"\nbuild: {runs:,} runs x 100 steps, 2 params, closed (median of 3, interleaved)")
    off, on = [], []
    for i in range(3):
        off.append(build(Repo(base / f"off{i}"), runs, system_metrics=False, capture_env=False))
        on.append(build(Repo(base / f"on{i}"), runs))
    t_off, t_on = statistics.median(off), statistics.median(on)
    row("capture_env=False, system_metrics=False", f"{t_off / runs * 1e3:.2f} ms/run", "1.00x")
    row("defaults (environment + system metrics)", f"{t_on / runs * 1e3:.2f} ms/run", f"{t_on / t_off:.2f}x")


def first_run(base: Path) -> None:
    print("\nfirst Run() in a fresh process (import runstore excluded; median of 5)")
    code = ("import time, sys; import runstore; t = time.perf_counter(); "
            "r = runstore.Run(sys.argv[1], **eval(sys.argv[2])); print(time.perf_counter() - t); r.close()")
    results = {}
    for label, kwargs in (("both off", "dict(system_metrics=False, capture_env=False)"), ("defaults", "{}")):
        ts = []
        for i in range(5):
            out = subprocess.run([sys.executable, "-c", code, str(base / f"first-{i}"), kwargs],
                                 capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
            ts.append(float(out.stdout.strip().splitlines()[-1]))
        results[label] = statistics.median(ts)
    for label, t in results.items():
        row(f"first Run(), {label}", f"{t * 1e3:.1f} ms", f"{t / results['both off']:.2f}x")


def sampler(base: Path, steps: int) -> None:
    from runstore.tracking import system_metrics as _system_metrics

    probe = _system_metrics.Probe()
    ts = []
    for _ in range(200):
        t = time.perf_counter()
        probe.sample()
        ts.append(time.perf_counter() - t)
    print("\nsystem metrics sampler")
    row("one sample (psutil, no GPU), on the sampling thread", f"{statistics.median(ts) * 1e6:.0f} us")
    loops = {"tracking loop, no sampler": [], "tracking loop, sampler every 50 ms": []}
    for i in range(3):
        for label, interval in (("tracking loop, no sampler", False), ("tracking loop, sampler every 50 ms", 0.05)):
            run = Run(Repo(base / f"loop-{i}-{interval}"), system_metrics=interval, capture_env=False)
            loops[label].append(per_step(steps * 5, lambda s: run.track(0.5, name="loss", step=s)))
            run.close()
    b = statistics.median(loops["tracking loop, no sampler"])
    for label, ts in loops.items():
        t = statistics.median(ts)
        row(label, f"{t * 1e9:.0f} ns/track", f"{t / b:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=20_000)
    args = ap.parse_args()
    base = workdir("integrations")
    try:
        adapters(base, args.steps)
        creation(base, args.runs)
        first_run(base)
        sampler(base, args.steps)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
