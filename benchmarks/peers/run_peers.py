"""Run the peer benchmarks (runstore, Aim, MLflow, trackio, tensorboardX) and print one table.

    python benchmarks/peers/run_peers.py --python-peers /path/to/venv/bin/python -o peers.json
    python benchmarks/peers/run_peers.py --quick            # small sizes, a smoke test

Every tool runs the same workloads (see _workloads.py) in its own subprocess:
runstore under this interpreter (or ``--python-runstore``), the peers under
``--python-peers`` (default ``$RUNSTORE_PEERS_PYTHON``, else this interpreter),
so that the peers, which are never a dependency of runstore (``pip install
runstore[peers]`` or a separate virtual environment), cannot disturb its
environment. A peer that does not import there is skipped, with a message.

The repeats are interleaved (runstore, aim, mlflow, ..., then again) so that
machine noise hits every tool alike; the table shows the median of the repeats
and, in brackets, the ratio of that median to runstore's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _workloads import OFFLINE_ENV, RUN_STEPS, RUNS, TRACK_STEPS, parse_result  # noqa: E402

# tool -> (script, module to import, distribution name)
TOOLS = {
    "runstore": ("bench_runstore.py", "runstore", "runstore"),
    "aim": ("bench_aim.py", "aim", "aim"),
    "mlflow": ("bench_mlflow.py", "mlflow", "mlflow"),
    "trackio": ("bench_trackio.py", "trackio", "trackio"),
    "tensorboardX": ("bench_tensorboardx.py", "tensorboardX", "tensorboardX"),
}

QUICK = {"steps": 2_000, "runs": 100, "subset_steps": 50}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python-peers", default=os.environ.get("RUNSTORE_PEERS_PYTHON") or sys.executable,
                    help="interpreter with the peers installed (default: $RUNSTORE_PEERS_PYTHON, else this one)")
    ap.add_argument("--python-runstore", default=sys.executable,
                    help="interpreter that has runstore (default: this one)")
    ap.add_argument("--tools", default=",".join(TOOLS),
                    help="comma-separated subset of: " + ", ".join(TOOLS))
    ap.add_argument("--repeats", type=int, default=3, help="samples per tool (default 3); the table shows medians")
    ap.add_argument("--quick", action="store_true",
                    help=f"small sizes: {QUICK['steps']:,} steps, {QUICK['runs']} runs (a smoke test, not a result)")
    ap.add_argument("--steps", type=int, default=None, help=f"workload 1 steps (default {TRACK_STEPS:,})")
    ap.add_argument("--runs", type=int, default=None, help=f"workload 2 runs (default {RUNS:,})")
    ap.add_argument("--subset-steps", type=int, default=None,
                    help="steps timed for per-call APIs too slow to run in full (default 200)")
    ap.add_argument("--build-subset", action="append", default=[], metavar="TOOL=N",
                    help="build only N runs with TOOL and extrapolate its build/select/fetch times linearly")
    ap.add_argument("-o", "--output", help="write the raw samples, medians and machine description as JSON")
    return ap.parse_args(argv)


# -- environment -----------------------------------------------------------------------------
def importable(python: str, module: str, dist: str) -> tuple[bool, str]:
    """(True, version) when ``module`` imports under ``python``, else (False, the error)."""
    code = f"import importlib.metadata, {module}; print(importlib.metadata.version({dist!r}))"
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return False, last
    return True, proc.stdout.strip()


def machine(pythons: dict[str, str]) -> dict[str, Any]:
    def sh(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return "?"

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    scratch = os.environ.get("RUNSTORE_BENCH_DIR") or tempfile.gettempdir()
    return {"nproc": sh(["nproc"]), "cpu": cpu, "free_h": sh(["free", "-h"]), "platform": platform.platform(),
            "scratch_filesystem": sh(["df", "-hT", scratch]),
            "pythons": {label: sh([py, "-V"]) for label, py in pythons.items()},
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


# -- running -----------------------------------------------------------------------------------
def run_one(python: str, script: str, extra: list[str]) -> dict[str, Any]:
    cmd = [python, str(HERE / script), *extra]
    env = dict(OFFLINE_ENV, **os.environ)
    env.update(PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(HERE))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return parse_result(proc.stdout)


def get(sample: dict[str, Any], path: str) -> float | None:
    cur: Any = sample
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur if isinstance(cur, (int, float)) else None


# (label, path into a sample, unit formatter)
ROWS = [
    ("1. track, one call per value", "track_per_value.ns_per_value", "ns"),
    ("   x the plain-Python floor", "track_per_value.x_floor", "x"),
    ("1b. track, batched calls", "track_batched.ns_per_value", "ns"),
    ("   x the plain-Python floor", "track_batched.x_floor", "x"),
    ("2. build the repository", "build.seconds_extrapolated", "s"),
    ("2b. index step before queries", "index.seconds_extrapolated", "s"),
    ("3. select runs lr < 0.01", "select.seconds_extrapolated", "s"),
    ("4. fetch their loss curves", "fetch.seconds_extrapolated", "s"),
    ("3+4 in a fresh process, imports included: select", "select.process_extrapolated", "s"),
    ("   fetch", "fetch.process_extrapolated", "s"),
    ("5. disk per point, workload 2", "disk.bytes_per_point", "B"),
    ("5b. disk per point, workload 1", "disk_long_run.bytes_per_point", "B"),
]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "ns":
        if value >= 1e6:
            return f"{value / 1e6:.2f} ms"
        return f"{value / 1000:.1f} µs" if value >= 1000 else f"{value:.0f} ns"
    if unit == "s":
        return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.1f} ms"
    if unit == "B":
        return f"{value:.0f} B"
    if value >= 100:
        return f"{value:.0f}x"
    return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def medians(samples: list[dict[str, Any]]) -> dict[str, float]:
    out = {}
    for _, path, _ in ROWS:
        vals = [v for v in (get(s, path) for s in samples) if v is not None]
        if vals:
            out[path] = statistics.median(vals)
    return out


def table(meds: dict[str, dict[str, float]], tools: list[str]) -> str:
    base = meds.get("runstore", {})
    header = ["workload"] + tools
    lines = []
    for label, path, unit in ROWS:
        if not any(path in meds[t] for t in tools):
            continue
        cells = [label]
        for t in tools:
            v = meds[t].get(path)
            cell = fmt(v, unit)
            b = base.get(path)
            if v is not None and b and unit != "x" and t != "runstore":
                cell += f" ({v / b:.0f}x)" if v / b >= 10 else f" ({v / b:.1f}x)"
            cells.append(cell)
        lines.append(cells)
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |", rule]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in lines]
    return "\n".join(out)


def extra_lines(samples: dict[str, list[dict[str, Any]]], tools: list[str]) -> list[str]:
    lines = []
    for t in tools:
        names = sorted({k for s in samples[t] for k in s.get("extras", {})})
        for name in names:
            entries = [s["extras"][name] for s in samples[t] if name in s.get("extras", {})]
            if "ns_per_value" in entries[0]:
                ns = statistics.median(e["ns_per_value"] for e in entries)
                xf = statistics.median(e.get("x_floor", float("nan")) for e in entries)
                lines.append(f"  {t} {name}: {fmt(ns, 'ns')} per value ({fmt(xf, 'x')} the floor; "
                             f"{entries[0]['steps_timed']:,} steps timed)")
            else:
                secs = statistics.median(e["seconds_extrapolated"] for e in entries)
                lines.append(f"  {t} {name}: {fmt(secs, 's')} (first call in a fresh process, "
                             f"{entries[0]['count']} runs)")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = dict(QUICK) if args.quick else {}
    for key in ("steps", "runs", "subset_steps"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    common = [f"--{k.replace('_', '-')}={v}" for k, v in sizes.items()]
    subsets = dict(s.split("=", 1) for s in args.build_subset)

    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in TOOLS]
    if unknown:
        print(f"unknown tool(s) {unknown}; choose from {list(TOOLS)}", file=sys.stderr)
        return 2
    pythons = {t: (args.python_runstore if t == "runstore" else args.python_peers) for t in wanted}
    tools, versions = [], {}
    for t in wanted:
        ok, info = importable(pythons[t], TOOLS[t][1], TOOLS[t][2])
        if ok:
            tools.append(t)
            versions[t] = info
        else:
            print(f"skipping {t}: it does not import under {pythons[t]} ({info})", file=sys.stderr)
    if not tools:
        print("nothing to run", file=sys.stderr)
        return 1
    # Every tool's fresh processes import compiled modules, as after a `pip install`
    # (an editable install under PYTHONDONTWRITEBYTECODE would compile on every start).
    sys.path.insert(0, str(HERE.parent))
    from _common import ensure_bytecode

    for t in tools:
        ensure_bytecode(pythons[t], TOOLS[t][1])

    runs = sizes.get("runs", RUNS)
    print(f"workloads: 1) 1 run x 5 metrics x {sizes.get('steps', TRACK_STEPS):,} steps with a context; "
          f"2) {runs:,} runs x {RUN_STEPS} steps x 1 metric, 3 params; 3) select lr < 0.01; "
          f"4) fetch the selected loss curves as NumPy; 5) disk per point", file=sys.stderr)
    samples: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    started = time.perf_counter()
    for rep in range(args.repeats):
        for t in tools:
            extra = list(common)
            if t in subsets:
                extra.append(f"--build-runs={subsets[t]}")
            t0 = time.perf_counter()
            try:
                samples[t].append(run_one(pythons[t], TOOLS[t][0], extra))
            except RuntimeError as exc:
                print(f"  {t} failed: {exc}", file=sys.stderr)
                continue
            print(f"  repeat {rep + 1}/{args.repeats} {t:<13} {time.perf_counter() - t0:7.1f} s", file=sys.stderr)
    tools = [t for t in tools if samples[t]]
    meds = {t: medians(samples[t]) for t in tools}

    print()
    print(table(meds, tools))
    notes = []
    for t in tools:
        last = samples[t][-1]
        for phase in ("select", "fetch"):
            r = last.get(phase)
            if r and r.get("count") != r.get("expected"):
                notes.append(f"{t}: {phase} returned {r.get('count')} runs, expected {r.get('expected')}")
        built = last.get("build", {}).get("runs_built")
        if built and built != last.get("runs"):
            notes.append(f"{t}: built {built} of {last['runs']} runs; build/select/fetch extrapolated linearly")
        timed_steps = last.get("track_per_value", {}).get("steps_timed")
        if timed_steps is not None and timed_steps < last.get("steps", 0):
            notes.append(f"{t}: per-value tracking timed on the first {timed_steps:,} steps only")
    extras = extra_lines(samples, tools)
    if extras:
        print("\nother variants (medians; not in the table):")
        print("\n".join(extras))
    print(f"\nmedians of {args.repeats} interleaved repeats; (Nx) = ratio to runstore's median; "
          f"select/fetch = first call in a fresh process; total {time.perf_counter() - started:.0f} s")
    for n in notes:
        print("note: " + n)

    if args.output:
        doc = {"command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
               "sizes": sizes, "machine": machine({"runstore": args.python_runstore, "peers": args.python_peers}),
               "versions": versions, "medians": meds, "samples": samples}
        Path(args.output).write_text(json.dumps(doc, indent=1))
        print(f"raw results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
