"""The UI's object routes (issue 14's run detail for issue 13's sequences) through Starlette's
TestClient: every object type, bytes as stored, content types, steps that do not exist,
ETags, bad parameters, and a repository left byte-for-byte unchanged."""

from __future__ import annotations

import hashlib
import io
import json
import wave
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from runstore import Repo
from runstore.ui import create_app
from ui_repo import add_object_run

LOCAL = "http://127.0.0.1:43800"


@pytest.fixture(scope="module")
def objects_repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("ui-objects") / "repo"
    repo = Repo(path)
    rid, tracked = add_object_run(repo)
    return path, repo, rid, tracked


@pytest.fixture
def client(objects_repo):
    return TestClient(create_app(objects_repo[1]), base_url=LOCAL)


def ctx(**kw) -> str:
    return json.dumps(kw)


def test_list_names_every_object_sequence_with_type_and_count(client, objects_repo):
    rid = objects_repo[2]
    got = {s["key"]: (s["type"], s["count"]) for s in client.get(f"/api/runs/{rid}/objects").json()}
    assert got == {"samples[subset=train]": ("image", 10), "samples[subset=val]": ("image", 10),
                   "generations": ("text", 10), "weights[layer=fc1]": ("distribution", 10),
                   "confusion": ("array", 10), "speech": ("audio", 10), "photo": ("image", 1),
                   "roc": ("figure", 1), "pr": ("figure", 1)}  # loss (float) is a curve, not listed
    detail = client.get(f"/api/runs/{rid}").json()
    assert {s["key"]: s["type"] for s in detail["sequences"]}["loss"] == "float"


def test_images_are_the_stored_bytes_at_a_step_or_the_nearest(client, objects_repo):
    rid, tracked = objects_repo[2], objects_repo[3]
    url = f"/api/runs/{rid}/objects/at"
    r = client.get(url, params={"name": "samples", "context": ctx(subset="val"), "step": 15})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == tracked["png"][("val", 15)]
    assert r.headers["x-step"] == "15" and r.headers["x-count"] == "10"
    assert r.headers["etag"] == '"' + hashlib.sha256(r.content).hexdigest() + '"'
    from urllib.parse import unquote

    assert unquote(r.headers["x-caption"]) == "val é 15"
    # step 17 was never tracked: the nearest (15) unless exact=1, which is a 404 saying why
    near = client.get(url, params={"name": "samples", "context": ctx(subset="val"), "step": 17})
    assert near.content == tracked["png"][("val", 15)] and near.headers["x-step"] == "15"
    for asked, served in ((13, 15), (12, 10), (-1000, 0), (10**12, 45)):
        got = client.get(url, params={"name": "samples", "context": ctx(subset="val"), "step": asked})
        assert got.headers["x-step"] == str(served) and got.content == tracked["png"][("val", served)]
    miss = client.get(url, params={"name": "samples", "context": ctx(subset="val"), "step": 17, "exact": 1})
    assert miss.status_code == 404
    assert "no point at step 17" in miss.json()["error"] and "nearest is step 15" in miss.json()["error"]
    # no step: the last point; index counts from the end when negative
    last = client.get(url, params={"name": "samples", "context": ctx(subset="train")})
    assert last.content == tracked["png"][("train", 45)]
    first = client.get(url, params={"name": "samples", "context": ctx(subset="train"), "index": -10})
    assert first.content == tracked["png"][("train", 0)] and first.headers["x-index"] == "0"
    third = client.get(url, params={"name": "samples", "context": ctx(subset="train"), "index": 3})
    assert third.content == tracked["png"][("train", 15)] and third.headers["x-step"] == "15"
    assert client.get(url, params={"name": "samples", "context": ctx(subset="train"), "index": 10}).status_code == 404
    jpeg = client.get(url, params={"name": "photo"})
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content == tracked["jpeg"]


def test_an_unchanged_point_revalidates_to_304(client, objects_repo):
    params = {"name": "samples", "context": ctx(subset="val"), "step": 5}
    url = f"/api/runs/{objects_repo[2]}/objects/at"
    r = client.get(url, params=params)
    assert r.headers["cache-control"] == "no-cache"  # the route's choice survives the security headers
    again = client.get(url, params=params, headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    other = client.get(url, params={**params, "step": 10}, headers={"If-None-Match": r.headers["etag"]})
    assert other.status_code == 200 and other.content != r.content


def test_audio_figures_arrays_text_and_distributions_at_a_step(client, objects_repo):
    rid, tracked = objects_repo[2], objects_repo[3]
    run = objects_repo[1].get_run(rid)
    url = f"/api/runs/{rid}/objects/at"
    wav = client.get(url, params={"name": "speech", "step": 20})
    assert wav.headers["content-type"] == "audio/wav"
    assert wav.content == run.sequence("speech").range(20, 21)[0].data
    with wave.open(io.BytesIO(wav.content)) as w:
        assert w.getframerate() == 8000 and w.getnframes() == 800

    png = client.get(url, params={"name": "roc"})
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    svg = client.get(url, params={"name": "roc", "format": "svg"})
    assert svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content
    assert svg.content == run.sequence("roc")[0].svg
    assert any("sandbox" in v for v in svg.headers.get_list("content-security-policy"))
    plotly = client.get(url, params={"name": "pr"})
    assert plotly.headers["content-type"] == "application/json"
    assert json.loads(plotly.content)["data"][0]["y"] == [3, 4]
    nosvg = client.get(url, params={"name": "pr", "format": "svg"})
    assert nosvg.status_code == 404 and "plotly figure" in nosvg.json()["error"]

    npy = client.get(url, params={"name": "confusion", "step": 10})
    assert np.array_equal(np.load(io.BytesIO(npy.content)), np.arange(9).reshape(3, 3) * 10)
    text = client.get(url, params={"name": "generations", "step": 25})
    assert text.headers["content-type"].startswith("text/plain") and text.content.decode() == tracked["text"][25]
    dist = client.get(url, params={"name": "weights", "context": ctx(layer="fc1"), "step": 0}).json()
    assert len(dist["counts"]) == 32 and len(dist["bin_edges"]) == 33 and sum(dist["counts"]) == 2000


def test_array_as_json(client, objects_repo):
    url = f"/api/runs/{objects_repo[2]}/objects/array"
    a = client.get(url, params={"name": "confusion"}).json()
    assert a["step"] == 45 and a["index"] == 9 and a["count"] == 10
    assert a["shape"] == [3, 3] and a["dtype"] == "int64" and a["values"] == (np.arange(9).reshape(3, 3) * 45).tolist()
    assert (a["min"], a["max"]) == (0, 8 * 45) and a["truncated"] is False
    assert client.get(url, params={"name": "confusion", "step": 12}).json()["step"] == 10
    assert client.get(url, params={"name": "speech"}).status_code == 400  # audio, not an array


def test_text_pages(client, objects_repo):
    url = f"/api/runs/{objects_repo[2]}/objects/texts"
    page = client.get(url, params={"name": "generations", "limit": 4}).json()
    assert page["total"] == 10 and [r["step"] for r in page["rows"]] == [0, 5, 10, 15]
    assert page["rows"][1]["text"] == "generated at step 5: ünïcode"
    newest = client.get(url, params={"name": "generations", "limit": 3, "desc": 1}).json()
    assert [r["step"] for r in newest["rows"]] == [45, 40, 35] and newest["rows"][0]["index"] == 9
    tail = client.get(url, params={"name": "generations", "limit": 4, "offset": 8}).json()
    assert [r["step"] for r in tail["rows"]] == [40, 45]
    assert client.get(url, params={"name": "generations", "limit": 0}).status_code == 400


def test_distribution_matrix_over_steps(client, objects_repo):
    rid = objects_repo[2]
    url = f"/api/runs/{rid}/objects/distribution"
    full = client.get(url, params={"name": "weights", "context": ctx(layer="fc1")}).json()
    assert full["rows"] == 10 and full["per_row"] == 1 and full["steps"] == list(range(0, 50, 5))
    # Distribution(values) of a moving tensor: edges differ per step, so rows are re-binned
    # onto one grid spanning them all; each row keeps its total
    assert full["rebinned"] is True and len(full["bin_edges"]) == 33
    assert np.allclose(np.sum(full["counts"], axis=1), 2000)
    means = [np.average(np.convolve(full["bin_edges"], [0.5, 0.5], "valid"), weights=row) for row in full["counts"]]
    assert np.all(np.diff(means) > 0)  # the tracked mean grows with the step: so does the heatmap's
    narrow = client.get(url, params={"name": "weights", "context": ctx(layer="fc1"), "width": 4}).json()
    assert narrow["rows"] == 4 and narrow["per_row"] == 3 and narrow["steps"] == [0, 15, 30, 45]
    assert narrow["last_steps"] == [10, 25, 40, 45]
    assert np.allclose(np.sum(narrow["counts"], axis=1), 2000)  # a bucket's rows are averaged
    bad = client.get(url, params={"name": "samples", "context": ctx(subset="val")})
    assert bad.status_code == 400 and "holds image values" in bad.json()["error"]


def test_steps_for_a_slider(client, objects_repo):
    url = f"/api/runs/{objects_repo[2]}/objects/steps"
    s = client.get(url, params={"name": "samples", "context": ctx(subset="train")}).json()
    assert s["steps"] == list(range(0, 50, 5)) and s["thinned"] is False and s["type"] == "image"
    thin = client.get(url, params={"name": "samples", "context": ctx(subset="train"), "max": 4}).json()
    assert thin["steps"] == [0, 15, 30, 45] and thin["thinned"] is True


def test_bad_requests_say_what_is_wrong(client, objects_repo):
    rid = objects_repo[2]
    url = f"/api/runs/{rid}/objects/at"
    r = client.get(url, params={"name": "nope"})
    assert r.status_code == 404 and "has no sequence 'nope'" in r.json()["error"]
    r = client.get(url, params={"name": "samples"})  # the context is part of the name
    assert r.status_code == 404 and "samples" in r.json()["error"]
    assert "JSON object" in client.get(url, params={"name": "samples", "context": "subset=val"}).json()["error"]
    assert "'name'" in client.get(url).json()["error"]
    assert client.get(url, params={"name": "loss"}).status_code == 400  # a float sequence
    assert client.get(url, params={"name": "confusion", "step": "x"}).status_code == 400
    assert client.get("/api/runs/zzzzzzzz/objects").status_code == 404


def tree_digest(root: Path) -> dict:
    # lock.mdb is LMDB's reader table (readers register there by design) and query-snapshot/
    # the documented query cache any process may write (docs/storage.md); the data is the rest
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "lock.mdb" and "query-snapshot" not in p.relative_to(root).parts}


def test_reading_objects_leaves_the_repository_unchanged(tmp_path):
    path = tmp_path / "repo"
    rid, _ = add_object_run(Repo(path))
    before = tree_digest(path)
    with TestClient(create_app(path), base_url=LOCAL) as c:
        assert c.get(f"/api/runs/{rid}").status_code == 200
        assert c.get(f"/api/runs/{rid}/objects").status_code == 200
        for name, context in (("samples", ctx(subset="val")), ("speech", ""), ("roc", ""), ("confusion", "")):
            assert c.get(f"/api/runs/{rid}/objects/at", params={"name": name, "context": context, "step": 7}).status_code == 200
            assert c.get(f"/api/runs/{rid}/objects/steps", params={"name": name, "context": context}).status_code == 200
        assert c.get(f"/api/runs/{rid}/objects/texts", params={"name": "generations"}).status_code == 200
        assert c.get(f"/api/runs/{rid}/objects/distribution", params={"name": "weights", "context": ctx(layer="fc1")}).status_code == 200
        assert c.get(f"/api/runs/{rid}/objects/array", params={"name": "confusion"}).status_code == 200
    assert tree_digest(path) == before


def test_a_point_at_a_step_is_found_without_reading_every_block(client, objects_repo, monkeypatch):
    # seq.steps decodes every block header of the sequence (what a 100,000-image sequence
    # must not cost per slider move): the point routes find steps with seq.range probes
    from runstore import Sequence

    def no_full_read(self):
        raise AssertionError("a point route read every step of the sequence")

    monkeypatch.setattr(Sequence, "steps", property(no_full_read))
    rid, tracked = objects_repo[2], objects_repo[3]
    for step, served in ((20, 20), (22, 20), (10**9, 45), (-7, 0)):
        r = client.get(f"/api/runs/{rid}/objects/at", params={"name": "samples", "context": ctx(subset="train"), "step": step})
        assert r.status_code == 200 and r.content == tracked["png"][("train", served)]
    a = client.get(f"/api/runs/{rid}/objects/array", params={"name": "confusion", "step": 33})
    assert a.json()["step"] == 35
