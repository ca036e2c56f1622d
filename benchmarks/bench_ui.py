"""`runstore ui` benchmarks (issue 14): server timings against the same work through the
Python API in the same process, the first call in a fresh process, and timings in headless
Chromium.

Run:  python benchmarks/bench_ui.py [--runs 100000] [--curves 1000] [--points 10000] [--no-browser]

Targets:
- /api/runs first page, 100,000 runs: <= 100 ms warm, <= 1 s on the first call after
  opening (fresh process); sorted by a param column <= 100 ms warm.
- /api/curves, 1,000 runs x 10,000 points downsampled to ~1,000 points each: <= 300 ms
  server time, <= 4 MB on the wire (gzip).
- Chromium: explorer with 1,000 curves x 1,000 points painted <= 1.5 s after navigation;
  scrolling the 100,000-row runs table keeps frames under 50 ms.

The repositories are generated once under --dir and reused.  "Server" times go through the
whole ASGI stack (routing, middleware, gzip, Arrow IPC) with Starlette's in-process client;
the baseline is the same query through the public Python API (repo.query(...) and the
page's values; query_sequences(...).downsample(...)).
"""

from __future__ import annotations

import argparse
import gzip
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_query import make_runs  # noqa: E402

from runstore import Repo, Run  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def median_ms(fn, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def make_curves(path: Path, runs: int, points: int) -> Repo:
    marker = path / ".complete"
    repo = Repo(path)
    if marker.exists():
        return repo
    rng = np.random.default_rng(0)
    x = np.arange(points)
    for i in range(runs):
        with Run(repo=repo, experiment="bench", name=f"run-{i}") as run:
            run["hparams"] = {"lr": float(10 ** rng.uniform(-4, -1)), "model": ["lstm", "gru", "cnn", "mlp"][i % 4]}
            run.track_many(np.exp(-x / (points / 3)) + rng.normal(0, 0.02, points), name="loss",
                           context={"subset": "train"})
    marker.touch()
    return repo


def row(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<62} {value:>12}  {note}")


def bench_runs(path: Path, n: int) -> dict:
    from starlette.testclient import TestClient

    from runstore.ui import create_app

    out = {}
    # first call after opening, in a fresh process (imports, opening, column cache, request)
    code = f"""
import time, json
t0 = time.perf_counter()
from starlette.testclient import TestClient
from runstore import Repo
from runstore.ui import create_app
repo = Repo({str(path)!r}, create=False)
c = TestClient(create_app(repo), base_url="http://127.0.0.1")
t1 = time.perf_counter()
r = c.get("/api/runs", params={{"limit": 100}})
t2 = time.perf_counter()
assert r.status_code == 200
print(json.dumps({{"setup": t1 - t0, "first": t2 - t1}}))
"""
    fresh = [json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
             for _ in range(3)]
    out["first_call_ms"] = statistics.median(f["first"] for f in fresh) * 1000
    out["fresh_setup_ms"] = statistics.median(f["setup"] for f in fresh) * 1000

    repo = Repo(path, create=False)
    client = TestClient(create_app(repo), base_url="http://127.0.0.1")
    client.get("/api/runs")  # warm the column cache, as a running server is
    out["page_ms"] = median_ms(lambda: client.get("/api/runs", params={"limit": 100}))
    out["sort_ms"] = median_ms(lambda: client.get("/api/runs", params={"limit": 100, "sort": "hparams.lr"}))
    out["query_ms"] = median_ms(lambda: client.get("/api/runs", params={
        "q": "run.hparams.lr < 0.01 and run.hparams.model == 'lstm'", "col": ["hparams.lr", "hparams.batch_size"]}))
    out["deep_page_ms"] = median_ms(lambda: client.get("/api/runs", params={"offset": n // 2, "limit": 100}))

    def api_page(sort=None):
        runs = repo.query(None)
        runs = runs.sort(sort) if sort else runs[::-1]
        page = runs[:100]
        return [(r.id, r.handle, r.name, r.experiment, r.status, r.tags, r.created_at, r.duration, r.archived)
                for r in page]

    out["api_page_ms"] = median_ms(api_page)
    out["api_sort_ms"] = median_ms(lambda: api_page("hparams.lr"))
    print(f"/api/runs, {n:,} runs")
    row("first page, first call in a fresh process (after opening)", f"{out['first_call_ms']:.0f} ms",
        f"(+ {out['fresh_setup_ms']:.0f} ms imports and opening)")
    row("first page, warm", f"{out['page_ms']:.1f} ms", f"API alone: {out['api_page_ms']:.1f} ms")
    row("first page sorted by a param (hparams.lr), warm", f"{out['sort_ms']:.1f} ms", f"API alone: {out['api_sort_ms']:.1f} ms")
    row("a query + two param columns, warm", f"{out['query_ms']:.1f} ms")
    row("a page in the middle (offset n/2), warm", f"{out['deep_page_ms']:.1f} ms")
    return out


def bench_curves(path: Path, runs: int, points: int, budget: int = 1000) -> dict:
    from starlette.testclient import TestClient

    from runstore.ui import create_app

    repo = Repo(path, create=False)
    client = TestClient(create_app(repo), base_url="http://127.0.0.1")
    body = {"q": "", "name": "loss", "context": {"subset": "train"}, "points": budget}
    client.post("/api/curves", json=body)  # warm the query cache
    raw = {}

    def call():
        r = client.post("/api/curves", json=body, headers={"accept-encoding": "identity"})
        raw["bytes"] = len(r.content)
        raw["r"] = r

    out = {"curves_ms": median_ms(call, repeat=5)}
    import pyarrow as pa

    table = pa.ipc.open_stream(raw["r"].content).read_all()
    meta = json.loads(table.schema.metadata[b"runstore"])
    out["series"] = len(meta["series"])
    out["points_per_curve"] = table.num_rows / max(1, out["series"])
    out["bucket"] = meta["bucket"]
    out["raw_mb"] = raw["bytes"] / 1e6
    out["gzip_mb"] = len(gzip.compress(raw["r"].content, 4)) / 1e6  # what the server's GZipMiddleware (level 4) sends
    r = client.post("/api/curves", json=body, headers={"accept-encoding": "gzip"})
    out["wire_gzip"] = r.headers.get("content-encoding") == "gzip"
    out["smooth_ms"] = median_ms(lambda: client.post("/api/curves", json={**body, "smooth": 0.9}), repeat=3)
    out["group_ms"] = median_ms(lambda: client.post("/api/curves", json={**body, "group": "hparams.model"}), repeat=3)

    def api():
        return repo.query_sequences("seq.name == 'loss' and seq.context.subset == 'train'").downsample(budget)

    out["api_ms"] = median_ms(api, repeat=3)

    def api_read():
        return repo.query_sequences("seq.name == 'loss' and seq.context.subset == 'train'").to_numpy()

    out["api_read_ms"] = median_ms(api_read, repeat=3)
    print(f"/api/curves, {runs:,} runs x {points:,} points, budget {budget} points a curve")
    row("downsampled (min/max/first/last, power-of-two buckets)", f"{out['curves_ms']:.0f} ms",
        f"{out['series']} curves, {out['points_per_curve']:.0f} points each, bucket {out['bucket']} steps")
    row("bytes on the wire (Arrow IPC, gzip)", f"{out['gzip_mb']:.2f} MB", f"({out['raw_mb']:.2f} MB before gzip)")
    row("with EMA smoothing (on all 10M points, then downsampled)", f"{out['smooth_ms']:.0f} ms")
    row("grouped by hparams.model (mean + min/max band)", f"{out['group_ms']:.0f} ms")
    row("API: query_sequences(...).downsample(budget) (minmax)", f"{out['api_ms']:.0f} ms",
        f"reading the points alone: {out['api_read_ms']:.0f} ms")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    code = f"from runstore.ui import serve; serve({str(path)!r}, port={port})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def poll(page, expr: str, timeout: float = 60.0):
    end = time.time() + timeout
    while time.time() < end:
        v = page.evaluate(expr)
        if v:
            return v
        page.wait_for_timeout(20)
    raise TimeoutError(expr)


def bench_browser(runs_path: Path, curves_path: Path) -> dict:
    from playwright.sync_api import sync_playwright

    out = {}
    p1, base_curves = serve(curves_path)
    p2, base_runs = serve(runs_path)
    try:
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            # explorer: the first chart is 1,000 curves x ~1,000 points (1,000 px wide -> 2,000-point budget)
            paints = []
            for i in range(4):
                ctx = b.new_context(viewport={"width": 1300, "height": 900})
                page = ctx.new_page()
                page.goto(f"{base_curves}/explorer?q=")
                paints.append((poll(page, "window.__runstore.explorer.firstPaintMs"),
                               poll(page, "window.__runstore.explorer.completePaintMs")))
                stats = page.evaluate("Object.values(window.__runstore.explorer.charts)[0]")
                ctx.close()
            # the first load also warms the server's caches: reported apart
            out["explorer_paint_ms"] = statistics.median(p[0] for p in paints[1:])
            out["explorer_complete_ms"] = statistics.median(p[1] for p in paints[1:])
            out["explorer_paint_cold_ms"] = paints[0][1]
            out["explorer_series"] = stats["series"]
            out["explorer_points"] = stats["points"]
            # runs table: scroll 100,000 rows for 150 frames at two speeds, recording every
            # frame's duration: 300 px a frame (a brisk mouse wheel) and 1,500 px (a fling)
            ctx = b.new_context(viewport={"width": 1300, "height": 900})
            page = ctx.new_page()
            page.goto(f"{base_runs}/runs?q=")
            poll(page, "window.__runstore.runs.ready && window.__runstore.runs.total > 0")
            for speed in (300, 1500):
                frames = page.evaluate("""(speed) => new Promise((done) => {
                    const body = document.getElementById('runs-body');
                    const times = []; let last = performance.now(); let n = 0;
                    function step(now) {
                        times.push(now - last); last = now;
                        body.scrollTop += speed;
                        if (++n < 150) requestAnimationFrame(step); else done(times.slice(1));
                    }
                    requestAnimationFrame(step);
                })""", speed)
                out[f"scroll{speed}_max_ms"] = max(frames)
                out[f"scroll{speed}_p95_ms"] = float(np.percentile(frames, 95))
                out[f"scroll{speed}_median_ms"] = float(np.median(frames))
            out["rows_in_dom"] = page.evaluate("document.querySelectorAll('#runs-body .vrow').length")
            ctx.close()
            b.close()
    finally:
        p1.terminate()
        p2.terminate()
    print("headless Chromium (Debian's chromium, Playwright)")
    row(f"explorer, {out['explorer_series']} curves: navigation -> first curves painted", f"{out['explorer_paint_ms']:.0f} ms",
        "(the first record batch: 128 curves)")
    row(f"explorer, {out['explorer_series']} curves: navigation -> all curves painted", f"{out['explorer_complete_ms']:.0f} ms",
        f"{out['explorer_points']:,} points; first load after start {out['explorer_paint_cold_ms']:.0f} ms")
    for speed in (300, 1500):
        row(f"runs table, 100,000 rows, scrolling {speed} px a frame: worst frame", f"{out[f'scroll{speed}_max_ms']:.1f} ms",
            f"p95 {out[f'scroll{speed}_p95_ms']:.1f} ms, median {out[f'scroll{speed}_median_ms']:.1f} ms, {out['rows_in_dom']} rows in the DOM")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/runstore-bench", type=Path)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--curves", type=int, default=1000)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    runs_path = args.dir / f"runs-{args.runs}"
    curves_path = args.dir / f"curves-{args.curves}x{args.points}"
    make_runs(runs_path, args.runs)
    make_curves(curves_path, args.curves, args.points)
    results = {"runs": bench_runs(runs_path, args.runs),
               # 1,000: the target; 2,000: what the explorer asks for a 1,000 px chart (2 x width)
               "curves": bench_curves(curves_path, args.curves, args.points, 1000),
               "curves_2000": bench_curves(curves_path, args.curves, args.points, 2000)}
    if not args.no_browser:
        results["browser"] = bench_browser(runs_path, curves_path)
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
