"""Object sequences beyond tracking (issue 13): queries on seq.type, Arrow tables,
export layout, `runstore show`, check() of blob references, compact of orphan blobs."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from runstore import Distribution, Image, InvalidValueError, Repo, Run, Text
from runstore.storage import objblocks as _ob
from runstore.cli import cli


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture
def mixed(repo):
    with Run(repo=repo, experiment="e") as run:
        for i, px in enumerate(_images(3)):
            run.track(Image(px), name="samples", step=i, context={"subset": "val"})
            run.track(float(i), name="loss", step=i)
        run.track(Text("first"), name="gen", step=0)
        run.track(Text("second"), name="gen", step=5)
        run.track(Distribution.from_histogram([1, 2], [0.0, 0.5, 1.0]), name="w", context={"layer": "fc1"})
    return repo, run


def test_queries_see_type_and_object_summaries(mixed):
    repo, run = mixed
    assert [k[1] for k in repo.query_sequences('seq.type == "image"').keys] == ["samples"]
    assert {k[1] for k in repo.query_sequences('seq.type != "float"').keys} == {"samples", "gen", "w"}
    assert [k[1] for k in repo.query_sequences('seq.type == "float"').keys] == ["loss"]
    assert [k[1] for k in repo.query_sequences('seq.type == "distribution" and seq.name == "w"').keys] == ["w"]
    assert [k[1] for k in repo.query_sequences('seq.type == "text" and seq.count == 2 and seq.last_step == 5').keys] \
        == ["gen"]
    assert len(repo.query('seq.type == "image" and seq.count >= 3')) == 1
    assert len(repo.query('seq.type == "audio"')) == 0


def test_to_arrow_on_object_sequences(mixed):
    repo, run = mixed
    table = repo.query_sequences('seq.type != "float"').to_arrow()
    rows = table.to_pylist()
    assert {"run_id", "name", "context.subset", "context.layer", "step", "epoch", "timestamp", "type", "data",
            "text", "counts", "bin_edges"} == set(table.column_names)
    images = [r for r in rows if r["type"] == "image"]
    stored = run_view = Repo(repo.path).get_run(run.id).sequence("samples", {"subset": "val"})
    assert [r["data"] for r in images] == [stored[i].data for i in range(3)]
    assert [r["step"] for r in images] == [0, 1, 2] and images[0]["context.subset"] == "val"
    assert [r["text"] for r in rows if r["type"] == "text"] == ["first", "second"]
    (dist,) = [r for r in rows if r["type"] == "distribution"]
    assert dist["counts"] == [1.0, 2.0] and dist["bin_edges"] == [0.0, 0.5, 1.0] and dist["data"] is None
    assert run_view.type == "image"
    only_text = repo.query_sequences('seq.type == "text"').to_arrow()
    assert only_text.column_names[-1] == "text" and "data" not in only_text.column_names


def test_mixed_selection_is_a_clear_error(mixed):
    repo, _ = mixed
    with pytest.raises(InvalidValueError, match="mixes 1 float sequence.*seq.type"):
        repo.query_sequences().to_arrow()
    with pytest.raises(InvalidValueError, match="holds image values"):
        repo.query_sequences('seq.name == "samples"').to_numpy()
    assert repo.query_sequences().of_type("float").to_arrow().num_rows == 3


def test_export_layout(mixed, tmp_path):
    repo, run = mixed
    dest = tmp_path / "out"
    result = CliRunner().invoke(cli, ["--repo", str(repo.path), "export", str(dest)])
    assert result.exit_code == 0, result.output
    assert "3 points, 6 objects" in result.output
    index = pq.read_table(dest / "objects.parquet").to_pylist()
    assert [(r["name"], r["step"], r["type"]) for r in index] == [("samples", i, "image") for i in range(3)]
    assert index[1]["path"] == f"objects/{run.id}/samples/subset=val/1.png"
    assert json.loads(index[1]["context"]) == {"subset": "val"}
    from PIL import Image as PILImage

    with PILImage.open(dest / index[1]["path"]) as im:
        assert np.array_equal(np.asarray(im), _images(3)[1])
    text = pq.read_table(dest / "text.parquet").to_pylist()
    assert [(t["step"], t["text"]) for t in text] == [(0, "first"), (5, "second")]
    dists = pq.read_table(dest / "distributions.parquet").to_pylist()
    assert dists[0]["counts"] == [1.0, 2.0] and json.loads(dists[0]["context"]) == {"layer": "fc1"}
    points = pq.read_table(dest / "sequences" / f"run_id={run.id}" / "part-0.parquet").to_pylist()
    assert [p["value"] for p in points] == [0.0, 1.0, 2.0]


def test_show_lists_type_and_count(mixed):
    repo, run = mixed
    result = CliRunner().invoke(cli, ["--repo", str(repo.path), "show", run.id])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    assert lines["samples"][1:4] == ["subset=val", "image", "3"]
    assert lines["gen"][1:4] == ["-", "text", "2"]
    assert lines["w"][1:4] == ["layer=fc1", "distribution", "1"]
    assert lines["loss"][1:4] == ["-", "float", "3"]
    tail = CliRunner().invoke(cli, ["--repo", str(repo.path), "tail", run.id])
    assert tail.exit_code == 0 and "samples" not in tail.output, tail.output


def test_cli_query_sequences_on_a_mixed_selection(mixed):
    """`runstore query -s` on scalars and objects: the scalar points on screen and the
    objects counted; a file format refuses the mix and says how to pick one kind; object
    points show their payload's size, never raw bytes."""
    repo, run = mixed
    runner = CliRunner()
    base = ["--repo", str(repo.path), "query", "-s"]
    screen = runner.invoke(cli, [*base, ""], env={"COLUMNS": "120"})
    assert screen.exit_code == 0, screen.output
    assert "1 sequence, 3 points" in screen.stdout and "samples" not in screen.stdout
    assert "3 object sequences" in screen.stderr and 'seq.type != "float"' in screen.stderr
    csv = runner.invoke(cli, [*base, "", "-f", "csv"])
    assert csv.exit_code == 2 and "mixes 1 scalar sequence and 3 object sequences" in csv.output
    assert 'seq.type == "float"' in csv.output
    objects = runner.invoke(cli, [*base, 'seq.type != "float"'], env={"COLUMNS": "160"})
    assert objects.exit_code == 0, objects.output
    sizes = {len(Image(px).data) for px in _images(3)}
    assert "PNG" not in objects.stdout and "\\x89" not in objects.stdout
    assert all(f"{n} B" in objects.stdout for n in sizes) and "second" in objects.stdout and "2 bins" in objects.stdout
    only = runner.invoke(cli, [*base, 'seq.type == "float"', "-f", "csv"])
    assert only.exit_code == 0 and only.stdout.count("\n") == 4  # header + 3 points


def test_check_reports_a_dangling_blob_reference(mixed):
    repo, run = mixed
    assert repo.check() == [] and repo.check().notes == []
    env = repo._env
    with env.read() as txn:
        key = next(iter(txn.cursor(db=env.dbs["blobs"]).iternext(values=False)))
    env.write(lambda txn: txn.delete(bytes(key), db=env.dbs["blobs"]))
    problems = repo.check()
    assert len(problems) == 1 and "'samples'" in problems[0] and "missing" in problems[0]
    result = CliRunner().invoke(cli, ["--repo", str(repo.path), "check"])
    assert result.exit_code == 1 and "missing" in result.output


def test_check_reports_damaged_blob_bytes(mixed):
    repo, _ = mixed
    env = repo._env
    with env.read() as txn:
        key = bytes(next(iter(txn.cursor(db=env.dbs["blobs"]).iternext(values=False))))
    env.write(lambda txn: txn.put(key, b"not the image", db=env.dbs["blobs"]))
    assert any("damaged" in p for p in repo.check())


def test_deleted_run_leaves_reclaimable_blobs_until_compact(repo):
    shared, own = _images(2, seed=3)
    with Run(repo=repo) as keep:
        keep.track(Image(shared), name="x")
    with Run(repo=repo) as gone:
        gone.track(Image(shared), name="x")  # deduped with keep's blob
        gone.track(Image(own), name="x")
    repo.delete_run(gone.id)
    report = repo.check()
    assert report == []  # not damage
    assert len(report.notes) == 1 and "1 blob" in report.notes[0] and report.reclaimable_bytes > 0
    result = CliRunner().invoke(cli, ["--repo", str(repo.path), "check"])
    assert result.exit_code == 0 and "note: 1 blob" in result.output, result.output
    repo.compact()
    report = repo.check()
    assert report == [] and report.notes == []
    env = repo._env
    with env.read() as txn:
        assert txn.stat(env.dbs["blobs"])["entries"] == 1
    assert np.array_equal(Repo(repo.path).get_run(keep.id).sequence("x")[0].to_numpy(), shared)


def test_object_block_format_byte_is_distinct_from_numeric_blocks():
    from runstore.storage import blocks

    raw = _ob.encode(np.arange(2), np.zeros(2), np.zeros(2), [{}, {}])
    assert _ob.is_object_block(raw) and raw[0] & 0x80 and not blocks.FORMAT & 0x80
    assert _ob.decode(io.BytesIO(raw).getvalue())[0].tolist() == [0, 1]


def test_ui_lists_curves_of_float_sequences_only(mixed):
    from runstore.ui._data import UIRepo

    repo, run = mixed
    ui = UIRepo(repo)
    assert [m["name"] for m in ui.metrics(None, None)] == ["loss"]
    assert [s["name"] for s in ui.schema()["sequences"]] == ["loss"]
    detail = {s["name"]: s for s in ui.run_detail(run.id)["sequences"]}
    assert detail["samples"]["type"] == "image" and detail["samples"]["count"] == 3
    meta, stream = ui.curves({"name": "samples"})
    b"".join(stream)  # an image sequence has no curve: an empty stream, not an error


def test_a_server_run_refuses_objects_clearly(tmp_path):
    from server_proc import ServerProcess

    with ServerProcess(tmp_path / "served") as server:
        run = Run(repo=Repo(server.url))
        run.track(1.0, name="loss")
        with pytest.raises(InvalidValueError, match="'samples'.*not sent to a runstore server.*local"):
            run.track(Image(np.zeros((2, 2), np.uint8)), name="samples")
        run.close()
        assert Repo(server.repo_path, readonly=True).get_run(run.id).sequences() == [("loss", {})]
