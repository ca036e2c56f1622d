"""runstore server: tracking cost, ingest throughput, remote queries, first call.

    python benchmarks/bench_server.py [--steps 100000] [--points 1000000] [--clients 1,8,32] [--runs 1000]
    python benchmarks/bench_server.py --only-ingest --clients 8 --points 2000000 --repeat 3 --modes many
    python benchmarks/bench_server.py --only-peers --aim-python AIM_VENV/bin/python --mlflow-python MLFLOW_VENV/bin/python

Every figure sits next to a baseline measured in the same process (machines are
shared and noisy):

* ``track()`` on a remote run vs the floor (a plain Python function appending to
  lists; benchmarks/peers/_workloads.py) and vs a local run: the loop alone, and
  the loop plus ``close()`` (which waits for the server's acknowledgements);
* ingest throughput with 1, 8 and 32 client processes on loopback: each client
  tracks its share of the points (``track_many`` in chunks of 10,000, then the
  same with ``track()`` per point), every client has started and imported before
  the clock starts, and the clock stops when the last client's ``close()`` has
  its acknowledgements (everything committed by the server);
* remote ``query`` and ``query_sequences(...).to_arrow()`` over a 1,000-run
  repository vs the same calls on the local repository (warm: the second call;
  the first remote call fetches the mirror);
* the first call in a fresh process: ``Repo(url)``, a run, one point, ``close()``;
* with ``--aim-python PATH`` (an environment where ``aim`` is installed): the same
  tracking loop through ``aim server`` (Aim's remote tracking, ``aim://``) and
  through ``runstore server``, each client in its own process and environment;
* with ``--mlflow-python PATH`` (an environment with the full ``mlflow`` package):
  ``mlflow server`` on a SQLite backend store next to ``runstore server``, on the
  same two workloads: a tracking loop of one call per value (``log_metric`` /
  ``track()``), and ingest from 1 and 8 client processes sending their points in
  batches of 1,000 (``log_batch``, MLflow's REST limit, / ``track_many``), the
  clock from 'go' to the last client's acknowledged end of run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _common import best_of, row, workdir  # noqa: E402
from peers._workloads import floor_factory  # noqa: E402
from server_proc import ServerProcess  # noqa: E402

from runstore import Repo, Run  # noqa: E402

NAMES = ["loss", "acc", "lr", "grad_norm", "throughput"]


def loop(track, steps: int) -> float:
    t = time.perf_counter()
    for step in range(steps):
        for name in NAMES:
            track(0.5, name, step=step, context={"subset": "train"})
    return time.perf_counter() - t


def floor_loop(steps: int) -> float:
    track = floor_factory()
    t = time.perf_counter()
    for step in range(steps):
        for name in NAMES:
            track(0.5, name, step, context={"subset": "train"})
    return time.perf_counter() - t


def track_cost(url: str, local: Repo, steps: int) -> None:
    print(f"\ntrack() per value ({steps:,} steps x {len(NAMES)} names; the training thread's cost)")
    n = steps * len(NAMES)
    results = {}
    for label, make in (("floor", None), ("local run", lambda: Run(repo=local)),
                        ("remote run", lambda: Run(repo=Repo(url)))):
        loops, totals = [], []
        for _ in range(3):
            if make is None:
                loops.append(floor_loop(steps))
                totals.append(loops[-1])
                continue
            run = make()
            t0 = time.perf_counter()
            loops.append(loop(run.track, steps))
            run.close()
            totals.append(time.perf_counter() - t0)
        results[label] = (min(loops), min(totals))
    floor = results["floor"][0]
    for label, (lp, total) in results.items():
        row(f"{label}: loop", f"{lp / n * 1e9:8.0f} ns/value", f"{lp / floor:5.2f}x floor")
        if label != "floor":
            row(f"{label}: loop + close()", f"{total / n * 1e9:8.0f} ns/value",
                f"{total / results['local run'][1]:5.2f}x local")


CLIENT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from runstore import Repo, Run
    url, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    repo = Repo(url, flush_interval=0.2, close_timeout=600)
    run = Run(repo=repo, experiment="ingest")
    values = np.random.default_rng(0).random(10_000)
    print("ready", flush=True)
    sys.stdin.readline()
    if mode == "many":
        for start in range(0, n, 10_000):
            run.track_many(values[: min(10_000, n - start)], "loss", context={"subset": "train"})
    else:
        track = run.track
        for i in range(n):
            track(0.5, "loss", context={"subset": "train"})
    run.close()
    print("done", flush=True)
""")


def ingest(url: str, clients: int, points: int, mode: str, script: Path) -> float:
    per = points // clients
    procs = [subprocess.Popen([sys.executable, str(script), url, str(per), mode], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(clients)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    t = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        assert p.stdout.readline().strip() == "done"
    elapsed = time.perf_counter() - t
    for p in procs:
        p.wait(timeout=60)
    return per * clients / elapsed


def throughput(base: Path, counts: list[int], points: int, repeat: int = 1, modes: str = "many,track") -> None:
    import statistics

    script = base / "client.py"
    script.write_text(CLIENT)
    print(f"\ningest throughput on loopback ({points:,} points in total per row; clock from 'go' to the last "
          f"acknowledged close; median of {repeat}, a fresh server and repository each time)")
    for mode, label in (("many", "track_many (10k chunks)"), ("track", "track() per point")):
        if mode not in modes.split(","):
            continue
        for clients in counts:
            rates = []
            for _ in range(repeat):
                shutil.rmtree(base / "ingest", ignore_errors=True)
                with ServerProcess(base / "ingest") as proc:
                    rates.append(ingest(proc.url, clients, points if mode == "many" else points // 4, mode, script))
            row(f"{label}, {clients} client process(es)", f"{statistics.median(rates) / 1e6:7.2f} M points/s",
                "(" + ", ".join(f"{r / 1e6:.2f}" for r in rates) + ")" if repeat > 1 else "")


def build_runs(repo: Repo, runs: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(runs):
        run = Run(repo=repo, experiment=f"e{i % 10}")
        run["hparams"] = {"lr": float(10 ** -rng.uniform(1, 5)), "bs": int(2 ** rng.integers(4, 9)),
                          "model": ["cnn", "mlp", "rnn"][i % 3]}
        for name in ("loss", "acc"):
            run.track_many(rng.random(100), name, context={"subset": "train"})
        run.close()


def queries(base: Path, runs: int) -> None:
    path = base / "queries"
    build_runs(Repo(path), runs)
    local = Repo(path, readonly=True)
    print(f"\nqueries over {runs:,} runs (median of 5, warm; target <= 2x local + 5 ms)")
    with ServerProcess(path) as proc:
        remote = Repo(proc.url)
        for label, fn in (
            ("query('run.hparams.lr < 0.01').to_arrow()", lambda r: r.query("run.hparams.lr < 0.01").to_arrow()),
            ("query_sequences(\"seq.name == 'loss'\").to_arrow()",
             lambda r: r.query_sequences("seq.name == 'loss'").to_arrow()),
        ):
            t = time.perf_counter()
            fn(remote)
            first = time.perf_counter() - t
            fn(local)
            loc, _ = best_of(lambda: fn(local), 5)
            rem, _ = best_of(lambda: fn(remote), 5)
            row(f"{label}: local", f"{loc * 1e3:8.2f} ms")
            row(f"{label}: remote", f"{rem * 1e3:8.2f} ms",
                f"{rem / loc:5.2f}x local; target {2 * loc * 1e3 + 5:.1f} ms; first call {first * 1e3:.0f} ms")


FIRST = "from runstore import Repo, Run; r = Run(repo=Repo({url!r})); r.track(1.0, name='x'); r.close()"


def first_call(url: str) -> None:
    print("\nfirst call in a fresh process (python -c: import, Repo(url), a run, one point, close)")
    base_t, _ = best_of(lambda: subprocess.run([sys.executable, "-c", "import runstore"], check=True), 3)
    t, _ = best_of(lambda: subprocess.run([sys.executable, "-c", FIRST.format(url=url)], check=True), 3)
    row("python -c 'import runstore' (baseline)", f"{base_t * 1e3:8.0f} ms")
    row("python -c '<remote run, one point, close>'", f"{t * 1e3:8.0f} ms", f"+{(t - base_t) * 1e3:.0f} ms")


REMOTE_LOOP = """
import sys, time
kind, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "aim":
    from aim import Run
    run = Run(repo=url, experiment="bench")
elif kind == "mlflow":
    from mlflow import MlflowClient
    client = MlflowClient(tracking_uri=url)
    run_id = client.create_run(client.create_experiment("bench")).info.run_id
    log_metric = client.log_metric
    t = time.perf_counter()
    for i in range(n):
        log_metric(run_id, "train/loss", 0.5, step=i)  # MLflow has no context: a key prefix
    loop = time.perf_counter() - t
    client.set_terminated(run_id)
    print("@@", loop, time.perf_counter() - t)
    sys.exit(0)
else:
    from runstore import Repo, Run
    run = Run(repo=Repo(url), experiment="bench")
t = time.perf_counter()
for i in range(n):
    run.track(0.5, name="loss", step=i, context={"subset": "train"})
loop = time.perf_counter() - t
run.close()
print("@@", loop, time.perf_counter() - t)
"""


def _timings(stdout: str) -> tuple[float, float]:
    """The (loop, total) line of REMOTE_LOOP (the peers print banners of their own)."""
    line = [ln for ln in stdout.splitlines() if ln.startswith("@@")][-1]
    return float(line.split()[1]), float(line.split()[2])


def versus_aim(base: Path, aim_python: str, n: int) -> None:
    import socket

    aim_bin = str(Path(aim_python).parent / "aim")
    repo = base / "aim-repo"
    repo.mkdir()
    subprocess.run([aim_bin, "init", "--repo", str(repo)], check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([aim_bin, "server", "--repo", str(repo), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in server.stdout:
            if "mounted" in line:
                break
        script = base / "remote_loop.py"
        script.write_text(REMOTE_LOOP)
        out = subprocess.run([aim_python, str(script), "aim", f"aim://127.0.0.1:{port}", str(n)],
                             capture_output=True, text=True, check=True).stdout
        aim_loop, aim_total = _timings(out)
    finally:
        server.terminate()
        server.wait(timeout=30)
    with ServerProcess(base / "vs-aim") as proc:
        out = subprocess.run([sys.executable, str(script), "runstore", proc.url, str(n)],
                             capture_output=True, text=True, check=True).stdout
    rs_loop, rs_total = _timings(out)
    print(f"\nremote tracking next to Aim's (aim server; {n:,} values, one call each, client in its own process)")
    row("runstore server: track() loop", f"{rs_loop / n * 1e6:8.2f} us/value")
    row("aim server: track() loop", f"{aim_loop / n * 1e6:8.2f} us/value", f"{aim_loop / rs_loop:7.0f}x runstore")
    row("runstore server: loop + close()", f"{rs_total * 1e3:8.0f} ms")
    row("aim server: loop + close()", f"{aim_total * 1e3:8.0f} ms", f"{aim_total / rs_total:7.0f}x runstore")


PEER_INGEST = """
import sys, time
kind, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "mlflow":
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name("ingest")
    exp_id = exp.experiment_id if exp is not None else client.create_experiment("ingest")
    run_id = client.create_run(exp_id).info.run_id
else:
    import numpy as np
    from runstore import Repo, Run
    run = Run(repo=Repo(url, flush_interval=0.2, close_timeout=600), experiment="ingest")
    values = np.full(1000, 0.5)
print("@@ ready", flush=True)
sys.stdin.readline()
if kind == "mlflow":
    for start in range(0, n, 1000):
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric("train/loss", 0.5, now, step)
                                          for step in range(start, min(start + 1000, n))])
    client.set_terminated(run_id)
else:
    for start in range(0, n, 1000):
        run.track_many(values[: min(1000, n - start)], "loss", context={"subset": "train"})
    run.close()
print("@@ done", flush=True)
"""


def _protocol_line(proc: subprocess.Popen) -> str:
    for line in proc.stdout:
        if line.startswith("@@"):
            return line[2:].strip()
    raise RuntimeError(f"a client exited early ({proc.wait()})")


def peer_ingest(python: str, kind: str, url: str, clients: int, per: int, script: Path) -> float:
    """Points/s from 'go' to the last client's acknowledged end of run."""
    procs = [subprocess.Popen([python, str(script), kind, url, str(per)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(clients)]
    try:
        for p in procs:
            assert _protocol_line(p) == "ready"
        t = time.perf_counter()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            assert _protocol_line(p) == "done"
        elapsed = time.perf_counter() - t
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=120)
    return per * clients / elapsed


class MlflowServer:
    """``mlflow server`` on a SQLite backend store, in its own process group (it starts
    workers and job consumers); stopped as a group."""

    def __init__(self, mlflow_python: str, base: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        base.mkdir(parents=True, exist_ok=True)
        self.cmd = [str(Path(mlflow_python).parent / "mlflow"), "server",
                    "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}",
                    "--default-artifact-root", str(base / "artifacts"),
                    "--host", "127.0.0.1", "--port", str(self.port)]
        self.log = base / "server.log"

    def __enter__(self) -> "MlflowServer":
        import urllib.request

        self.proc = subprocess.Popen(self.cmd, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError("mlflow server did not answer /health within 300 s")

    def __exit__(self, *exc) -> None:
        import signal

        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


def versus_mlflow(base: Path, mlflow_python: str, n: int, per: int, counts: list[int]) -> None:
    version = subprocess.run([mlflow_python, "-c", "import mlflow; print(mlflow.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    loop_script = base / "remote_loop.py"
    loop_script.write_text(REMOTE_LOOP)
    ingest_script = base / "peer_ingest.py"
    ingest_script.write_text(PEER_INGEST)
    env_mlflow = dict(os.environ, MLFLOW_ENABLE_ASYNC_LOGGING="false")
    with MlflowServer(mlflow_python, base / "mlflow") as server:
        out = subprocess.run([mlflow_python, str(loop_script), "mlflow", server.url, str(n)],
                             capture_output=True, text=True, check=True, env=env_mlflow).stdout
        ml_loop, ml_total = _timings(out)
        ml_rates = {c: peer_ingest(mlflow_python, "mlflow", server.url, c, per, ingest_script) for c in counts}
    with ServerProcess(base / "vs-mlflow") as proc:
        out = subprocess.run([sys.executable, str(loop_script), "runstore", proc.url, str(n)],
                             capture_output=True, text=True, check=True).stdout
        rs_loop, rs_total = _timings(out)
        rs_rates = {c: peer_ingest(sys.executable, "runstore", proc.url, c, per, ingest_script) for c in counts}
    print(f"\nnext to an MLflow tracking server (mlflow {version}, `mlflow server`, SQLite backend; "
          "each client in its own process and environment)")
    print(f"  one call per value, {n:,} values:")
    row("runstore server: track() loop", f"{rs_loop / n * 1e6:8.2f} us/value")
    row("mlflow server: log_metric() loop", f"{ml_loop / n * 1e6:8.2f} us/value", f"{ml_loop / rs_loop:7.0f}x runstore")
    row("runstore server: loop + close()", f"{rs_total * 1e3:8.0f} ms")
    row("mlflow server: loop + set_terminated()", f"{ml_total * 1e3:8.0f} ms", f"{ml_total / rs_total:7.0f}x runstore")
    print(f"  ingest, {per:,} points per client in batches of 1,000 (log_batch / track_many):")
    for c in counts:
        row(f"runstore server, {c} client process(es)", f"{rs_rates[c]:12,.0f} points/s")
        row(f"mlflow server, {c} client process(es)", f"{ml_rates[c]:12,.0f} points/s",
            f"runstore {rs_rates[c] / ml_rates[c]:.0f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--aim-python", default=None, help="python of an environment with aim installed")
    parser.add_argument("--aim-values", type=int, default=2000)
    parser.add_argument("--only-aim", action="store_true", help="only the comparison(s) with the peers' servers")
    parser.add_argument("--only-peers", action="store_true", help="only the comparison(s) with the peers' servers")
    parser.add_argument("--only-ingest", action="store_true", help="only the ingest throughput rows")
    parser.add_argument("--repeat", type=int, default=1, help="ingest samples per row (the median is shown)")
    parser.add_argument("--modes", default="many,track", help="ingest modes: many (track_many), track")
    parser.add_argument("--mlflow-python", default=None,
                        help="python of an environment with the full mlflow package (mlflow server)")
    parser.add_argument("--mlflow-values", type=int, default=200, help="values of the one-call-per-value loop")
    parser.add_argument("--mlflow-points", type=int, default=20_000, help="points per ingest client")
    parser.add_argument("--mlflow-clients", default="1,8")
    args = parser.parse_args()
    args.only_aim = args.only_aim or args.only_peers
    base = workdir("server")
    os.environ["XDG_CACHE_HOME"] = str(base / "cache")  # spools of this benchmark stay here
    try:
        if args.only_ingest:
            throughput(base, [int(c) for c in args.clients.split(",")], args.points, args.repeat, args.modes)
        elif not args.only_aim:
            with ServerProcess(base / "served") as proc:
                track_cost(proc.url, Repo(base / "local"), args.steps)
                first_call(proc.url)
            throughput(base, [int(c) for c in args.clients.split(",")], args.points, args.repeat, args.modes)
            queries(base, args.runs)
        if args.aim_python:
            versus_aim(base, args.aim_python, args.aim_values)
        if args.mlflow_python:
            versus_mlflow(base, args.mlflow_python, args.mlflow_values, args.mlflow_points,
                          [int(c) for c in args.mlflow_clients.split(",")])
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
