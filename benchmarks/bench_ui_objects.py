"""The UI's object routes (issue 14's run detail for issue 13's sequences) on a big run.

    python benchmarks/bench_ui_objects.py [--images 100000] [--dists 1000] [--dir DIR]

Each route is timed through Starlette's TestClient (HTTP handling included) next to the
Python API call it stands on, in the same process (``seq[-1]``, ``seq.range``,
``seq.steps``, ``seq[:]``): the ratio is what the UI adds.  The first row is the floor of
a TestClient request that reads nothing (a 404 for an unknown route): ~1-2 ms of every route is that.  The last line times the first
image served by a fresh process (import + open + request).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, row, workdir  # noqa: E402

from runstore import Distribution, Image, Repo, Run  # noqa: E402


def build(path: Path, images: int, dists: int) -> str:
    repo = Repo(path)
    rng = np.random.default_rng(0)
    img = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    run = Run(repo=repo, name="objects")
    for s in range(images):
        run.track(Image(img), name="samples", step=3 * s)  # every third step: misses need the nearest
    for s in range(dists):
        run.track(Distribution(rng.normal(s / 100, 1, 1000), bins=64), name="weights", step=s)
    run.close()
    return run.id


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--dists", type=int, default=1000)
    ap.add_argument("--dir")
    args = ap.parse_args()
    base = Path(args.dir) if args.dir else workdir("ui-objects")
    path = base / "repo"
    try:
        t = time.perf_counter()
        rid = build(path, args.images, args.dists)
        print(f"built {args.images:,} images + {args.dists:,} distributions in {time.perf_counter() - t:.1f} s")
        from starlette.testclient import TestClient

        from runstore.ui import create_app

        repo = Repo(path)
        seq = repo.get_run(rid).sequence("samples")
        dseq = repo.get_run(rid).sequence("weights")
        client = TestClient(create_app(repo), base_url="http://127.0.0.1:43800")
        url = f"/api/runs/{rid}/objects"
        mid = 3 * (args.images // 2)

        def get(route, **params):
            r = client.get(f"{url}/{route}", params=params)
            assert r.status_code == 200, r.text
            return r

        cases = [
            ("HTTP floor: a request that reads nothing (404, no route)", lambda: client.get("/api/no-such-route"),
             lambda: None),
            ("last image (no step)", lambda: get("at", name="samples"), lambda: seq[-1].data),
            ("image at an exact step (middle)", lambda: get("at", name="samples", step=mid),
             lambda: seq.range(mid, mid + 1)[0].data),
            ("image at a missing step -> nearest", lambda: get("at", name="samples", step=mid + 1),
             lambda: seq.range(mid, mid + 1)[0].data),
            ("image far past the end -> nearest (the last)", lambda: get("at", name="samples", step=10**12),
             lambda: seq[-1].data),
            ("slider steps (max 1000)", lambda: get("steps", name="samples", max=1000), lambda: seq.steps),
            (f"distribution heatmap {args.dists} x 64 -> 300 rows", lambda: get("distribution", name="weights", width=300),
             lambda: dseq[:].values),
        ]
        print(f"{'':2}{'route (TestClient) vs the public API call':<58} {'UI median':>16} ratio")
        for label, ui, api in cases:
            ui_med, _ = best_of(ui, 7)
            api_med, _ = best_of(api, 7)
            row(label, f"{ui_med * 1e3:.2f} ms", f"x{ui_med / api_med:.1f} of {api_med * 1e3:.2f} ms" if api_med > 1e-5 else "")
        code = (
            "import time; t = time.perf_counter()\n"
            "from starlette.testclient import TestClient\nfrom runstore.ui import create_app\n"
            f"c = TestClient(create_app({str(path)!r}), base_url='http://127.0.0.1:43800')\n"
            f"r = c.get('{url}/at', params={{'name': 'samples', 'step': {mid}}}); assert r.status_code == 200\n"
            "print(time.perf_counter() - t)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        row("fresh process: import + open + one image at a step", f"{float(out.stdout) * 1e3:.0f} ms")
        print(json.dumps({"images": args.images, "dists": args.dists}))
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
