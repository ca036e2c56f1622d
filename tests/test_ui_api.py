"""The UI's HTTP API through Starlette's TestClient: every route, errors and the security rules."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from starlette.testclient import TestClient

from runstore.ui import create_app
from runstore.ui._data import UIError
from ui_repo import make_ui_repo

LOCAL = "http://127.0.0.1:43800"


@pytest.fixture(scope="module")
def ui_repo(tmp_path_factory):
    repo, ids, live = make_ui_repo(tmp_path_factory.mktemp("ui") / "repo")
    yield repo, ids, live
    live.close()


@pytest.fixture
def client(ui_repo):
    return TestClient(create_app(ui_repo[0]), base_url=LOCAL)


def arrow(response) -> pa.Table:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.apache.arrow.stream")
    return pa.ipc.open_stream(response.content).read_all()


def meta(table: pa.Table) -> dict:
    return json.loads(table.schema.metadata[b"runstore"])


# -- pages and assets ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/runs", "/explorer", "/compare", "/run/abc"])
def test_pages_serve_the_single_page_app(client, path):
    r = client.get(path)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "/static/app.js" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "access-control-allow-origin" not in r.headers  # no CORS


def test_static_assets_are_local(client):
    html = client.get("/").text
    assert "http://" not in html and "https://" not in html  # no CDN
    for path in ("/static/vendor/uplot/uPlot.iife.min.js", "/static/vendor/apache-arrow/Arrow.es2015.min.js",
                 "/static/app.js", "/static/style.css"):
        assert client.get(path).status_code == 200, path


# -- runs ---------------------------------------------------------------------------------------
def test_runs_page_filters_sorts_and_fetches_only_chosen_columns(client, ui_repo):
    r = client.get("/api/runs", params={"q": "run.hparams.lr < 0.05", "sort": "hparams.lr", "desc": "0",
                                        "col": ["hparams.lr", "loss[subset=train].last"], "limit": 5})
    t = arrow(r)
    assert int(r.headers["x-total-count"]) == 18
    assert t.num_rows == 5
    assert t.column_names == ["id", "handle", "name", "experiment", "status", "tags", "created_at", "duration",
                              "archived", "hparams.lr", "loss[subset=train].last"]
    assert t.column("hparams.lr").to_pylist() == [0.001] * 5
    assert t.schema.field("created_at").type == pa.float64()  # no int64/timestamps for JS to trip on
    assert all(len(h) == 8 for h in t.column("handle").to_pylist())
    r2 = client.get("/api/runs", params={"q": "run.hparams.lr < 0.05", "offset": 15, "limit": 5})  # 18 match
    assert arrow(r2).num_rows == 3


def test_runs_default_order_is_newest_first(client, ui_repo):
    t = arrow(client.get("/api/runs", params={"limit": 3}))
    assert t.column("id").to_pylist() == ui_repo[1][::-1][:3]
    assert t.column("status").to_pylist()[0] == "running"


def test_bad_query_is_400_with_line_column_and_caret(client):
    r = client.get("/api/runs", params={"q": "run.hparams.lr = 0.1"})
    assert r.status_code == 400
    body = r.json()
    assert body["line"] == 1 and body["column"] == 16
    assert body["message"].splitlines()[-1].strip() == "^"
    r = client.get("/api/runs", params={"q": "rn.name == 'x'"})
    assert r.status_code == 400 and "did you mean run" in r.json()["error"]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 5000}, {"offset": -1}, {"limit": "x"},
                                    {"col": "no.such.key"}])
def test_bad_runs_parameters_are_400(client, params):
    r = client.get("/api/runs", params=params)
    assert r.status_code == 400 and r.json()["error"]


def test_groups_ids_and_schema(client, ui_repo):
    groups = client.get("/api/groups", params={"key": "hparams.model"}).json()
    assert sorted((g["value"], g["count"]) for g in groups) == [("cnn", 8), ("gru", 8), ("lstm", 8)]
    assert client.get("/api/groups").status_code == 400
    ids = client.get("/api/ids", params={"q": "run.hparams.model == 'gru'"}).json()
    assert len(ids) == 8 and set(ids) <= set(ui_repo[1])
    schema = client.get("/api/schema").json()
    params = [p["key"] for p in schema["params"]]
    assert params.index("hparams.lr") < params.index("hparams.optim.name")  # params that vary first
    assert {"loss[subset=train]", "loss[subset=val]", "acc[subset=train]", "lr"} <= {s["key"] for s in schema["sequences"]}
    assert "created_at" in schema["attributes"] and "last" in schema["summary_fields"]
    assert schema["contexts"]["subset"] == ["train", "val"]


# -- one run ------------------------------------------------------------------------------------
def test_run_detail(client, ui_repo):
    repo, ids, _ = ui_repo
    d = client.get(f"/api/runs/{ids[0]}").json()
    assert d["params"]["hparams"]["optim"] == {"name": "adam", "beta": 0.9}
    assert {s["key"] for s in d["sequences"]} == {"loss[subset=train]", "loss[subset=val]", "acc[subset=train]", "lr"}
    assert sorted(c["id"] for c in d["children"]) == sorted(ids[1:3])
    child = client.get(f"/api/runs/{ids[1]}").json()
    assert child["parent"]["id"] == ids[0]
    # a handle works too, like repo.get_run
    assert client.get(f"/api/runs/{d['handle']}").json()["id"] == ids[0]


def test_unknown_runs_are_404(client):
    assert client.get("/api/runs/" + "0" * 24).status_code == 404
    assert client.get("/api/runs/zzzzzzzz").status_code == 404
    assert client.patch("/api/runs/" + "0" * 24, json={"archived": True}).status_code == 404
    assert client.get("/api/runs/" + "0" * 24 + "/artifacts/x.txt").status_code == 404


def test_edit_tags_name_archive_and_nothing_else(client, ui_repo, tmp_path):
    repo, ids, _ = ui_repo
    rid = ids[3]
    r = client.patch(f"/api/runs/{rid}", json={"add_tags": ["keep"], "name": "renamed", "archived": True})
    assert r.status_code == 200 and r.json()["tags"] == ["keep"]
    run = repo.get_run(rid)
    assert (run.name, run.archived, run.tags) == ("renamed", True, ["keep"])
    client.patch(f"/api/runs/{rid}", json={"remove_tags": ["keep"], "archived": False})
    assert repo.get_run(rid).refresh().tags == []
    assert client.patch(f"/api/runs/{rid}", json={"status": "failed"}).status_code == 400
    assert client.patch(f"/api/runs/{rid}", json={"archived": "yes"}).status_code == 400
    assert client.patch(f"/api/runs/{rid}", content=b"archived=1",
                        headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 400
    r = client.post("/api/runs/bulk", json={"runs": ids[6:8], "add_tags": ["bulk"]})
    assert r.json() == {"edited": 2}
    assert [repo.get_run(i).tags for i in ids[6:8]] == [["bulk"], ["bulk"]]
    client.post("/api/runs/bulk", json={"runs": ids[6:8], "remove_tags": ["bulk"]})


def test_artifacts_download(client, ui_repo, tmp_path):
    repo, ids, _ = ui_repo
    from runstore import Run

    src = tmp_path / "notes.txt"
    src.write_text("hello")
    run = Run(repo=repo, run_id=ids[2])
    run.log_artifact(src)
    run.close()
    d = client.get(f"/api/runs/{ids[2]}").json()
    assert [a["name"] for a in d["artifacts"]] == ["notes.txt"]
    r = client.get(f"/api/runs/{ids[2]}/artifacts/notes.txt")
    assert r.status_code == 200 and r.text == "hello"
    assert client.get(f"/api/runs/{ids[2]}/artifacts/..%2Frepo").status_code == 404


# -- curves -------------------------------------------------------------------------------------
def test_metrics_of_a_selection(client, ui_repo):
    ids = ui_repo[1]
    m = client.post("/api/metrics", json={"runs": ids[:2]}).json()
    assert [(e["key"], e["runs"]) for e in m] == [("acc[subset=train]", 2), ("loss[subset=train]", 2),
                                                  ("loss[subset=val]", 2), ("lr", 2)]
    m = client.get("/api/metrics", params={"q": "run.hparams.model == 'gru'"}).json()
    assert m[0]["runs"] == 8


def test_curves_full_resolution_when_it_fits(client, ui_repo):
    repo, ids, _ = ui_repo
    t = arrow(client.post("/api/curves", json={"runs": ids[:3], "name": "loss", "context": {"subset": "train"},
                                               "points": 1000, "precision": 64}))
    m = meta(t)
    assert m["bucket"] == 1 and len(m["series"]) == 3 and m["replace"]
    series = np.asarray(t.column("series"))
    for i, s in enumerate(m["series"]):
        ys = np.asarray(t.column("y"))[series == i]
        np.testing.assert_array_equal(ys, repo.get_run(s["run"]).sequence("loss", {"subset": "train"}).values)


def test_curves_downsampled_keep_every_spike(client, ui_repo):
    repo, ids, _ = ui_repo
    t = arrow(client.post("/api/curves", json={"runs": ids, "name": "loss", "context": {"subset": "train"},
                                               "points": 40}))
    m = meta(t)
    assert m["bucket"] == 32  # 300 steps / 10 buckets -> the next power of two
    series = np.asarray(t.column("series"))
    for i, s in enumerate(m["series"]):
        full = repo.get_run(s["run"]).sequence("loss", {"subset": "train"}).values
        ys = np.asarray(t.column("y"))[series == i]
        assert len(ys) <= 40
        assert np.isclose(ys.max(), full.max(), rtol=1e-6) and np.isclose(ys.min(), full.min(), rtol=1e-6)
        assert np.isclose(ys[0], full[0], rtol=1e-6) and np.isclose(ys[-1], full[-1], rtol=1e-6)


def test_curves_x_modes_range_and_smoothing(client, ui_repo):
    ids = ui_repo[1]
    base = {"runs": ids[:2], "name": "loss", "context": {"subset": "train"}, "points": 1000, "precision": 64}
    step = arrow(client.post("/api/curves", json=base))
    rel = arrow(client.post("/api/curves", json={**base, "x": "relative"}))
    wall = arrow(client.post("/api/curves", json={**base, "x": "wall"}))
    assert np.asarray(rel.column("x")).min() >= 0 and np.asarray(wall.column("x")).min() > 1e9
    assert step.num_rows == rel.num_rows == wall.num_rows
    cut = arrow(client.post("/api/curves", json={**base, "range": [100, 149]}))
    xs = np.asarray(cut.column("x"))
    assert xs.min() == 100 and xs.max() == 149 and cut.num_rows == 100
    smooth = arrow(client.post("/api/curves", json={**base, "smooth": 0.9}))
    raw_y, smooth_y = np.asarray(step.column("y")), np.asarray(smooth.column("y"))
    assert np.abs(np.diff(smooth_y[:300])).mean() < np.abs(np.diff(raw_y[:300])).mean()
    assert smooth_y[0] == pytest.approx(raw_y[0])  # debiased: starts at the first value, not at 0


def test_curves_group_by_mean_and_band(client, ui_repo):
    ids = ui_repo[1]
    t = arrow(client.post("/api/curves", json={"runs": ids, "name": "loss", "context": {"subset": "train"},
                                               "group": "hparams.model", "points": 80}))
    m = meta(t)
    assert [g["value"] for g in m["groups"]] == ["lstm", "gru", "cnn"] and m["grouped"]
    lo, y, hi = (np.asarray(t.column(c)) for c in ("lo", "y", "hi"))
    assert (lo <= y + 1e-12).all() and (y <= hi + 1e-12).all()
    assert set(np.asarray(t.column("series")).tolist()) == {0, 1, 2}
    std = arrow(client.post("/api/curves", json={"runs": ids, "name": "loss", "context": {"subset": "train"},
                                                 "group": "hparams.model", "band": "std", "points": 80}))
    assert meta(std)["band"] == "std"


def test_curves_colour_key_and_query_selection(client):
    t = arrow(client.get("/api/curves", params={"q": "run.hparams.model == 'gru'", "name": "lr",
                                                "color": "hparams.lr"}))
    m = meta(t)
    assert len(m["series"]) == 8 and {s["color_value"] for s in m["series"]} == {0.001, 0.01, 0.1}


def test_live_curves_append_with_a_since_cursor(client, ui_repo):
    repo, ids, live = ui_repo
    spec = {"runs": [live.id], "name": "loss", "context": {"subset": "train"}, "points": 1000, "precision": 64}
    first = meta(arrow(client.post("/api/curves", json=spec)))
    s = first["series"][0]
    assert s["status"] == "running" and s["cursor"] == 300
    live.track_many(np.full(5, 7.0), name="loss", context={"subset": "train"})
    live.flush()
    t = arrow(client.post("/api/curves", json={**spec, "since": {live.id: s["cursor"]}, "bucket": first["bucket"]}))
    assert not meta(t)["replace"]
    assert np.asarray(t.column("x")).tolist() == [300, 301, 302, 303, 304]
    assert meta(t)["series"][0]["cursor"] == 305
    # a client with another bucket width gets everything again
    t = arrow(client.post("/api/curves", json={**spec, "since": {live.id: 300}, "bucket": 64}))
    assert meta(t)["replace"] and t.num_rows == 305


@pytest.mark.parametrize("spec", [{}, {"name": "loss", "x": "bogus"}, {"name": "loss", "points": 2},
                                  {"name": "loss", "smooth": 1.5}, {"name": "loss", "context": "[1]"},
                                  {"name": "loss", "range": [1]}, {"name": "loss", "precision": 16},
                                  {"name": "loss", "q": "run.x = 1"}])
def test_bad_curve_requests_are_400(client, spec):
    r = client.post("/api/curves", json=spec)
    assert r.status_code == 400 and r.json()["error"]


def test_curve_responses_are_gzipped(client, ui_repo):
    r = client.post("/api/curves", json={"runs": ui_repo[1], "name": "loss", "context": {"subset": "train"}},
                    headers={"accept-encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip"


# -- security -----------------------------------------------------------------------------------
def test_non_loopback_bind_without_token_is_refused(ui_repo):
    with pytest.raises(UIError, match="without a token"):
        create_app(ui_repo[0], host="0.0.0.0")
    create_app(ui_repo[0], host="0.0.0.0", token="s3cret")  # with one it is fine


def test_host_header_rebinding_is_refused(client):
    assert client.get("/api/schema", headers={"host": "evil.example:43800"}).status_code == 400
    assert client.get("/api/schema", headers={"host": "localhost:43800"}).status_code == 200


def test_cross_origin_writes_are_refused(client, ui_repo):
    rid = ui_repo[1][0]
    r = client.patch(f"/api/runs/{rid}", json={"archived": False}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.patch(f"/api/runs/{rid}", json={"archived": False}, headers={"origin": LOCAL})
    assert r.status_code == 200


def test_token_is_enforced(ui_repo):
    app = create_app(ui_repo[0], host="0.0.0.0", token="s3cret")
    c = TestClient(app, base_url="http://10.1.2.3:43800")
    assert c.get("/api/schema").status_code == 401
    assert c.get("/").status_code == 401
    assert c.get("/api/schema", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/schema", headers={"authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/api/schema", params={"token": "wrong"}).status_code == 401
    r = c.get("/runs", params={"token": "s3cret", "q": "x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/runs?q=x"  # the token leaves the URL
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    assert c.get("/api/schema").status_code == 200  # the cookie now carries it
    # any Host is fine on a non-loopback bind (the token protects it)
    assert c.get("/api/schema", headers={"host": "my-box:43800"}).status_code == 200


def test_token_on_loopback_is_enforced_too(ui_repo):
    c = TestClient(create_app(ui_repo[0], token="abc"), base_url=LOCAL)
    assert c.get("/api/runs").status_code == 401
    assert c.get("/api/runs", headers={"authorization": "Bearer abc"}).status_code == 200


def test_no_gzip_for_a_browser_on_the_same_machine(ui_repo):
    c = TestClient(create_app(ui_repo[0]), base_url=LOCAL, client=("127.0.0.1", 50000))
    r = c.post("/api/curves", json={"runs": ui_repo[1], "name": "loss", "context": {"subset": "train"}},
               headers={"accept-encoding": "gzip"})
    assert r.status_code == 200 and "content-encoding" not in r.headers


def test_a_query_naming_a_missing_param_warns(client):
    r = client.get("/api/runs", params={"q": "run.hparams.lrr < 0.1"})
    assert r.status_code == 200 and r.headers["x-total-count"] == "0"
    notes = json.loads(r.headers["x-query-warnings"])
    assert "hparams.lrr" in notes[0] and "hparams.lr" in notes[0]
    assert "x-query-warnings" not in client.get("/api/runs", params={"q": "run.hparams.lr < 0.1"}).headers


def test_a_sequence_with_no_points_yet_is_an_empty_series(tmp_path):
    from runstore import Repo, Run

    repo = Repo(tmp_path / "r")
    run = Run(repo=repo, name="fresh")
    run.sequence("loss", {"subset": "train"})  # a live handle, nothing tracked yet
    other = Run(repo=repo, name="done")
    other.track(1.0, name="loss", context={"subset": "train"})
    other.close()
    c = TestClient(create_app(repo), base_url=LOCAL)
    for since in ({}, {run.id: 0}):
        r = c.post("/api/curves", json={"name": "loss", "context": {"subset": "train"}, "since": since, "bucket": 1})
        assert r.status_code == 200, r.text
    assert c.get(f"/api/runs/{run.id}").status_code == 200
    run.close()
