"""Import throughput (issue 17): TensorBoard, MLflow and Aim into runstore, beside the
source tool's own read speed on the same files, measured in the same process.

Run:  python benchmarks/bench_import.py [--tb-runs 100] [--mlflow-runs 1000] [--aim-runs 10]
                                        [--only tensorboard,mlflow,aim] [--dir DIR]

* TensorBoard: one run of 10 tags x 10,000 steps is written by tensorboardX (the real
  writer), then its directory is copied to make ``--tb-runs`` runs (100 x 100,000 =
  10 M points by default: writing 10 M events with tensorboardX alone takes ~5 min).
  Timed: ``importers.tensorboard`` (read + write into a fresh repository), the read
  alone (``_tfevents.read``, CRC checks on), and the baseline: tensorboard's own
  ``EventFileLoader`` decoding the same files (on ``--baseline-runs`` of them; a rate).
  ``aim convert tensorboard`` (it needs TensorFlow) runs on one run when
  ``--aim-tf-python`` names an environment with aim, tensorflow-cpu and tensorboard.
* MLflow: ``--mlflow-runs`` runs written by the real MlflowClient into an SQLite
  database (10 params, 5 metrics x 100 steps each). Timed: ``importers.mlflow``, and
  the baseline MlflowClient reading the same runs (search_runs, then
  get_metric_history per metric), and ``aim convert mlflow`` on the same database
  when aim is installed.
* Aim: ``--aim-runs`` runs of 2 metrics x 10,000 steps written by aim. Timed:
  ``importers.aim`` and, as the baseline, aim's SDK reading every metric (what the
  importer's reader process does before streaming).
* First call in a fresh process: ``runstore import tensorboard`` on one run, as a
  subprocess (interpreter start, imports, reading, writing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import row, workdir  # noqa: E402

from runstore import Repo, importers  # noqa: E402
from runstore.importers import _tfevents  # noqa: E402


def tensorboard(base: Path, runs: int, baseline_runs: int, aim_tf_python: str | None) -> None:
    import tensorboardX

    print(f"TensorBoard: {runs} runs x 10 tags x 10,000 steps")
    logdir = base / "tb"
    first = logdir / "run000"
    t = time.perf_counter()
    w = tensorboardX.SummaryWriter(str(first), max_queue=100_000, flush_secs=10_000)
    rng = np.random.default_rng(0)
    values = rng.random((10_000, 10))
    tags = ["train/loss", "train/acc", "val/loss", "val/acc", "lr", "grad_norm", "throughput",
            "train/top5", "val/top5", "weight_norm"]
    for step in range(10_000):
        for k, tag in enumerate(tags):
            w.add_scalar(tag, float(values[step, k]), step)
    w.close()
    wrote = time.perf_counter() - t
    for i in range(1, runs):
        shutil.copytree(first, logdir / f"run{i:03d}")
    points = runs * 100_000
    row("tensorboardX writing one run (100,000 points)", f"{wrote:.1f} s", f"{100_000 / wrote:,.0f} points/s")

    files = sorted(logdir.rglob("events.out.tfevents.*"))
    t = time.perf_counter()
    n = 0
    for f in files:
        n += sum(len(c[0]) for c in _tfevents.read(f).scalars.values())
    read = time.perf_counter() - t
    assert n == points, n
    row("runstore: read only (CRC checked)", f"{read:.2f} s", f"{points / read:,.0f} points/s")

    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    t = time.perf_counter()
    m = 0
    for f in files[:baseline_runs]:
        for event in EventFileLoader(str(f)).Load():
            m += len(event.summary.value)
    base_s = time.perf_counter() - t
    base_rate = m / base_s
    row(f"baseline: tensorboard EventFileLoader ({baseline_runs} runs)", f"{base_s:.2f} s",
        f"{base_rate:,.0f} points/s")

    repo = Repo(base / "repo-tb")
    t = time.perf_counter()
    result = importers.tensorboard(logdir, repo=repo)
    total = time.perf_counter() - t
    assert result.points == points and len(result) == runs
    row("runstore: importers.tensorboard (read + write)", f"{total:.2f} s",
        f"{points / total:,.0f} points/s = {points / total / base_rate:.0f}x the baseline")
    t = time.perf_counter()
    again = importers.tensorboard(logdir, repo=repo)
    row("runstore: import again (all unchanged, skipped)", f"{time.perf_counter() - t:.3f} s",
        f"{len(again.unchanged)} runs")

    one = base / "tb-one"
    shutil.copytree(first, one / "run")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "runstore", "import", "tensorboard", str(one), "--repo",
                           str(base / "repo-fresh")], capture_output=True, text=True)
    fresh = time.perf_counter() - t
    assert proc.returncode == 0, proc.stderr
    row("fresh process: runstore import tensorboard (1 run, 100,000)", f"{fresh:.2f} s")
    if aim_tf_python:  # an environment with aim + tensorflow + tensorboard (aim's converter needs TF)
        aim = str(Path(aim_tf_python).parent / "aim")
        target = base / "aim-from-tb"
        target.mkdir()
        subprocess.run([aim, "init", "--repo", str(target)], capture_output=True, check=True)
        t = time.perf_counter()
        proc = subprocess.run([aim, "convert", "--repo", str(target), "tensorboard", "--logdir", str(one)],
                              capture_output=True, text=True)
        took = time.perf_counter() - t
        ok = "" if proc.returncode == 0 else " (failed)"
        row("peer: aim convert tensorboard (1 run, subprocess, TF import incl.)", f"{took:.1f} s",
            f"{100_000 / took:,.0f} points/s{ok}")


def mlflow(base: Path, runs: int) -> None:
    from mlflow.entities import Metric, Param, ViewType
    from mlflow.tracking import MlflowClient

    print(f"MLflow: {runs} runs x (10 params, 5 metrics x 100 steps) in SQLite")
    uri = f"sqlite:///{base}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("bench")
    t = time.perf_counter()
    for i in range(runs):
        run = client.create_run(exp, run_name=f"r{i}")
        metrics = [Metric(f"m{k}", float(s * k), 1_700_000_000_000 + s, s) for k in range(5) for s in range(100)]
        client.log_batch(run.info.run_id, metrics=metrics, params=[Param(f"p{k}", str(k * i)) for k in range(10)])
        client.set_terminated(run.info.run_id)
    wrote = time.perf_counter() - t
    points = runs * 500
    row("MlflowClient writing them", f"{wrote:.1f} s", f"{runs / wrote:,.0f} runs/s")

    t = time.perf_counter()
    m = 0
    found = client.search_runs([exp], run_view_type=ViewType.ALL, max_results=50_000)
    for run in found:
        for key in run.data.metrics:
            m += len(client.get_metric_history(run.info.run_id, key))
    base_s = time.perf_counter() - t
    assert m == points
    row("baseline: MlflowClient reading every point", f"{base_s:.2f} s", f"{points / base_s:,.0f} points/s")

    repo = Repo(base / "repo-mlflow")
    t = time.perf_counter()
    result = importers.mlflow(uri, repo=repo)
    total = time.perf_counter() - t
    assert result.points == points and len(result) == runs
    row("runstore: importers.mlflow (read + write)", f"{total:.2f} s",
        f"{points / total:,.0f} points/s, {runs / total:,.0f} runs/s = {base_s / total:.1f}x the baseline")
    aim = shutil.which("aim", path=str(Path(sys.executable).parent))
    if aim:
        aim_repo = base / "aim-from-mlflow"
        aim_repo.mkdir()
        subprocess.run([aim, "init", "--repo", str(aim_repo)], capture_output=True, check=True)
        t = time.perf_counter()
        proc = subprocess.run([aim, "convert", "--repo", str(aim_repo), "mlflow", "--tracking_uri", uri],
                              capture_output=True, text=True)
        took = time.perf_counter() - t
        ok = "" if proc.returncode == 0 else f" (failed: {proc.stderr.strip().splitlines()[-1:]})"
        row("peer: aim convert mlflow (subprocess)", f"{took:.2f} s", f"{points / took:,.0f} points/s{ok}")


def aim(base: Path, runs: int) -> None:
    print(f"Aim: {runs} runs x 2 metrics x 10,000 steps")
    root = base / "aim"
    root.mkdir()
    script = ("import sys\nfrom aim import Run\n"
              "r = Run(repo=sys.argv[1], experiment='bench', system_tracking_interval=None)\n"
              "r['hparams'] = {'lr': 0.1}\n"
              "for s in range(10000):\n"
              "    r.track(s * 0.5, name='loss', step=s, context={'subset': 'train'})\n"
              "    r.track(s * 0.25, name='acc', step=s, context={'subset': 'val'})\n"
              "r.close()\n")
    t = time.perf_counter()
    for _ in range(runs):
        subprocess.run([sys.executable, "-c", script, str(root)], check=True, capture_output=True)
    row("aim writing them (one process per run)", f"{time.perf_counter() - t:.1f} s")
    points = runs * 20_000
    baseline = ("import sys, time, shutil, tempfile, os\nfrom aim import Repo\nfrom aim.sdk.run import Run\n"
                "sys.path.insert(0, sys.argv[2])\nimport _aim_reader\n"
                "tmp = tempfile.mkdtemp(); shutil.copytree(os.path.join(sys.argv[1], '.aim'), os.path.join(tmp, '.aim'))\n"
                "repo = Repo(tmp); _aim_reader.union_view(repo)\n"
                "t = time.perf_counter(); n = 0\n"
                "for h in repo.list_all_runs():\n"
                "    run = Run(h, repo=repo, read_only=True)\n"
                "    for name, ctx, _ in run.iter_sequence_info_by_type(('float', 'int')):\n"
                "        n += len(run.get_metric(name, ctx).data.numpy()[0])\n"
                "print(n, time.perf_counter() - t)\n")
    reader_dir = Path(importers.__file__).parent
    proc = subprocess.run([sys.executable, "-c", baseline, str(root), str(reader_dir)], capture_output=True,
                          text=True, check=True)
    n, base_s = proc.stdout.split()
    assert int(n) == points, n
    base_s = float(base_s)
    row("baseline: aim SDK reading every metric (in its process)", f"{base_s:.2f} s",
        f"{points / base_s:,.0f} points/s")
    repo = Repo(base / "repo-aim")
    t = time.perf_counter()
    result = importers.aim(root, repo=repo)
    total = time.perf_counter() - t
    assert result.points == points, result.points
    row("runstore: importers.aim (copy + aim reader + write)", f"{total:.2f} s",
        f"{points / total:,.0f} points/s = {base_s / total:.2f}x the baseline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tb-runs", type=int, default=100)
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument("--mlflow-runs", type=int, default=1000)
    parser.add_argument("--aim-runs", type=int, default=10)
    parser.add_argument("--only", default="tensorboard,mlflow,aim")
    parser.add_argument("--dir", default=None)
    parser.add_argument("--aim-tf-python", default=None,
                        help="interpreter of an environment with aim, tensorflow and tensorboard: times "
                             "`aim convert tensorboard` on one run")
    args = parser.parse_args()
    if args.dir:
        os.environ["RUNSTORE_BENCH_DIR"] = args.dir
    base = workdir("import")
    try:
        only = args.only.split(",")
        if "tensorboard" in only:
            tensorboard(base, args.tb_runs, args.baseline_runs, args.aim_tf_python)
        if "mlflow" in only:
            mlflow(base, args.mlflow_runs)
        if "aim" in only:
            aim(base, args.aim_runs)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
