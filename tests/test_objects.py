"""Object sequences (issue 13): round trips, types, dedupe, partial reads, migration."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runstore import Array, Audio, Distribution, Figure, Image, InvalidValueError, Repo, Run, Text
from runstore.storage import locate as _locate
from runstore.storage import objblocks as _ob


def _reopen(repo, run):
    return Repo(repo.path).get_run(run.id)


def test_round_trip_every_type(repo):
    pytest.importorskip("PIL")  # Pillow is a base dependency; this only guards a broken env
    from PIL import Image as PILImage
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    gray = rng.random((7, 5))
    png = io.BytesIO()
    PILImage.fromarray(pixels).save(png, format="PNG")
    jpeg = io.BytesIO()
    PILImage.fromarray(pixels).save(jpeg, format="JPEG")
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    pfig = go.Figure(data=[go.Scatter(x=[1, 2], y=[3, 4])])
    values = rng.normal(size=5000)
    samples = (np.sin(np.arange(1600) / 10) * 0.5).astype(np.float32)
    matrix = np.arange(12, dtype=np.int16).reshape(3, 4)

    with Run(repo=repo) as run:
        run.track(Image(pixels, caption="epoch 3"), name="samples", step=3, context={"subset": "val"})
        run.track(Image(gray), name="gray")
        run.track(Image(png.getvalue()), name="png")
        run.track(Image(jpeg.getvalue()), name="jpeg")
        run.track(Image(PILImage.fromarray(pixels)), name="pil")
        run.track(Text("a generated sentence"), name="generations")
        run.track(Distribution(values, bins=64), name="weights", context={"layer": "fc1"})
        run.track(Distribution.from_histogram([1, 2, 3], [0.0, 1.0, 2.0, 3.0]), name="hist")
        run.track(Figure(fig), name="roc")
        run.track(Figure(pfig), name="plotly")
        run.track(Audio(samples, rate=8000), name="speech")
        run.track(Array(matrix), name="confusion")
        run.track(0.5, name="loss")
    plt.close(fig)

    view = _reopen(repo, run)
    seq = view.sequence("samples", context={"subset": "val"})
    assert seq.type == "image" and view.sequence("loss").type == "float"
    img = seq[-1]
    assert isinstance(img, Image)
    assert (img.width, img.height, img.caption) == (10, 12, "epoch 3")
    assert np.array_equal(img.to_numpy(), pixels)  # pixels identical
    assert img.to_pil().size == (10, 12)
    assert list(seq.steps) == [3]
    assert np.array_equal(view.sequence("gray")[0].to_numpy(), np.rint(gray * 255).astype(np.uint8))
    assert view.sequence("png")[0].data == png.getvalue()  # bytes identical
    assert view.sequence("jpeg")[0].data == jpeg.getvalue()
    assert view.sequence("jpeg")[0].format == "jpeg"
    assert np.array_equal(view.sequence("pil")[0].to_numpy(), pixels)
    assert view.sequence("generations")[-1].text == "a generated sentence"
    d = view.sequence("weights", context={"layer": "fc1"})[0]
    counts, edges = np.histogram(values, bins=64)
    assert np.array_equal(d.counts, counts) and np.array_equal(d.bin_edges, edges)
    assert np.array_equal(d.to_numpy(), counts)
    assert list(view.sequence("hist")[0].counts) == [1, 2, 3]
    f = view.sequence("roc")[0]
    assert f.library == "matplotlib" and f.data[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in f.svg
    p = view.sequence("plotly")[0]
    assert p.library == "plotly" and p.to_plotly().data[0].y == (3, 4)
    a = view.sequence("speech")[0]
    assert a.rate == 8000 and a.data[:4] == b"RIFF"
    assert np.array_equal(a.to_numpy(), np.rint(samples * 32767).astype(np.int16))
    m = view.sequence("confusion")[0].to_numpy()
    assert m.dtype == np.int16 and np.array_equal(m, matrix)


def test_distribution_sequence_matrix(repo):
    edges = np.linspace(0, 1, 65)
    with Run(repo=repo) as run:
        for i in range(300):
            run.track(Distribution.from_histogram(np.full(64, i), edges), name="w")
        run.track(Distribution(np.arange(10)), name="other")
        run.track(Distribution(np.arange(20)), name="other")
    view = _reopen(repo, run)
    seq = view.sequence("w")
    mat = seq.to_numpy()
    assert mat.shape == (300, 64) and mat[299, 0] == 299
    assert np.array_equal(seq.bin_edges, edges)
    assert seq[10:20].to_numpy().shape == (10, 64)
    with pytest.raises(InvalidValueError, match="bin edges"):
        view.sequence("other").to_numpy()


def test_one_type_per_sequence(repo):
    with Run(repo=repo) as run:
        run.track(Image(np.zeros((2, 2), np.uint8)), name="x")
        with pytest.raises(InvalidValueError, match="image.*float"):
            run.track(1.0, name="x")
        with pytest.raises(InvalidValueError, match="image.*text"):
            run.track(Text("no"), name="x")
        run.track(1.0, name="y")
        with pytest.raises(InvalidValueError, match="float.*text"):
            run.track(Text("no"), name="y")
        run.track(Image(np.ones((2, 2), np.uint8)), name="x")
    view = _reopen(repo, run)
    assert view.sequence("x").count == 2 and view.sequence("y").count == 1


@pytest.mark.parametrize("make, match", [
    (lambda: Image(np.zeros((2, 2, 2), np.uint8)), "Image.*shape.*accepted"),
    (lambda: Image(np.zeros((2, 2), np.int64)), "Image.*dtype"),
    (lambda: Image(np.full((2, 2), 2.0)), "Image.*float pixels"),
    (lambda: Image(b"not an image"), "Image.*neither PNG nor JPEG"),
    (lambda: Image(np.zeros((2, 2), np.uint8), caption=3), "Image.*caption is a int"),
    (lambda: Image("a string"), "Image.*str"),
    (lambda: Text(b"bytes"), "Text.*bytes"),
    (lambda: Distribution([]), "Distribution.*empty"),
    (lambda: Distribution([1.0, float("nan")]), "Distribution.*NaN"),
    (lambda: Distribution(["a", "b"]), "Distribution.*dtype"),
    (lambda: Distribution.from_histogram([1, 2], [0, 1]), "Distribution.*bin edges"),
    (lambda: Figure(object()), "Figure.*matplotlib Figure or a plotly"),
    (lambda: Audio(np.full(10, 2.0)), "Audio.*outside"),
    (lambda: Audio(np.zeros(10, np.int64)), "Audio.*dtype"),
    (lambda: Array(np.array(["a"])), "Array.*numeric"),
])
def test_bad_input(make, match):
    with pytest.raises(InvalidValueError, match=match):
        make()


def test_bad_step_names_sequence_and_keeps_earlier(repo):
    with Run(repo=repo) as run:
        run.track(Text("ok"), name="t")
        with pytest.raises(InvalidValueError, match="'t'"):
            run.track(Text("bad"), name="t", step="x")
        with pytest.raises(InvalidValueError, match="epoch"):
            run.track(Text("bad"), name="t", epoch="x")
    assert [t.text for t in _reopen(repo, run).sequence("t").values] == ["ok"]


def test_identical_images_stored_once(repo):
    img = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with Run(repo=repo) as run:
        for i in range(50):
            run.track(Image(img), name="same")
        run.track(Image(img[::-1].copy()), name="other")
    env = repo._env
    with env.read() as txn:
        assert txn.stat(env.dbs["blobs"])["entries"] == 2
    assert _reopen(repo, run).sequence("same").count == 50


def test_slicing_reads_only_needed_blocks(repo, monkeypatch):
    with Run(repo=repo) as run:
        for i in range(1000):
            run.track(Image(np.full((4, 4), i % 256, np.uint8)), name="imgs", step=2 * i)
    seq = _reopen(repo, run).sequence("imgs")
    assert seq.count == 1000
    reads = []
    real = _locate.BlockReader.raw
    monkeypatch.setattr(_locate.BlockReader, "raw", lambda self, no: reads.append(no) or real(self, no))
    last = seq[-1]
    assert reads == [999 // _ob.CAPACITY]
    assert last.to_numpy()[0, 0] == 999 % 256
    reads.clear()
    part = seq[300:310]
    assert reads == [1] and list(part.steps) == list(range(600, 620, 2))
    reads.clear()
    part = seq.range(1020, 1040)  # steps 1020..1038: positions 510..519, block 1
    assert set(reads) <= {0, 1, 2, 3} and 1 in reads and len(set(reads)) <= 3
    assert list(part.steps) == list(range(1020, 1040, 2))
    assert [p.to_numpy()[0, 0] for p in part] == [i % 256 for i in range(510, 520)]


def test_resumed_run_appends_to_the_tail_block(repo):
    with Run(repo=repo) as run:
        for i in range(300):
            run.track(Text(str(i)), name="t")
    with Run(repo=repo, run_id=run.id) as again:
        for i in range(300, 520):
            again.track(Text(str(i)), name="t")
    seq = _reopen(repo, run).sequence("t")
    assert seq.count == 520 and list(seq.steps) == list(range(520))
    assert [t.text for t in seq[250:270]] == [str(i) for i in range(250, 270)]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["loss", "text", "arr"]), st.integers(0, 9)), max_size=40))
def test_interleaving_scalars_and_objects(tmp_path_factory, ops):
    repo = Repo(tmp_path_factory.mktemp("r") / "repo")
    expected: dict = {"loss": [], "text": [], "arr": []}
    with Run(repo=repo, flush_interval=3600) as run:
        for i, (kind, v) in enumerate(ops):
            if kind == "loss":
                run.track(float(v), name="loss")
            elif kind == "text":
                run.track(Text(f"t{v}"), name="text")
            else:
                run.track(Array(np.full(3, v)), name="arr")
            expected[kind].append(v)
            if i % 7 == 6:
                run.flush()
    view = Repo(repo.path).get_run(run.id)
    names = {n for n, _ in view.sequences()}
    for kind, vals in expected.items():
        if not vals:
            assert kind not in names
            continue
        seq = view.sequence(kind)
        assert list(seq.steps) == list(range(len(vals)))
        if kind == "loss":
            assert list(seq.values) == [float(v) for v in vals]
        elif kind == "text":
            assert [t.text for t in seq.values] == [f"t{v}" for v in vals]
        else:
            assert [int(a.to_numpy()[0]) for a in seq.values] == vals


def test_format_1_repository_opens_unchanged_and_migrates(tmp_path):
    path = tmp_path / "old"
    code = f"""
import runstore.storage.env as e
e.FORMAT_VERSION = 1
e.DB_NAMES = ("meta", "runs", "params", "seqs", "blocks")
from runstore import Repo, Run
with Run(repo=Repo({str(path)!r}, create=True)) as run:
    run.track(1.5, name="loss")
print(run.id)
"""
    run_id = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    before = (path / "data.mdb").read_bytes()
    repo = Repo(path)
    assert repo._env.format == 1
    assert list(repo.get_run(run_id).sequence("loss").values) == [1.5]
    assert (path / "data.mdb").read_bytes() == before  # opening and reading wrote nothing
    with Run(repo=repo, run_id=run_id) as run:
        run.track(Text("now with objects"), name="note")
    assert repo._env.format == 2
    check = f"""
from runstore import Repo
r = Repo({str(path)!r}).get_run({run_id!r})
print(r.sequence("note")[0].text, r.sequence("loss").values.tolist())
"""
    out = subprocess.run([sys.executable, "-c", check], check=True, capture_output=True, text=True).stdout
    assert out.startswith("now with objects [1.5]")
