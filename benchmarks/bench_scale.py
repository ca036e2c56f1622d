"""Scale benchmarks (issue 22): cold paths and costs that grow with the repository.

Run:  python benchmarks/bench_scale.py [--quick] [--dir DIR] [--runs N] [--big-points N] [--big-repeat N]
                                      [--big-modes default,fast,one] [--baseline SRC]
                                      [--cold-points N] [--drop-caches] [--names N] [--steps N]
                                      [--build-runs N] [--export-runs N] [--only NAMES]

Every figure is printed beside its target, as a ratio to a baseline measured
in the same process or against a stated floor:

- import:   ``import runstore`` in a fresh process (target <= 80 ms), beside
            ``import numpy`` alone (the floor runstore cannot go under).
- arrow:    first ``query_sequences(...).to_arrow()`` in a fresh process over
            1,000 runs x 100 steps, pyarrow import included (target <= 40 ms),
            and whether pandas got imported (target: it does not).
- cold:     a fresh process opens a repository of N runs x 3 metrics (default
            100,000; cached under DIR) and runs a first param query (target
            <= 100 ms), a first summary query (<= 100 ms); its RSS (<= 250 MB)
            and the query columns' memory per sequence summary (<= 200 B).
- refresh:  the cold workload's repository (a copy) where 100 live runs tracked
            a point since the persisted columns were written: a fresh process's
            first queries (summary columns refreshed incrementally) beside the
            same with ``RUNSTORE_QUERY_SNAPSHOT=0`` (a full scan), interleaved;
            and when those runs were also resumed (records changed: the runs
            half is refreshed incrementally too).
- million:  1,000,000 runs x 1 metric x 10 steps (built once under DIR through
            tracking/replica.py, the write path of the server and of merge: 5,000
            runs per transaction): a fresh process's first param query and first
            summary query (target <= 500 ms), warm (<= 5 ms), RSS (<= 1 GB); then
            per repeat 100 random runs are resumed and track a point, and a fresh
            process's first queries are timed (both halves refreshed incrementally).
- build:    BUILD runs (default 100,000; --quick 1,000) x 10 steps x 1 metric,
            each closed, in a fresh process per repeat: ms per run (target
            <= 0.5 ms) and write transactions (fsync'd commits) per run (target 1),
            beside this disk's fdatasync latency (the floor of one durable commit);
            ``--baseline SRC`` interleaves another source tree (e.g. main's ``src``).
- lookup:   ``run.sequence(name, ctx)`` for each of 3,000 sequences of a stored
            run, beside the query path for the same sequences.
- big:      one run, ``track_many`` of BIG points in 1 M chunks, each in a fresh
            process, with the default 1 s flush interval and with one flush at close
            and with 0.1 s plus a 10 ms "training step" between chunks, so that
            flushes overlap the loop (``--big-modes``): write points/s (target >= 20 M/s incl. fsync) beside
            the floor (the same bytes put raw into LMDB and fsync'd, same process),
            peak RSS growth (target <= 2x the values + 100 MB), the longest wait of
            ``track_many`` for the run's lock (target <= 100 ms), the longest and the
            first call, full read vs ``np.copy`` of the same bytes (target >= 0.5),
            bytes per point on disk (target <= 12). ``--baseline SRC`` measures another
            runstore (a ``src`` directory) interleaved with this one: before/after.
- long:     target 7 with per-point timestamps (stored as deltas, block format 2):
            the peer table's workload 1 (5 metrics x LONG_STEPS steps via
            ``log_metrics``, default 200,000) and one ``track_many`` sequence of
            LONG_POINTS points with a timestamp each (default 20 M): bytes per point
            on disk (target <= 12), full read vs ``np.copy`` of the same bytes
            (median of back-to-back pairs; target 5's >= 0.5).
- views:    iterating the ``Run`` views of an N-run selection, µs per run with the
            cyclic GC on and off (target: GC-neutral).
- metrics:  one run, NAMES metric names x STEPS steps via ``track`` (default
            10,000 x 1,000; cached under DIR): per-value cost beside the same
            number of ``track`` calls on one name (the floor; target within 1.5x),
            both in one fresh process (``--baseline SRC``: alternating with
            another runstore); the CPU of single flushes of every name (tails
            growing); and, in a fresh process, ``run.sequences()`` + one summary
            query (target <= 50 ms), beside the same in a warm process.
- export:   target 10's rest: a selection of RUNS short runs (the cold
            workload's repository, ``seq.name == 'loss'``: RUNS sequences x 10
            steps): ``to_numpy()``, ``to_arrow()`` and ``runstore.export.export``
            (Parquet) of EXPORT runs (default 10,000: one file per run), each
            beside ``np.copy`` of the same points (4 columns) measured in the same
            process; warm (median of repeats) and the first call in a fresh process.
            Export is also put beside the file system's floor for its layout (a
            folder and a file of the same bytes per run, same process).
            ``--baseline SRC`` measures another runstore (a ``src``) interleaved.
- coldread: one run with a COLD-point sequence (default 20 M; cached under
            DIR): its first full read in a fresh process from a cold page cache
            vs ``cat`` of data.mdb (cold too) + one ``np.copy`` of the bytes read
            (target: within 2x), with and without the read-ahead hints
            (``RUNSTORE_READAHEAD=0``), and the same read warm. The file is
            evicted with ``posix_fadvise(DONTNEED)`` (only this file's pages; no
            root needed); ``--drop-caches`` uses ``/proc/sys/vm/drop_caches``
            instead (root only; drops every file's cache on the machine).

Repositories are generated once under DIR (default /tmp/runstore-bench) and
reused; building the 100,000-run one takes a few minutes the first time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402,F401  (writes runstore's bytecode: fresh processes import, not compile)


def fresh(code: str, repeat: int = 5, env: dict | None = None) -> list[dict]:
    """Run ``code`` in ``repeat`` fresh interpreters; each prints one JSON object."""
    out = []
    for _ in range(repeat):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env=None if env is None else {**os.environ, **env})
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def med(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def spread(rows: list[dict], key: str, scale: float = 1e3, unit: str = "ms", digits: int = 1) -> str:
    vals = sorted(r[key] * scale for r in rows)
    return f"{statistics.median(vals):.{digits}f} {unit} (min {vals[0]:.{digits}f}, max {vals[-1]:.{digits}f})"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def row(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<52} {value:>34}  {note}")


# -- repositories ------------------------------------------------------------------
def build_runs(path: Path, n: int, steps: int, metrics: int = 3) -> None:
    """``n`` runs x ``metrics`` metrics x ``steps`` steps (reused when complete)."""
    from runstore import Repo, Run

    marker = path / ".complete"
    if marker.exists():
        return
    repo = Repo(path, create=True)
    rng = np.random.default_rng(0)
    names = ("loss", "acc", "lr")[:metrics]
    t = time.perf_counter()
    for i in range(n):
        run = Run(repo=repo, experiment=("mnist", "cifar", "imagenet")[i % 3], name=f"run-{i}")
        run["hparams"] = {"lr": float(10 ** rng.uniform(-4, -1)), "batch_size": int(2 ** rng.integers(4, 9)),
                          "model": ("lstm", "gru", "cnn")[i % 3]}
        vals = rng.random(steps)
        for name in names:
            run.track_many(vals, name=name, context={"subset": "train"})
        run.close()
        if i and i % 10_000 == 0:
            print(f"  ... {i} runs in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    marker.touch()


# -- workloads ---------------------------------------------------------------------
def bench_import(repeat: int) -> None:
    print("import")
    rs = fresh("import time,json;t=time.perf_counter();import runstore;"
               "print(json.dumps({'t':time.perf_counter()-t}))", repeat)
    npy = fresh("import time,json;t=time.perf_counter();import numpy;"
                "print(json.dumps({'t':time.perf_counter()-t}))", repeat)
    heavy = fresh("import json,sys,runstore;print(json.dumps({'m':sorted({m.split('.')[0] for m in sys.modules} & "
                  "{'pyarrow','pandas','polars','omegaconf','yaml','click','rich','lark'})}))", 1)[0]["m"]
    row("import runstore (fresh process)", spread(rs, "t"), f"target <= 80 ms: {verdict(med(rs, 't') <= 0.080)}")
    row("import numpy alone (the floor)", spread(npy, "t"))
    row("heavy modules loaded by import runstore", ", ".join(heavy) or "none")


def bench_arrow(base: Path, repeat: int) -> None:
    print("first to_arrow, 1,000 runs x 100 steps")
    path = base / "arrow-1000x100"
    build_runs(path, 1000, 100, metrics=1)
    code = (
        "import time,json,sys;t=time.perf_counter();from runstore import Repo;i=time.perf_counter()-t;"
        "c=time.thread_time();"
        f"r=Repo({str(path)!r});tab=r.query_sequences(\"seq.name=='loss'\").to_arrow();"
        "e=time.perf_counter()-t;c=time.thread_time()-c;"
        "print(json.dumps({'t':e,'call':e-i,'cpu':c,'rows':tab.num_rows,'pandas':'pandas' in sys.modules,"
        "'lark':'lark' in sys.modules}))"
    )
    rows = fresh(code, repeat)
    parts = fresh("import time,json,numpy;t=time.perf_counter();import pyarrow;p=time.perf_counter()-t;"
                  "import runstore;t=time.perf_counter();from runstore.query import parser;"
                  "parser.parse(\"seq.name=='loss'\");print(json.dumps({'pa':p,'lark':time.perf_counter()-t}))",
                  repeat)
    row("import runstore + open + first to_arrow (fresh process)", spread(rows, "t"))
    row("  open + first to_arrow after import runstore", spread(rows, "call"),
        f"target <= 40 ms: {verdict(med(rows, 'call') <= 0.040)}")
    row("    its CPU time (the calling thread's)", spread(rows, "cpu"),
        "wall minus CPU: waits for a core on a busy host")
    row("  of which: import pyarrow alone (after numpy)", spread(parts, "pa"))
    row("  of which: the query layer's import + first parse", spread(parts, "lark"))
    row("pandas imported on the Arrow path", str(any(r["pandas"] for r in rows)), "target: False")
    row("lark imported on the Arrow path", str(any(r["lark"] for r in rows)),
        "False since session 5 (query/lalr.py runs the tables lark made)")
    from runstore import Repo

    repo = Repo(path)
    repo.query_sequences("seq.name=='loss'").to_arrow()
    t = time.perf_counter()
    for _ in range(5):
        repo.query_sequences("seq.name=='loss'").to_arrow()
    row("warm to_arrow (same process, baseline)", f"{(time.perf_counter() - t) / 5 * 1e3:.1f} ms")


def bench_cold(base: Path, n: int, repeat: int) -> None:
    print(f"cold open, {n:,} runs x 3 metrics")
    path = base / f"scale-{n}x3"
    t = time.perf_counter()
    build_runs(path, n, 10, metrics=3)
    if time.perf_counter() - t > 1:
        print(f"  (built in {time.perf_counter() - t:.0f} s)")
    code = (
        "import time,json,resource;ti=time.perf_counter();from runstore import Repo;t0=time.perf_counter();"
        f"r=Repo({str(path)!r});c=r.query('run.hparams.lr < 0.01');n1=len(c);t1=time.perf_counter();"
        "from runstore.query.tables import cache_for;"
        "rss0=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "s=r.query_sequences(\"seq.name == 'loss' and seq.last < 0.5\");n2=len(s);t2=time.perf_counter();"
        "t3=time.perf_counter();r.query('run.hparams.lr < 0.01');r.query_sequences(\"seq.last < 0.5\");"
        "t4=time.perf_counter();"
        "rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "b=cache_for(r)._base;nb=getattr(b,'nbytes',lambda:None)();"
        "print(json.dumps({'imp':t0-ti,'open_q':t1-t0,'seq_q':t2-t1,'warm':t4-t3,'rss':rss*1024,'rss0':rss0*1024,"
        "'nseq':b.n,'nbytes':nb}))"
    )
    import shutil

    shutil.rmtree(path / "query-snapshot", ignore_errors=True)
    first = fresh(code, 1)  # scans, then writes the persisted query columns
    row("no snapshot yet: open + first param query", spread(first, "open_q"))
    row("no snapshot yet: first summary query", spread(first, "seq_q"))
    rows = fresh(code, repeat)
    row("import runstore (not in the figures below)", spread(rows, "imp"))
    row("open + first param query", spread(rows, "open_q"), f"target <= 100 ms: {verdict(med(rows, 'open_q') <= 0.1)}")
    row("first summary query", spread(rows, "seq_q"), f"target <= 100 ms: {verdict(med(rows, 'seq_q') <= 0.1)}")
    row("warm param + summary query", spread(rows, "warm"))
    rss = med(rows, "rss")
    row("peak RSS after both", f"{rss / 2**20:.0f} MB", f"target <= 250 MB: {verdict(rss <= 250 * 2**20)}")
    nseq = rows[0]["nseq"]
    per = (med(rows, "rss") - med(rows, "rss0")) / max(nseq, 1)
    row("RSS growth of the summary query per sequence", f"{per:.0f} B")
    if rows[0]["nbytes"] is not None:
        nb = rows[0]["nbytes"] / max(nseq, 1)
        row("summary columns per sequence (typed arrays)", f"{nb:.0f} B", f"target <= 200 B: {verdict(nb <= 200)}")


def bench_refresh(base: Path, n: int, changed: int, repeat: int) -> None:
    """A fresh process's first queries when ``changed`` runs got a point since the
    persisted columns were written (incremental refresh), beside the same process
    with ``RUNSTORE_QUERY_SNAPSHOT=0`` (full scan), interleaved."""
    import random
    import shutil

    from runstore import Repo, Run

    print(f"incremental refresh, {n:,} runs x 3 metrics, {changed} runs changed since the snapshot")
    src, path = base / f"scale-{n}x3", base / f"refresh-{n}x3"
    build_runs(src, n, 10, metrics=3)
    if not (path / ".complete").exists():  # a copy: the cold workload's repository stays as built
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
        shutil.copy(src / "data.mdb", path / "data.mdb")
        (path / ".complete").touch()
    code = (
        "import time,json,resource;from runstore import Repo;t0=time.perf_counter();"
        f"r=Repo({str(path)!r});n1=len(r.query('run.hparams.lr < 0.01'));t1=time.perf_counter();"
        "n2=len(r.query_sequences(\"seq.name == 'loss' and seq.last < 0.5\"));t2=time.perf_counter();"
        "rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss*1024;"
        "print(json.dumps({'open_q':t1-t0,'seq_q':t2-t1,'both':t2-t0,'rss':rss,'n2':n2}))"
    )
    fresh(code, 1)  # a current snapshot to start from
    repo = Repo(path)
    with repo._env.read() as txn:  # ids without building query columns in this process
        ids = [bytes(k).hex() for k in txn.cursor(db=repo._env.dbs["runs"]).iternext(values=False)]
    rnd = random.Random(0)
    both, inc, scan = [], [], []
    for _ in range(repeat):
        live = [Run(repo=repo, run_id=rid) for rid in rnd.sample(ids, changed)]  # resumed: records change
        for run in live:
            run.track(rnd.random(), name="loss", context={"subset": "train"})
            run.flush()
        both += fresh(code, 1)  # both halves behind: runs rescanned, summaries patched; writes both
        t = time.perf_counter()
        for run in live:  # live runs tracking: only their sequences change
            run.track(rnd.random(), name="loss", context={"subset": "train"})
            run.flush()
        took = time.perf_counter() - t
        inc += fresh(code, 1)  # runs half current, the seqs half patched with the 100 runs
        scan += fresh(code, 1, env={"RUNSTORE_QUERY_SNAPSHOT": "0"})
        assert inc[-1]["n2"] == scan[-1]["n2"], (inc[-1], scan[-1])
        for run in live:
            run.close()
    row(f"one point on each of {changed} live runs + flush", f"{took * 1e3:.0f} ms")
    row("refresh: open + first param query", spread(inc, "open_q"), "(runs half current)")
    row("refresh: first summary query", spread(inc, "seq_q"), f"{changed} runs' summaries re-read")
    row("full scan: open + first param query", spread(scan, "open_q"))
    row("full scan: first summary query", spread(scan, "seq_q"))
    row("first summary query, refresh / full scan", f"{med(inc, 'seq_q') / med(scan, 'seq_q'):.2f}x")
    row("both queries, refresh / full scan", f"{med(inc, 'both') / med(scan, 'both'):.2f}x")
    row("peak RSS refresh / full scan", f"{med(inc, 'rss') / 2**20:.0f} / {med(scan, 'rss') / 2**20:.0f} MB")
    row("records changed too: open + first param query", spread(both, "open_q"), f"{changed} runs' records re-read")
    row("records changed too: first summary query", spread(both, "seq_q"))


def build_million(path: Path, n: int, steps: int = 10, batch: int = 5_000) -> float:
    """``n`` runs x 1 metric x ``steps`` steps, each finished, written through the
    storage write path ``runstore server`` and ``runstore merge`` use
    (tracking/replica.py: many runs' records, params and points per transaction,
    the same Sequence buffers and block writer as Run.flush), so 1 M runs take
    minutes, not the ~15 min of 1 M ``Run()`` lifecycles. Reused when complete;
    returns the build time (0 when reused)."""
    from runstore import Repo
    from runstore.tracking import replica

    marker = path / ".complete"
    if marker.exists():
        return 0.0
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    repo = Repo(path, create=True)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    step_arr = np.arange(steps, dtype=np.int64)
    epochs = np.zeros(steps, dtype=np.int64)
    for lo in range(0, n, batch):
        changes = []
        now = time.time()
        for i in range(lo, min(n, lo + batch)):
            run = replica.writer(repo, replica.new_run_id())
            record = replica.new_record(name=f"run-{i}", experiment=("mnist", "cifar", "imagenet")[i % 3])
            record.update(status="finished", ended_at=now)
            params = {"hparams": {"lr": float(10 ** rng.uniform(-4, -1)), "batch_size": int(2 ** rng.integers(4, 9)),
                                  "model": ("lstm", "gru", "cnn")[i % 3]}}
            replica.append(run, "loss", {"subset": "train"}, rng.random(steps), step_arr, None, epochs,
                           np.full(steps, now))
            changes.append(replica.Change(run, create=(record, params)))
        replica.commit(repo, changes)
        if lo and lo % 100_000 == 0:
            print(f"  ... {lo:,} runs in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    marker.touch()
    return time.perf_counter() - t


def bench_million(base: Path, n: int, repeat: int) -> None:
    """Targets: first query in a fresh process <= 500 ms, warm <= 5 ms, RSS <= 1 GB."""
    print(f"{n:,} runs x 1 metric x 10 steps")
    path = base / f"million-{n}x1"
    took = build_million(path, n)
    if took:
        print(f"  (built in {took:.0f} s = {took / n * 1e6:.0f} µs/run through tracking/replica.py, "
              "5,000 runs per transaction)")
    code = (
        "import time,json,resource;from runstore import Repo;t0=time.perf_counter();"
        f"r=Repo({str(path)!r});n1=len(r.query('run.hparams.lr < 0.01'));t1=time.perf_counter();"
        "n2=len(r.query_sequences(\"seq.name == 'loss' and seq.last < 0.5\"));t2=time.perf_counter();"
        "w=[];exec(\"for _ in range(5):\\n t=time.perf_counter();r.query('run.hparams.lr < 0.01');"
        "r.query_sequences(\\\"seq.name == 'loss' and seq.last < 0.5\\\");w.append(time.perf_counter()-t)\");"
        "rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss*1024;"
        "print(json.dumps({'open_q':t1-t0,'seq_q':t2-t1,'warm':min(w),'rss':rss,'n1':n1,'n2':n2}))"
    )
    if not (path / "query-snapshot").exists():  # the first process after the build scans (~30 s, 3.4 GB)
        first = fresh(code, 1)
        row("no snapshot yet: open + first param query", spread(first, "open_q"))
        row("no snapshot yet: first summary query", spread(first, "seq_q"))
        row("no snapshot yet: peak RSS", f"{first[0]['rss'] / 2**20:.0f} MB")
    rows = fresh(code, repeat)
    row("open + first param query", spread(rows, "open_q"), f"target <= 500 ms: {verdict(med(rows, 'open_q') <= 0.5)}")
    row("first summary query", spread(rows, "seq_q"), f"target <= 500 ms: {verdict(med(rows, 'seq_q') <= 0.5)}")
    row("warm param + summary query (best of 5)", spread(rows, "warm"), f"target <= 5 ms: {verdict(med(rows, 'warm') <= 0.005)}")
    rss = med(rows, "rss")
    row("peak RSS after all", f"{rss / 2**20:.0f} MB", f"target <= 1 GB: {verdict(rss <= 2**30)}")
    # 100 runs resumed (records change) and given a point since the snapshot: both halves
    # are patched with those runs (incremental refresh), not rescanned. The process that
    # refreshes rewrites the snapshot, so the next repeat starts from a current one again.
    import random

    from runstore import Repo, Run

    repo = Repo(path)
    with repo._env.read() as txn:
        ids = [bytes(k).hex() for k in txn.cursor(db=repo._env.dbs["runs"]).iternext(values=False)]
    rnd = random.Random()
    changed = []
    for _ in range(repeat):
        for rid in rnd.sample(ids, 100):
            with Run(repo=repo, run_id=rid) as run:
                run.track(rnd.random(), name="loss", context={"subset": "train"})
        changed += fresh(code, 1)
    row("100 runs resumed + tracked since: open + first param query", spread(changed, "open_q"), "runs half patched")
    row("100 runs resumed + tracked since: first summary query", spread(changed, "seq_q"), "seqs half patched")
    row("100 runs resumed + tracked since: peak RSS", f"{med(changed, 'rss') / 2**20:.0f} MB")


def fsync_latency(path: Path, n: int = 50) -> float:
    """Median seconds of one 4 KiB write + fdatasync on this disk."""
    f = path / "fsync-probe"
    fd = os.open(f, os.O_CREAT | os.O_WRONLY, 0o600)
    times = []
    try:
        for i in range(n):
            os.pwrite(fd, b"x" * 4096, (i % 8) * 4096)
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        f.unlink()
    return statistics.median(times)


BUILD_CHILD = """
import json, sys, tempfile, time
from pathlib import Path
import numpy as np
from runstore import Repo, Run
from runstore.storage import env as _env

base, n = sys.argv[1], int(sys.argv[2])
with tempfile.TemporaryDirectory(dir=base) as d:
    repo = Repo(Path(d) / "r")
    writes = []
    real = _env.Environment.write

    def write(self, work):  # every write transaction of this repository (one commit each)
        if self is repo._env:
            writes.append(1)
        return real(self, work)

    _env.Environment.write = write
    vals = np.arange(10, dtype=np.float64)
    t, c = time.perf_counter(), time.process_time()
    for i in range(n):
        run = Run(repo=repo, experiment="e")
        run.track_many(vals, name="loss")
        run.close()
    per = (time.perf_counter() - t) / n
    cpu = (time.process_time() - c) / n  # user + system, every thread
    print(json.dumps({"per": per, "cpu": cpu, "writes": len(writes) / n}))
"""


def raw_commit_latency(base: Path, n: int = 2000) -> float:
    """Median seconds of one raw LMDB write transaction touching the five databases a
    short run's commit touches (meta, runs, params, seqs, blocks; ~200 B each), with
    runstore's options (metasync off): the floor of one run's durable commit."""
    import lmdb

    with tempfile.TemporaryDirectory(dir=base) as d:
        env = lmdb.open(d, map_size=1 << 30, max_dbs=8, metasync=False, readahead=False)
        dbs = [env.open_db(name.encode()) for name in ("meta", "runs", "params", "seqs", "blocks")]
        value = b"x" * 200
        times = []
        for i in range(n):
            key = i.to_bytes(12, "big")
            t = time.perf_counter()
            with env.begin(write=True) as txn:
                for db in dbs:
                    txn.put(key, value, db=db)
            times.append(time.perf_counter() - t)
        env.close()
    return statistics.median(times)


def bench_build(base: Path, n: int, repeat: int, baseline: str | None = None) -> None:
    """Each repeat in a fresh process (a repository of its own), this tree and, with
    ``baseline``, another source tree (e.g. main's src) interleaved."""
    print(f"build, {n:,} runs x 10 steps x 1 metric, closing each (fresh process per repeat)")
    trees = [("this tree", None)] + ([("baseline " + baseline, baseline)] if baseline else [])
    rows: dict[str, list[dict]] = {label: [] for label, _ in trees}
    lats, raws = [], []
    for _ in range(repeat):
        for label, src in trees:
            env = dict(os.environ)
            if src:
                env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
            res = subprocess.run([sys.executable, "-c", BUILD_CHILD, str(base), str(n)], capture_output=True,
                                 text=True, check=True, env=env)
            rows[label].append(json.loads(res.stdout.strip().splitlines()[-1]))
        lats.append(fsync_latency(base, 20))
        raws.append(raw_commit_latency(base))
    lat, raw = statistics.median(lats), statistics.median(raws)
    mine = med(rows["this tree"], "per")
    row("per run", spread(rows["this tree"], "per", digits=2), f"target <= 0.5 ms: {verdict(mine <= 0.0005)}")
    row("write transactions (commits) per run", f"{med(rows['this tree'], 'writes'):.2f}", "target 1")
    row("  CPU per run (user + system, all threads)", spread(rows["this tree"], "cpu", digits=2),
        "the rest of the wall time waits (fsync, the scheduler)")
    if baseline:
        label = trees[1][0]
        base_per = med(rows[label], "per")
        row("baseline per run", spread(rows[label], "per", digits=2), f"this tree / baseline = {mine / base_per:.2f}")
        if all("cpu" in r for r in rows[label]):
            row("  baseline CPU per run", spread(rows[label], "cpu", digits=2))
        row("baseline write transactions per run", f"{med(rows[label], 'writes'):.2f}")
    row("this disk's fdatasync latency (4 KiB)", f"{lat * 1e3:.2f} ms",
        f"= {mine / lat:.1f} fsyncs' worth per run; spread {min(lats) * 1e3:.2f}-{max(lats) * 1e3:.2f} ms")
    row("raw LMDB commit touching the run's 5 databases", f"{raw * 1e3:.2f} ms",
        f"the floor of one durable commit: a run costs {mine / raw:.2f}x it; "
        f"spread {min(raws) * 1e3:.2f}-{max(raws) * 1e3:.2f} ms")


def bench_lookup(base: Path, nseq: int) -> None:
    from runstore import Repo, Run

    print(f"run.sequence(name, ctx) over {nseq:,} sequences of a stored run")
    path = base / f"lookup-{nseq}"
    if not (path / ".complete").exists():
        repo = Repo(path, create=True)
        with Run(repo=repo) as run:
            for i in range(nseq):
                run.track(float(i), name=f"m{i % 100}", context={"k": i // 100})
        (path / ".complete").touch()
    repo = Repo(path)
    run = repo.runs()[0]
    keys = [(f"m{i % 100}", {"k": i // 100}) for i in range(nseq)]
    t = time.perf_counter()
    for name, ctx in keys:
        run.sequence(name, ctx)
    loop = time.perf_counter() - t
    t = time.perf_counter()
    len(repo.query_sequences(f"run.id == '{run.id}'"))
    q = time.perf_counter() - t
    row("loop of run.sequence lookups", f"{loop * 1e3:.1f} ms", f"({loop / nseq * 1e6:.1f} µs each)")
    row("query path for the same sequences (baseline)", f"{q * 1e3:.1f} ms", f"ratio {loop / q:.1f}x")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def big_child(spec: dict) -> dict:
    """One big-sequence write in this (fresh) process: ``track_many`` of ``points`` in
    1 M chunks with ``interval`` as the flush interval, then a full read, then the floor:
    the same bytes put raw into a fresh LMDB environment and fsync'd, in this process."""
    import resource

    import lmdb

    from runstore import Repo, Run

    points, interval, path = spec["points"], spec["interval"], Path(spec["path"])
    pause = spec.get("pause", 0.0)  # a training step between chunks (GIL released), not counted
    chunk = np.random.default_rng(0).random(1_000_000)
    repo = Repo(path / "r")
    rss0 = _rss()
    lat = []
    t, cpu0 = time.perf_counter(), time.process_time()
    run = Run(repo=repo, flush_interval=interval, system_metrics=False, capture_env=False)
    waits = _time_lock_waits(run)
    for _ in range(points // len(chunk)):
        c = time.perf_counter()
        run.track_many(chunk, name="x")
        lat.append(time.perf_counter() - c)
        if pause:
            time.sleep(pause)
    run.close()
    w = time.perf_counter() - t - pause * len(lat)
    cpu = time.process_time() - cpu0  # every thread: the loop's and the flushes'
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
    size = os.stat(path / "r" / "data.mdb").st_blocks * 512
    seq = repo.runs()[0].sequence("x")
    t = time.perf_counter()
    cols = seq.numpy()  # steps, values, epochs, timestamps
    r = time.perf_counter() - t
    nbytes = sum(v.nbytes for v in cols.values())
    del cols
    src = np.ones(nbytes // 8)  # the same bytes
    t = time.perf_counter()
    np.copy(src)
    c = time.perf_counter() - t
    del src
    # The floor: blocks of the same size (4,096 values + 24 bytes of header, step start
    # and timestamp) put into a fresh environment opened as runstore opens it, one
    # fsync'd commit per 256 MB.
    block = bytes(24) + chunk[:4096].tobytes()
    nblocks = -(-points // 4096)
    per_txn = (256 << 20) // len(block)
    env = lmdb.open(str(path / "floor"), map_size=4 * nblocks * len(block), metasync=False, readahead=False)
    t = time.perf_counter()
    for lo in range(0, nblocks, per_txn):
        with env.begin(write=True) as txn:
            for i in range(lo, min(nblocks, lo + per_txn)):
                txn.put(i.to_bytes(8, "big"), block, append=True)
    env.close()
    f = time.perf_counter() - t
    return {"write": w, "cpu": cpu, "read": r, "copy": c, "size": size, "peak": peak, "floor": f,
            "first": lat[0], "median_call": statistics.median(lat), "max_call": max(lat),
            "max_wait": max(waits, default=0.0)}


def _each(rows: list[dict], key: str, scale: float, digits: int) -> str:
    """Every repeat's value, in run order (the spread beside the median)."""
    return "/".join(f"{r[key] * scale:.{digits}f}" for r in rows)


def _time_lock_waits(run) -> list:
    """Time every wait of the tracking thread for the lock ``track_many`` takes
    (``_buf_lock`` since issue 22's bounded flushes, the run's ``_lock`` before)."""
    import threading

    name = "_buf_lock" if "_buf_lock" in vars(run) else "_lock"
    real, me, waits = getattr(run, name), threading.get_ident(), []

    class Timed:
        def acquire(self, blocking=True, timeout=-1):
            if threading.get_ident() != me:
                return real.acquire(blocking, timeout)
            t = time.perf_counter()
            got = real.acquire(blocking, timeout)
            waits.append(time.perf_counter() - t)
            return got

        def release(self):
            real.release()

        def __enter__(self):
            self.acquire()
            return self

        def __exit__(self, *exc):
            real.release()

    setattr(run, name, Timed())
    return waits


# (flush interval, name): the default; flushes overlapping the tracking loop; one at close
_BIG_MODES = ((1.0, "default"), (0.1, "fast"), (3600.0, "one"))


def bench_big(base: Path, points: int, repeat: int, baseline: str | None, modes: str = "default,fast,one") -> None:
    print(f"big sequence, {points:,} points via track_many in 1 M chunks (median of {repeat} fresh processes)")
    values_mb = points * 8 / 1e6
    variants = [("this tree", None)] + ([("baseline " + baseline, baseline)] if baseline else [])
    rows: dict = {label: [] for label, _ in variants}
    for _ in range(repeat):
        for label, src in variants:  # interleaved: the machine's load hits both alike
            for interval, key in _BIG_MODES:
                if key not in modes:
                    continue
                with tempfile.TemporaryDirectory(dir=base) as d:
                    env = dict(os.environ, PYTHONPATH=src) if src else None
                    spec = json.dumps({"points": points, "interval": interval, "path": d,
                                       "pause": 0.01 if key == "fast" else 0.0})
                    res = subprocess.run([sys.executable, __file__, "--big-child", spec], env=env,
                                         capture_output=True, text=True, check=True)
                    rows[label].append(dict(json.loads(res.stdout.strip().splitlines()[-1]), mode=key))
    for label, _ in variants:
        print(f" {label}:")
        for interval, key in _BIG_MODES:
            rs = [r for r in rows[label] if r["mode"] == key]
            if not rs:
                continue
            rate = points / med(rs, "write") / 1e6
            floor = points / med(rs, "floor") / 1e6
            peak = med(rs, "peak") / 1e6
            if key == "fast":
                # the flushes also run during the pauses: the rate excludes them, an upper bound
                row("flush interval 0.1 s, a 10 ms pause after each chunk", f"{rate:.1f} M points/s",
                    f"excl. the pauses (flushes overlap them); CPU {med(rs, 'cpu'):.1f} s; floor {floor:.1f} M/s")
            else:
                row(f"write incl. fsync ({'one flush at close' if key == 'one' else 'flush interval 1 s'})",
                    f"{rate:.1f} M points/s", f"target >= 20 M/s: {verdict(rate >= 20)}; floor (raw LMDB put + "
                    f"fsync, same process) {floor:.1f} M/s, ratio {rate / floor:.2f}")
            row("  peak RSS growth", f"{peak:.0f} MB",
                f"values {values_mb:.0f} MB; target <= 2x + 100 MB: {verdict(peak <= 2 * values_mb + 100)}")
            row("  longest wait of track_many for the run's lock", f"{med(rs, 'max_wait') * 1e3:.2f} ms",
                f"target <= 100 ms: {verdict(med(rs, 'max_wait') <= 0.1)}; each process "
                f"{_each(rs, 'max_wait', 1e3, 2)} ms")
            row("  longest track_many call (1 M points)", f"{med(rs, 'max_call') * 1e3:.0f} ms",
                f"each process {_each(rs, 'max_call', 1e3, 0)} ms; median call "
                f"{med(rs, 'median_call') * 1e3:.1f} ms, first call (fresh process) {med(rs, 'first') * 1e3:.1f} ms")
            row("  (each process: peak RSS MB / M points/s)", f"{_each(rs, 'peak', 1e-6, 0)}",
                "/".join(f"{points / r['write'] / 1e6:.1f}" for r in rs))
        rs = [r for r in rows[label] if r["mode"] == "default"] or rows[label]
        ratio = med(rs, "copy") / med(rs, "read")
        row("full read (4 columns) vs np.copy of the same bytes", f"{ratio:.2f}", f"target >= 0.5: {verdict(ratio >= 0.5)}")
        row("disk per point", f"{med(rs, 'size') / points:.1f} B", f"target <= 12 B: {verdict(med(rs, 'size') / points <= 12)}")


def _read_vs_copy(seq, repeat: int) -> tuple[float, float]:
    """(median full read in s, median ratio np.copy / read over pairs measured back to back)."""
    reads, ratios = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        cols = seq.numpy()  # steps, values, epochs, timestamps
        r = time.perf_counter() - t
        src = np.ones(sum(v.nbytes for v in cols.values()) // 8)  # the same bytes
        del cols
        t = time.perf_counter()
        np.copy(src)
        ratios.append((time.perf_counter() - t) / r)
        reads.append(r)
    return statistics.median(reads), statistics.median(ratios)


def bench_long(base: Path, steps: int, points: int, repeat: int) -> None:
    """Target 7: long sequences whose points each have their own timestamp, which
    block format 2 stores as deltas (docs/storage.md), and their full reads, which
    must stay within target 5 (>= 0.5x np.copy). Two shapes: the peer table's
    workload 1 (``log_metrics`` per step, a clock read per point) and one big
    sequence written by ``track_many`` with a timestamp per point (importers)."""
    from runstore import Repo, Run

    names = ("loss", "acc", "lr", "grad_norm", "throughput")
    print(f"long sequences: one run, {len(names)} metrics x {steps:,} steps via log_metrics (workload 1)")
    with tempfile.TemporaryDirectory(dir=base) as d:
        repo = Repo(Path(d) / "r")
        rows = np.random.default_rng(0).random((steps, len(names))).tolist()
        with Run(repo=repo) as run:
            for step, vals in enumerate(rows):
                run.log_metrics(dict(zip(names, vals)), step=step, context={"subset": "train"})
        size = sum(f.stat().st_blocks * 512 for f in (Path(d) / "r").iterdir() if f.is_file())
        r, ratio = _read_vs_copy(repo.runs()[0].sequence("loss", {"subset": "train"}), 2 * repeat + 1)
    n = steps * len(names)
    row("disk per point", f"{size / n:.1f} B", f"target <= 12 B: {verdict(size / n <= 12)}")
    row(f"full read of one sequence ({steps:,} points)", f"{r * 1e3:.2f} ms = {r / steps * 1e9:.1f} ns/point")
    row("  np.copy of the same bytes / full read", f"{ratio:.2f}", f"target >= 0.5: {verdict(ratio >= 0.5)}")

    print(f"one sequence, {points:,} points via track_many in 1 M chunks, a timestamp per point")
    with tempfile.TemporaryDirectory(dir=base) as d:
        repo = Repo(Path(d) / "r")
        rng = np.random.default_rng(0)
        chunk = rng.random(1_000_000)
        # A clock read every ~3 µs with jitter, and now and then a 4 ms gap (a flush).
        ticks = np.cumsum(rng.exponential(3e-6, len(chunk)) + (rng.random(len(chunk)) < 1e-3) * 4e-3)
        with Run(repo=repo) as run:
            for i in range(max(1, points // len(chunk))):
                run.track_many(chunk, name="x", timestamps=1.7e9 + i * (ticks[-1] + 3e-6) + ticks)
        size = os.stat(Path(d) / "r" / "data.mdb").st_blocks * 512
        n = max(1, points // len(chunk)) * len(chunk)
        r, ratio = _read_vs_copy(repo.runs()[0].sequence("x"), repeat)
    row("disk per point", f"{size / n:.1f} B", f"target <= 12 B: {verdict(size / n <= 12)}")
    row("full read", f"{r * 1e3:.0f} ms = {r / n * 1e9:.1f} ns/point")
    row("  np.copy of the same bytes / full read", f"{ratio:.2f}", f"target >= 0.5: {verdict(ratio >= 0.5)}")


def metrics_child(spec: dict) -> dict:
    """One process of the many-metrics workload: the one-name floor, the round-robin
    loop (default flush interval, as a user runs it) and the CPU of single flushes of
    every name (flush interval an hour, ``flush()`` after each 100 steps)."""
    import gc

    from runstore import Repo, Run

    names, steps, base = spec["names"], spec["steps"], spec["dir"]
    total = names * steps
    keys = [f"metric/{j}" for j in range(names)]
    with tempfile.TemporaryDirectory(dir=base) as d:
        repo = Repo(Path(d) / "r", create=True)
        run = Run(repo=repo)
        t = time.perf_counter()
        for i in range(total):
            run.track(0.5, name="loss", step=i)
        run.close()
        floor = (time.perf_counter() - t) / total
        del run, repo
    gc.collect()
    with tempfile.TemporaryDirectory(dir=base) as d:
        repo = Repo(Path(spec["path"]) if spec.get("path") else Path(d) / "r", create=True)
        run = Run(repo=repo)
        t = time.perf_counter()
        for step in range(steps):
            for key in keys:
                run.track(0.5, name=key, step=step)
        run.close()
        many = (time.perf_counter() - t) / total
        del run, repo
    gc.collect()
    flush_cpu = []
    per = max(1, steps // 10)
    with tempfile.TemporaryDirectory(dir=base) as d:
        repo = Repo(Path(d) / "r", create=True)
        run = Run(repo=repo, flush_interval=3600.0)
        step = 0
        for _ in range(5):
            for _ in range(per):
                for key in keys:
                    run.track(0.5, name=key, step=step)
                step += 1
            c = time.process_time()
            run.flush()
            flush_cpu.append(time.process_time() - c)
        run.close()
    return {"floor": floor, "many": many, "ratio": many / floor, "flush_cpu": flush_cpu, "per": per}


def bench_metrics(base: Path, names: int, steps: int, repeat: int, baseline: str | None = None) -> None:
    print(f"many metrics: one run, {names:,} names x {steps:,} steps via track")
    path = base / f"metrics-{names}x{steps}"
    variants = [("this tree", None)] + ([("baseline " + baseline, baseline)] if baseline else [])
    rows: dict = {label: [] for label, _ in variants}
    build = not (path / ".complete").exists()
    if build:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    loops = max(1, repeat // 2 + 1) if baseline else 1
    for _ in range(loops):
        for label, src in variants:  # interleaved: the machine's load hits both alike
            spec = {"names": names, "steps": steps, "dir": str(base),
                    "path": str(path) if build and src is None else None}
            env = dict(os.environ, PYTHONPATH=src) if src else None
            res = subprocess.run([sys.executable, __file__, "--metrics-child", json.dumps(spec)], env=env,
                                 capture_output=True, text=True, check=True)
            rows[label].append(json.loads(res.stdout.strip().splitlines()[-1]))
            if spec["path"]:
                (path / ".complete").touch()
                build = False
    code = (
        "import time,json;from runstore import Repo;t0=time.perf_counter();"
        f"r=Repo({str(path)!r});run=r.runs()[0];n=len(run.sequences());"
        "q=len(r.query_sequences(\"seq.name == 'metric/7' and seq.last < 1\"));t1=time.perf_counter();"
        "t2=time.perf_counter();run=r.runs()[0];run.sequences();r.query_sequences(\"seq.name == 'metric/7' and seq.last < 1\");"
        "t3=time.perf_counter();print(json.dumps({'first':t1-t0,'warm':t3-t2,'n':n,'q':q}))"
    )
    fresh(code, 1)  # the first process after the build scans and writes the query snapshot
    q = fresh(code, repeat)
    # (>=: a loop slower than 10 s under load also holds the system metrics' sequences)
    assert q[0]["n"] >= names and q[0]["q"] == 1, q[0]
    for label, _ in variants:
        rs = rows[label]
        print(f" {label} ({len(rs)} process{'es' if len(rs) > 1 else ''}):")
        row("track, one name (floor)", spread(rs, "floor", 1e6, "µs", 2))
        ratios = ", ".join(f"{r['ratio']:.2f}" for r in rs)
        row(f"track, {names:,} names round-robin", spread(rs, "many", 1e6, "µs", 2),
            f"{med(rs, 'ratio'):.2f}x floor (per process: {ratios}), "
            f"target <= 1.5x: {verdict(med(rs, 'ratio') <= 1.5)}")
        per = rs[0]["per"]
        cpu = [statistics.median(r["flush_cpu"][i] for r in rs) for i in range(len(rs[0]["flush_cpu"]))]
        row(f"CPU of one flush of {names:,} sequences", " / ".join(f"{c * 1e3:.0f}" for c in cpu) + " ms",
            f"{per} new points each, tails of 0, {per}, ... {per * (len(cpu) - 1)} points")
    row("fresh process: open + run.sequences() + summary query", spread(q, "first"),
        f"target <= 50 ms: {verdict(med(q, 'first') <= 0.05)}")
    row("same, warm (same process)", spread(q, "warm"))


def bench_views(base: Path, n: int) -> None:
    import gc

    from runstore import Repo

    print(f"iterating the Run views of a {n:,}-run selection")
    path = base / f"scale-{n}x3"
    build_runs(path, n, 10, metrics=3)
    repo = Repo(path, readonly=True)

    def loop() -> float:
        sel = repo.query("run.hparams.lr > 0")
        t = time.perf_counter()
        k = sum(1 for _ in sel)
        return (time.perf_counter() - t) / max(k, 1)

    on, off = [], []
    for _ in range(3):
        on.append(loop())
        gc.disable()
        try:
            off.append(loop())
        finally:
            gc.enable()
    a, b = statistics.median(on), statistics.median(off)
    row("per run, cyclic GC on", f"{a * 1e6:.1f} µs", f"{a / b:.2f}x GC off")
    row("per run, cyclic GC off (baseline)", f"{b * 1e6:.1f} µs")


EXPORT_CHILD = r"""
import json, os, statistics, sys, tempfile, time
import numpy as np
spec = json.loads(sys.argv[1])
t0 = time.perf_counter()
import runstore
from runstore import Repo
repo = Repo(spec["path"], readonly=True)
q = spec["query"]
sel = repo.query_sequences(q)
t1 = time.perf_counter()
out = {"src": runstore.__file__, "open_query": t1 - t0, "n": len(sel)}
first = spec["first"]  # the call timed first in this process: "numpy" or "arrow"
t = time.perf_counter(); got = sel.to_numpy() if first == "numpy" else sel.to_arrow()
out["first_" + first] = time.perf_counter() - t
points = int(sum(len(i["values"]) for i in got) if first == "numpy" else got.num_rows)
del got
if not spec["warm"]:
    print(json.dumps(out))
    sys.exit(0)
cols = (np.arange(points, dtype=np.int64), np.random.random(points), np.random.random(points),
        np.random.random(points))
def copy():
    t = time.perf_counter()
    for c in cols:
        np.copy(c)
    return time.perf_counter() - t
rows = {"numpy": [], "arrow": [], "copy": []}
for _ in range(spec["repeat"]):
    for what in ("numpy", "arrow"):
        sel = repo.query_sequences(q)
        t = time.perf_counter()
        sel.to_numpy() if what == "numpy" else sel.to_arrow()
        rows[what].append(time.perf_counter() - t)
        rows["copy"].append(copy())
out.update({k: statistics.median(v) for k, v in rows.items()})
out["points"] = points
if spec["export"]:
    from runstore.export import export
    eq = spec["export_query"]
    ex, floor, ecopy = [], [], []
    for _ in range(max(1, spec["repeat"] // 2)):
        with tempfile.TemporaryDirectory(dir=spec["tmp"]) as d:
            t = time.perf_counter()
            res = export(repo, os.path.join(d, "x"), eq)
            ex.append(time.perf_counter() - t)
            sizes = [f.stat().st_size for f in (__import__("pathlib").Path(d) / "x" / "sequences").glob("*/*")]
        with tempfile.TemporaryDirectory(dir=spec["tmp"]) as d:
            blob = [b"x" * s for s in sizes]
            t = time.perf_counter()
            for i, b in enumerate(blob):
                os.mkdir(os.path.join(d, f"run_id={i}"))
                with open(os.path.join(d, f"run_id={i}", "part-0.parquet"), "wb") as f:
                    f.write(b)
            floor.append(time.perf_counter() - t)
        ecopy.append(copy() * res.points / max(points, 1))
    out.update(export=statistics.median(ex), export_floor=statistics.median(floor),
               export_copy=statistics.median(ecopy), export_runs=res.runs, export_points=res.points)
print(json.dumps(out))
"""


def bench_export(base: Path, n: int, export_runs: int, repeat: int, baseline: str | None) -> None:
    """Target 10's rest: reading many short sequences at once (see the module docstring)."""
    path = base / f"scale-{n}x3"
    build_runs(path, n, 10, metrics=3)
    query = "seq.name == 'loss'"
    # The first EXPORT runs by name: ``run-<i>`` for i below export_runs.
    export_query = f"seq.name == 'loss' and run.name in {[f'run-{i}' for i in range(export_runs)]!r}"
    print(f"many short sequences: {n:,} runs x 1 metric x 10 steps ({query}); export of {export_runs:,} runs "
          f"(fresh process per repeat)")
    trees = [("this tree", None)] + ([("baseline " + baseline, baseline)] if baseline else [])
    rows: dict[str, list[dict]] = {label: [] for label, _ in trees}
    for i in range(max(1, repeat // 2)):
        for label, src in trees:
            env = dict(os.environ)
            if src:
                env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
            got = {}
            for first in ("numpy", "arrow"):  # each first call in a fresh process of its own
                spec = {"path": str(path), "query": query, "repeat": 5, "first": first, "warm": first == "numpy",
                        "export": i == 0 and export_runs > 0 and first == "numpy",
                        "export_query": export_query, "tmp": str(base)}
                res = subprocess.run([sys.executable, "-c", EXPORT_CHILD, json.dumps(spec)], capture_output=True,
                                     text=True, check=True, env=env)
                one = json.loads(res.stdout.strip().splitlines()[-1])
                got.update({k: v for k, v in one.items() if k not in got or k == "first_arrow"})
            rows[label].append(got)
    for label, _ in trees:
        rs = rows[label]
        k, pts = rs[0]["n"], rs[0]["points"]
        print(f" {label} ({rs[0]['src']}): {k:,} sequences, {pts:,} points")
        cp = med(rs, "copy")
        row("np.copy of the same points, 4 columns (baseline)", f"{cp * 1e3:.2f} ms")
        for what in ("numpy", "arrow"):
            t = med(rs, what)
            row(f"to_{what}() warm", f"{t * 1e3:.0f} ms = {t / k * 1e6:.2f} µs/seq",
                f"{t / cp:.0f}x the copy (aim: within ~10x)")
            row(f"  first to_{what}() in a fresh process (after the query)", spread(rs, f"first_{what}", digits=0),
                f"= {med(rs, f'first_{what}') / k * 1e6:.2f} µs/seq")
        row("  fresh process: import + open + the query", spread(rs, "open_query", digits=0))
        ex = [r for r in rs if "export" in r]
        if ex:
            e = ex[0]
            row(f"export (Parquet) of {e['export_runs']:,} runs", f"{e['export'] * 1e3:.0f} ms = "
                f"{e['export'] / e['export_runs'] * 1e6:.0f} µs/run",
                f"{e['export'] / e['export_copy']:.0f}x the copy of its {e['export_points']:,} points")
            row("  file system floor (a folder + a file per run)", f"{e['export_floor'] * 1e3:.0f} ms",
                f"export = {e['export'] / e['export_floor']:.1f}x the floor")
    if baseline:
        a, b = rows["this tree"], rows[trees[1][0]]
        for what in ("numpy", "arrow"):
            row(f"to_{what}() warm, baseline / this tree", f"{med(b, what) / med(a, what):.1f}x",
                f"first call: {med(b, f'first_{what}') / med(a, f'first_{what}'):.1f}x")
        ea, eb = [r for r in a if "export" in r], [r for r in b if "export" in r]
        if ea and eb:
            row("export, baseline / this tree", f"{eb[0]['export'] / ea[0]['export']:.1f}x")


def evict(path: Path, drop_caches: bool) -> None:
    """Take ``path`` out of the page cache (no process may have it mapped)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    if drop_caches:
        if os.geteuid() != 0:
            raise SystemExit("--drop-caches needs root (writes /proc/sys/vm/drop_caches)")
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def resident(path: Path) -> str:
    """Share of ``path`` in the page cache (util-linux ``fincore``), for the record."""
    try:
        out = subprocess.run(["fincore", "-b", "-n", "-o", "RES,SIZE", str(path)],
                             capture_output=True, text=True, check=True).stdout.split()
        return f"{int(out[0]) / max(int(out[1]), 1):.0%}"
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return "?"


def bench_coldread(base: Path, points: int, repeat: int, drop_caches: bool) -> None:
    from runstore import Repo, Run

    print(f"cold full read of a {points:,}-point sequence (one run, track_many in 1 M chunks)")
    path = base / f"coldread-{points}"
    if not (path / ".complete").exists():
        repo = Repo(path, create=True)
        chunk = np.random.default_rng(0).random(1_000_000)
        with Run(repo=repo) as run:
            for _ in range(points // len(chunk)):
                run.track_many(chunk, name="x")
        del repo
        (path / ".complete").touch()
    data = path / "data.mdb"
    code = (
        "import time,json,resource,numpy as np;from runstore import Repo;"
        f"r=Repo({str(path)!r},readonly=True);s=r.runs()[0].sequence('x');"
        "f0=resource.getrusage(resource.RUSAGE_SELF).ru_majflt;"
        "t=time.perf_counter();c=s.numpy();rd=time.perf_counter()-t;"
        "f1=resource.getrusage(resource.RUSAGE_SELF).ru_majflt;"
        "nb=sum(v.nbytes for v in c.values());del c;"
        "t=time.perf_counter();c=s.numpy();wr=time.perf_counter()-t;del c;src=np.ones(nb//8);"
        "cp=[];\nfor _ in range(3):\n t=time.perf_counter();dst=np.copy(src);cp.append(time.perf_counter()-t);del dst\n"
        "cp=min(cp);"
        "print(json.dumps({'read':rd,'warm':wr,'copy':cp,'faults':f1-f0,'nbytes':nb}))"
    )

    def cold(env: dict | None) -> dict:
        evict(data, drop_caches)
        res = resident(data)
        res_run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env={**os.environ, **(env or {})})
        out = json.loads(res_run.stdout.strip().splitlines()[-1])
        out["resident"] = res
        return out

    cats, hinted, plain = [], [], []
    for _ in range(repeat):
        evict(data, drop_caches)
        t = time.perf_counter()
        subprocess.run(["cat", str(data)], stdout=subprocess.DEVNULL, check=True)
        cats.append({"cat": time.perf_counter() - t})
        hinted.append(cold(None))
    for _ in range(max(1, repeat // 2)):  # the old way is slow: fewer repeats
        plain.append(cold({"RUNSTORE_READAHEAD": "0"}))
    size = data.stat().st_size
    floor = med(cats, "cat") + med(hinted, "copy")
    row(f"cat data.mdb, cold ({size / 2**20:.0f} MiB)", spread(cats, "cat"),
        f"resident before reads: {hinted[0]['resident']}")
    row(f"one np.copy of the {med(hinted, 'nbytes') / 2**20:.0f} MiB read (warm, best of 3)", spread(hinted, "copy"))
    ratio = med(hinted, "read") / floor
    row("cold full read, read-ahead hints", spread(hinted, "read"),
        f"{ratio:.2f}x cat+copy, target <= 2x: {verdict(ratio <= 2)}; "
        f"{med(hinted, 'faults'):.0f} major faults")
    row("cold full read, RUNSTORE_READAHEAD=0 (before)", spread(plain, "read"),
        f"{med(plain, 'read') / floor:.2f}x cat+copy; {med(plain, 'faults'):.0f} major faults")
    row("warm full read, hints / no hints", f"{med(hinted, 'warm') * 1e3:.1f} / {med(plain, 'warm') * 1e3:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (10,000 runs, 10 M points, 3 repeats)")
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "runstore-bench"))
    ap.add_argument("--runs", type=int, default=None, help="runs in the cold-open repository (default 100,000)")
    ap.add_argument("--big-points", type=int, default=None, help="points of the big sequence (default 100 M)")
    ap.add_argument("--cold-points", type=int, default=None, help="points of the cold-read sequence (default 20 M)")
    ap.add_argument("--drop-caches", action="store_true",
                    help="coldread: evict with /proc/sys/vm/drop_caches (root; whole machine) on top of fadvise")
    ap.add_argument("--names", type=int, default=None, help="metric names of the many-metrics run (default 10,000)")
    ap.add_argument("--steps", type=int, default=None, help="steps of each metric (default 1,000)")
    ap.add_argument("--million", type=int, default=None, help="runs of the 1-metric workload (default 1,000,000)")
    ap.add_argument("--build-runs", type=int, default=None, help="runs per build repeat (default 100,000)")
    ap.add_argument("--baseline", default=None,
                    help="build, big, export, metrics: also measure the runstore under this src directory "
                    "(PYTHONPATH), interleaved")
    ap.add_argument("--big-repeat", type=int, default=None, help="fresh processes per big variant (default 3)")
    ap.add_argument("--big-modes", default="default,fast,one",
                    help="big: 'default' (flush interval 1 s), 'fast' (0.1 s), 'one' (one flush at close)")
    ap.add_argument("--big-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--metrics-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--only", default="import,arrow,cold,refresh,million,build,lookup,views,big,long,metrics,"
                    "coldread,export")
    ap.add_argument("--export-runs", type=int, default=None,
                    help="export: runs exported (one Parquet file each; default 10,000, --quick 1,000)")
    ap.add_argument("--long-steps", type=int, default=None, help="long: steps of the workload-1 run (default 200,000)")
    ap.add_argument("--long-points", type=int, default=None,
                    help="long: points of the track_many sequence with a timestamp per point (default 20 M)")
    args = ap.parse_args()
    if args.big_child:
        print(json.dumps(big_child(json.loads(args.big_child))))
        return
    if args.metrics_child:
        print(json.dumps(metrics_child(json.loads(args.metrics_child))))
        return
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    repeat = 3 if args.quick else 5
    runs = args.runs or (10_000 if args.quick else 100_000)
    big = args.big_points or (10_000_000 if args.quick else 100_000_000)
    only = set(args.only.split(","))
    print(f"bench_scale.py (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    if "import" in only:
        bench_import(repeat)
    if "arrow" in only:
        bench_arrow(base, repeat)
    if "cold" in only:
        bench_cold(base, runs, repeat)
    if "refresh" in only:
        bench_refresh(base, runs, 100, repeat)
    if "million" in only:
        bench_million(base, args.million or (100_000 if args.quick else 1_000_000), repeat)
    if "build" in only:
        bench_build(base, args.build_runs or (1_000 if args.quick else 100_000), repeat, args.baseline)
    if "lookup" in only:
        bench_lookup(base, 3000)
    if "big" in only:
        bench_big(base, big, args.big_repeat or (1 if args.quick else 3), args.baseline,
                  args.big_modes)
    if "views" in only:
        bench_views(base, runs)
    if "long" in only:
        bench_long(base, args.long_steps or (40_000 if args.quick else 200_000),
                   args.long_points or (2_000_000 if args.quick else 20_000_000), repeat)
    if "metrics" in only:
        bench_metrics(base, args.names or (1_000 if args.quick else 10_000),
                      args.steps or (100 if args.quick else 1_000), repeat, args.baseline)
    if "export" in only:
        bench_export(base, runs, args.export_runs if args.export_runs is not None else
                     (1_000 if args.quick else 10_000), repeat, args.baseline)
    if "coldread" in only:
        cold_points = args.cold_points or (5_000_000 if args.quick else 20_000_000)
        bench_coldread(base, cold_points, repeat, args.drop_caches)


if __name__ == "__main__":
    main()
