"""The UI in a real Chromium (Debian's /usr/bin/chromium driven by Playwright) against a real
server process on a generated repository: every step of issue 14's browser test, no console
errors, screenshots of every page (kept in docs/ui/ with RUNSTORE_UI_SCREENSHOTS=1, shown by
docs/ui.md)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runstore import Run
from ui_repo import make_ui_repo

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
DOCS = Path(__file__).resolve().parents[1] / "docs" / "ui"
# Screenshots are taken on every run; they replace the ones in docs/ui/ (shown by docs/ui.md)
# only with RUNSTORE_UI_SCREENSHOTS=1, so that running the suite leaves the tree clean.
SHOTS = DOCS if os.environ.get("RUNSTORE_UI_SCREENSHOTS") == "1" else None

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(path: Path, port: int) -> subprocess.Popen:
    code = f"from runstore.ui import serve; serve({str(path)!r}, port={port})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = time.time() + 30
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the UI server exited: {proc.stdout.read()}")
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the UI server did not start within 30 s")


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), "Debian's chromium is needed: apt-get install chromium (.ci/run does it)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = tmp_path_factory.mktemp("ui-browser") / "repo"
    repo, ids, live = make_ui_repo(path)
    port = free_port()
    proc = start_server(path, port)
    yield f"http://127.0.0.1:{port}", repo, ids, live
    live.close()
    proc.terminate()
    proc.wait(10)


class Page:
    """A page plus the console errors it produced and a poll on window.__runstore.

    Playwright's wait_for_function evaluates a string inside the page, which our
    Content-Security-Policy (script-src 'self') rightly forbids; page.evaluate goes
    through the DevTools protocol instead, so we poll with it."""

    def __init__(self, browser, width=1400, height=900):
        self.ctx = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.ctx.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def state(self, expr: str):
        return self.page.evaluate(expr)

    def wait(self, expr: str, timeout: float = 15.0):
        end = time.time() + timeout
        while time.time() < end:
            if self.page.evaluate(expr):
                return
            self.page.wait_for_timeout(50)
        hook = self.page.evaluate("JSON.stringify({...window.__runstore, state: null})")
        raise AssertionError(f"timed out waiting for {expr}\nstate: {hook}\nerrors: {self.errors}")

    def shot(self, name: str, full_page: bool = False) -> None:
        png = self.page.screenshot(full_page=full_page)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000  # a real picture, not a blank page
        if SHOTS is not None:
            SHOTS.mkdir(parents=True, exist_ok=True)
            (SHOTS / name).write_bytes(png)

    def close(self):
        self.ctx.close()


def test_runs_explorer_run_and_compare_pages(browser, served):
    base, repo, ids, live = served
    p = Page(browser)
    page = p.page
    page.goto(base + "/runs")
    p.wait("window.__runstore.runs.ready && window.__runstore.runs.total === 24")
    assert p.state("document.querySelectorAll('#runs-body .vrow').length") == 24
    assert p.state("document.querySelector('#runs-body .status-running') !== null")

    # a bad query: 400 with line, column and caret shown under the box
    page.fill("input[aria-label=query]", "run.hparams.lr = 0.1")
    page.keyboard.press("Enter")
    p.wait("window.__runstore.runs.error !== null")
    err = page.inner_text(".query-error")
    assert "column 16" in err and err.rstrip().endswith("^")
    # Chromium logs every 4xx response on the console; this one is the point of the step
    assert p.errors == ["error: Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    p.errors.clear()

    # autocomplete from /api/schema
    page.fill("input[aria-label=query]", "")
    page.type("input[aria-label=query]", "run.hparams.l")
    p.wait("(window.__runstore.runs.suggestions || []).includes('run.hparams.lr')")
    assert page.is_visible(".suggest")
    page.keyboard.press("Escape")

    # a query filters the rows
    page.fill("input[aria-label=query]", "run.hparams.lr < 0.05")
    page.keyboard.press("Enter")
    p.wait("window.__runstore.runs.error === null && window.__runstore.runs.total === 18 && window.__runstore.runs.ready")
    p.wait("document.querySelectorAll('#runs-body .vrow[data-id]').length === 18")
    assert page.inner_text("#run-count").startswith("18 runs")

    # choose a column (fetched, shown) and sort by it
    page.click("details summary")
    p.wait("document.querySelectorAll('.columns-picker input').length > 0")
    page.check(".columns-picker input[value='hparams.lr']")
    p.wait("document.querySelector('.vhead [data-key=\"hparams.lr\"]') !== null")
    page.click("details summary")
    page.click(".vhead [data-key='hparams.lr']")
    p.wait("new URL(location.href).searchParams.get('sort') === 'hparams.lr' && window.__runstore.runs.ready")
    p.wait("document.querySelector('#runs-body .vrow[data-index=\"0\"] [title=\"0.001\"]') !== null")
    page.click(".vhead [data-key='hparams.lr']")  # descending
    p.wait("document.querySelector('#runs-body .vrow[data-index=\"0\"] [title=\"0.01\"]') !== null")

    # group by with counts
    page.fill("input[aria-label='group by']", "hparams.model")
    page.keyboard.press("Enter")
    p.wait("(window.__runstore.runs.groups || []).length === 3")
    assert sorted(g["count"] for g in p.state("window.__runstore.runs.groups")) == [6, 6, 6]

    # select: a checkbox, a shift-click range, then select all matching
    boxes = "#runs-body .vrow[data-index='{}'] input[type=checkbox]"
    page.click(boxes.format(0))
    page.click(boxes.format(3), modifiers=["Shift"])
    p.wait("window.__runstore.runs.selected === 4")
    assert p.state("window.__runstore.state.selection.ids.size") == 4
    page.click("#select-all")
    assert p.state("window.__runstore.state.selection.allMatching") == "run.hparams.lr < 0.05"

    # tags are editable in place
    first_id = p.state("document.querySelector('#runs-body .vrow[data-index=\"1\"]').dataset.id")
    page.dblclick("#runs-body .vrow[data-index='1'] .cell[title='double-click to edit']")
    page.fill("input.tags-edit", "keep, reviewed")
    page.keyboard.press("Enter")
    p.wait(f"document.querySelectorAll('#runs-body .vrow[data-id=\"{first_id}\"] .tag').length === 2")
    assert sorted(repo.get_run(first_id).refresh().tags) == ["keep", "reviewed"]
    p.shot("runs.png")

    # live: a change to a running run shows up without reloading the page
    updates = p.state("window.__runstore.runs.liveUpdates || 0")
    repo.get_run(live.id).add_tag("seen-live")
    p.wait(f"document.querySelector('#runs-body .vrow[data-id=\"{live.id}\"]').textContent.includes('seen-live')")
    assert p.state("window.__runstore.runs.liveUpdates") > updates
    assert p.state("window.__runstore.runs.total") == 18  # same table, same query

    # the explorer: one canvas per metric, 18 series each
    page.click("#open-explorer")
    p.wait("window.__runstore.page === 'explorer' && window.__runstore.explorer.metrics === 4")
    p.wait("Object.values(window.__runstore.explorer.charts).filter(c => c.series === 18).length === 4")
    charts = p.state("window.__runstore.explorer.charts")
    assert set(charts) == {"acc[subset=train]", "loss[subset=train]", "loss[subset=val]", "lr"}
    assert all(c["canvases"] == 1 for c in charts.values())
    assert p.state("document.querySelectorAll('.chart-box canvas').length") == 4
    assert p.state("window.__runstore.explorer.legendItems") == 18

    # hover: one marker and a tooltip naming a run
    box = page.locator(".chart-box[data-key='loss[subset=train]'] .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    p.wait("[...document.querySelectorAll('.marker')].filter(m => m.style.display === 'block').length === 1")
    assert page.locator(".tip:visible").inner_text()

    # zoom: drag across a chart; the range is fetched again (at full resolution here)
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 40, steps=5)
    page.mouse.up()
    p.wait("window.__runstore.explorer.charts['loss[subset=train]'].zoomed === true")
    page.dblclick(".chart-box[data-key='loss[subset=train]'] .u-over")
    p.wait("window.__runstore.explorer.charts['loss[subset=train]'].zoomed === false")

    # log scale (lr has values <= 0: drawn as gaps, no error), then asinh
    page.select_option("#y-scale", "log")
    p.wait("Object.values(window.__runstore.explorer.charts).every(c => c.yScale === 'log' && c.series === 18)")
    page.select_option("#y-scale", "asinh")
    p.wait("Object.values(window.__runstore.explorer.charts).every(c => c.yScale === 'asinh')")
    page.select_option("#y-scale", "linear")

    # smoothing
    page.eval_on_selector("#smoothing", "el => { el.value = '0.9'; el.dispatchEvent(new Event('change')); }")
    p.wait("Object.values(window.__runstore.explorer.charts).every(c => c.smooth === 0.9 && c.series === 18)")
    p.shot("explorer.png")

    # group by a key: 3 mean curves with bands instead of 18 curves
    page.fill("#group-by", "hparams.model")
    page.keyboard.press("Enter")
    p.wait("Object.values(window.__runstore.explorer.charts).every(c => c.grouped && c.series === 3)")
    p.shot("explorer-grouped.png")
    page.fill("#group-by", "")
    page.keyboard.press("Enter")
    p.wait("Object.values(window.__runstore.explorer.charts).every(c => !c.grouped && c.series === 18)")

    # live: the running run appends points without a full refetch
    before = p.state("window.__runstore.explorer.charts['loss[subset=train]'].points")
    live.track_many(np.linspace(0.2, 0.1, 20), name="loss", context={"subset": "train"})
    live.flush()
    p.wait("(window.__runstore.explorer.charts['loss[subset=train]'].liveAppended || 0) > 0")
    assert p.state("window.__runstore.explorer.charts['loss[subset=train]'].points") > before

    # run detail
    page.goto(f"{base}/run/{ids[0]}")
    p.wait("window.__runstore.run.loaded && window.__runstore.run.mounted > 0")
    page.locator(".chart-box").last.scroll_into_view_if_needed()  # small charts mount as they come into view
    p.wait("window.__runstore.run.mounted === 4")
    assert "lstm-0" in page.inner_text("h2")
    assert p.state("window.__runstore.run.paramLeaves") == 6
    page.fill("input[aria-label='search params']", "beta")
    p.wait("window.__runstore.run.paramLeaves === 1")
    assert page.locator("a", has_text="gru-1").count() == 1  # a child
    p.shot("run.png", full_page=True)

    # compare three runs
    page.goto(f"{base}/compare?runs={ids[0]},{ids[1]},{ids[4]}")
    p.wait("window.__runstore.compare.loaded && window.__runstore.compare.charts === 4")
    assert p.state("window.__runstore.compare.paramRows") == 4  # layers, lr, model, seed differ
    page.check("#show-all-params")
    assert p.state("window.__runstore.compare.paramRows") == 6
    p.shot("compare.png")

    assert p.errors == []
    p.close()


def test_many_runs_only_visible_rows_and_charts_in_the_dom(browser, tmp_path):
    path = tmp_path / "many"
    from runstore import Repo

    repo = Repo(path)
    rng = np.random.default_rng(0)
    for i in range(1500):
        with Run(repo=repo, experiment="sweep", name=f"r{i}") as run:
            run["lr"] = float(rng.uniform())
            if i < 40:
                for m in range(12):
                    run.track_many(rng.normal(size=50).cumsum(), name=f"metric{m:02d}")
    port = free_port()
    proc = start_server(path, port)
    p = Page(browser, height=800)
    try:
        page = p.page
        page.goto(f"http://127.0.0.1:{port}/runs?q=")
        p.wait("window.__runstore.runs.ready && window.__runstore.runs.total === 1500")
        rows = p.state("document.querySelectorAll('#runs-body .vrow').length")
        assert 10 < rows < 80  # virtualised: only what is in view
        page.evaluate("document.getElementById('runs-body').scrollTop = 28 * 1200")
        p.wait("document.querySelector('#runs-body .vrow[data-index=\"1200\"][data-id]') !== null")
        assert p.state("document.querySelectorAll('#runs-body .vrow').length") < 80
        page.goto(f"http://127.0.0.1:{port}/explorer?q=run.name.startswith('r1')")
        p.wait("window.__runstore.explorer.metrics === 12")
        p.wait("window.__runstore.explorer.mounted > 0 && Object.values(window.__runstore.explorer.charts).some(c => c.series > 0)")
        mounted = p.state("window.__runstore.explorer.mounted")
        assert 0 < mounted < 12  # only the charts in view
        assert p.state("document.querySelectorAll('.chart-box canvas').length") == mounted
        assert p.state("document.querySelectorAll('#legend .vrow').length") <= 60
        assert p.errors == []
    finally:
        p.close()
        proc.terminate()
        proc.wait(10)


def test_run_page_shows_object_sequences(browser, tmp_path):
    """Issue 14's run detail for issue 13's objects: an image grid with a step slider, a text
    table, a distribution heatmap, arrays, figures and audio, each fetched when in view."""
    from runstore import Repo, Text
    from ui_repo import add_object_run

    path = tmp_path / "objects"
    rid, _ = add_object_run(Repo(path))
    port = free_port()
    proc = start_server(path, port)
    p = Page(browser, height=1000)
    try:
        page = p.page
        page.goto(f"http://127.0.0.1:{port}/run/{rid}")
        p.wait("window.__runstore.run.loaded && window.__runstore.run.objectViews === 8")
        objs = "window.__runstore.run.objects"
        for key in ("samples", "generations", "weights[layer=fc1]", "confusion", "speech", "photo", "roc", "pr"):
            page.locator(f".obj-box[data-key='{key}']").scroll_into_view_if_needed()
            p.wait(f"{objs}[{key!r}].mounted")
        # the image grid: one cell per context, both images decoded, at the last step
        p.wait(f"{objs}.samples.loads >= 2 && [...document.querySelectorAll('.obj-box[data-key=samples] img')]"
               ".every(i => i.complete && i.naturalWidth === 16)")
        assert p.state(f"{objs}.samples.cells") == 2 and p.state(f"{objs}.samples.steps") == 10
        assert "step 45" in page.inner_text(".obj-box[data-key=samples] .obj-caption")
        assert "val é 45" in page.inner_text(".obj-box[data-key=samples]")
        # the slider: another step, another picture
        src = page.get_attribute(".obj-box[data-key=samples] img", "src")
        loads = p.state(f"{objs}.samples.loads")
        page.eval_on_selector(".obj-box[data-key=samples] input[type=range]",
                              "el => { el.value = '2'; el.dispatchEvent(new Event('input')); }")
        p.wait(f"{objs}.samples.loads >= {loads + 2} && {objs}.samples.step === 10")
        p.wait("[...document.querySelectorAll('.obj-box[data-key=samples] img')].every(i => i.complete && i.naturalWidth === 16)")
        assert page.get_attribute(".obj-box[data-key=samples] img", "src") != src
        assert "step 10" in page.inner_text(".obj-box[data-key=samples] .obj-caption")
        # text: newest first, pages
        p.wait(f"{objs}.generations.rows === 10")
        assert page.locator(".obj-text td", has_text="generated at step 45: ünïcode").count() == 1
        # the distribution heatmap drew: its canvas has pixels that are not the background
        p.wait(f"{objs}['weights[layer=fc1]'].drawn")
        dark = page.evaluate("""() => {
            const c = document.querySelector(".obj-box[data-key='weights[layer=fc1]'] canvas");
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 128) n++;
            return [n, c.width * c.height];
        }""")
        assert dark[1] == 10 * 32 and 10 <= dark[0] < dark[1]  # each step's peak is dark, most bins pale
        # the array: a heatmap table of the last step
        p.wait(f"{objs}.confusion.step === 45 && {objs}.confusion.cells === 9")
        assert page.locator(".obj-box[data-key=confusion] td", has_text="360").count() == 1
        # a matplotlib figure as SVG, a plotly figure as a link, audio players
        p.wait("document.querySelector('.obj-box[data-key=roc] img') && document.querySelector('.obj-box[data-key=roc] img').naturalWidth > 0")
        assert page.get_attribute(".obj-box[data-key=pr] a", "href").endswith("step=0")
        p.wait(f"{objs}.speech.loads >= 1 && document.querySelector('.obj-box[data-key=speech] audio').src.startsWith('blob:')")
        p.wait(f"{objs}.photo.loads >= 1")
        p.shot("run-objects.png", full_page=True)

        # live: a running run's image grid follows new steps (its slider was at the end)
        from runstore import Image, Run

        live = Run(repo=Repo(path), name="live-images")
        for step in (1, 2):
            live.track(Image(np.full((6, 6), 10 * step, np.uint8)), name="frames", step=step)
        live.track(Text("first"), name="notes", step=1)
        live.flush()
        page.goto(f"http://127.0.0.1:{port}/run/{live.id}")
        p.wait(f"window.__runstore.run.loaded && {objs}.frames.loads >= 1 && {objs}.frames.step === 2 && {objs}.notes.rows === 1")
        live.track(Image(np.full((6, 6), 99, np.uint8)), name="frames", step=7)
        live.track(Text("second"), name="notes", step=7)
        live.flush()
        p.wait(f"{objs}.frames.step === 7 && {objs}.frames.steps === 3 && {objs}.notes.rows === 2", timeout=20)
        # state.step moves when the slider does; the caption when the image's fetch is
        # back (a loaded machine showed "step 2" in between)
        p.wait("document.querySelector('.obj-box[data-key=frames] .obj-caption').textContent.startsWith('step 7')",
               timeout=20)
        assert "step 7" in page.inner_text(".obj-box[data-key=frames] .obj-caption")
        live.close()
        assert p.errors == []
    finally:
        p.close()
        proc.terminate()
        proc.wait(10)
