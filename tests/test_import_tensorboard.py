"""Importing TensorBoard logs written by the real writers (tensorboardX and
torch.utils.tensorboard), checked point by point against the tensorboard
package's own event reader."""

from __future__ import annotations

import hashlib
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from runstore import ImportSourceError, Repo, importers
from runstore.cli import cli

import tensorboardX  # noqa: E402  (the test extra installs tensorboardX, tensorboard and crc32c)
from tensorboard.backend.event_processing.event_file_loader import (  # noqa: E402
    EventFileLoader,
    RawEventFileLoader,
)
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2  # noqa: E402
from tensorboard.summary.writer.event_file_writer import EventFileWriter  # noqa: E402


def expected_points(run_dir: Path) -> dict[str, list[tuple[int, float, float]]]:
    """(step, wall_time, value) per tag, read by tensorboard's own loader (every
    record, no sampling) from the run's event files in wall-time order."""
    files = sorted(run_dir.glob("events.out.tfevents.*"))
    loaded = []
    for f in files:
        events = list(EventFileLoader(str(f)).Load())
        loaded.append((min(e.wall_time for e in events), f.name, events))
    out: dict[str, list] = {}
    for _, _, events in sorted(loaded, key=lambda t: (t[0], t[1])):
        for e in events:
            for v in e.summary.value:
                if v.HasField("simple_value"):
                    out.setdefault(v.tag, []).append((e.step, e.wall_time, v.simple_value))
                elif v.HasField("tensor") and v.metadata.plugin_data.plugin_name in ("", "scalars") \
                        and v.tensor.dtype in (1, 2):
                    t = v.tensor
                    value = (t.float_val[0] if t.float_val else t.double_val[0] if t.double_val
                             else np.frombuffer(t.tensor_content, "<f4" if t.dtype == 1 else "<f8")[0])
                    out.setdefault(v.tag, []).append((e.step, e.wall_time, float(value)))
    return out


def stored_points(run) -> dict[tuple[str, tuple], list[tuple[int, float, float]]]:
    out = {}
    for seq in run.metrics():
        cols = seq.numpy()
        out[seq.name, tuple(sorted(seq.context.items()))] = list(
            zip(cols["steps"].tolist(), cols["timestamps"].tolist(), cols["values"].tolist()))
    return out


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        h.update(str(f.relative_to(root)).encode())
        if f.is_file():
            h.update(f.read_bytes())
            h.update(str(f.stat().st_mtime_ns).encode())
    return h.hexdigest()


@pytest.fixture
def logdir(tmp_path):
    """Three runs: many steps (past TensorBoard's 10,000-per-tag sampling), a restart,
    hparams, histograms, images and text."""
    root = tmp_path / "logs"
    w = tensorboardX.SummaryWriter(str(root / "long"), flush_secs=1000, max_queue=100000)
    for step in range(12_000):
        w.add_scalar("train/loss", 1.0 / (step + 1), step)
        if step % 10 == 0:
            w.add_scalar("val/acc", step / 12_000, step)
    w.add_scalar("lr", 0.001, -5)  # a negative step: a 10-byte varint
    w.add_scalar("lr", 0.002, 2 ** 40)
    w.close()

    w = tensorboardX.SummaryWriter(str(root / "restart"))
    for step in range(30):
        w.add_scalar("loss", 100.0 - step, step)
    w.close()
    # the job restarted from step 20 (a suffix: tensorboardX names files by the second)
    w = tensorboardX.SummaryWriter(str(root / "restart"), filename_suffix=".2")
    for step in range(20, 40):
        w.add_scalar("loss", 50.0 - step, step)
    w.close()

    w = tensorboardX.SummaryWriter(str(root / "objects"))
    for step in range(3):
        w.add_scalar("train/loss", 0.5 * step, step)
        w.add_histogram("weights", np.random.default_rng(step).normal(size=100), step)
        w.add_image("sample", np.random.default_rng(step).random((3, 8, 8)), step)
        w.add_text("note", f"step {step}", step)
    w.add_hparams({"lr": 0.01, "optimizer.name": "adam", "layers": 3, "bn": True}, {"hparam/best": 0.75})
    w.close()
    return root


def test_every_point_step_and_time(logdir, tmp_path):
    repo = Repo(tmp_path / "repo")
    result = importers.tensorboard(logdir, repo=repo)
    assert sorted(r.name for r in result) == ["long", "objects", "restart"]
    runs = {r.name: r for r in repo.runs()}
    for name in ("long", "restart"):
        want = expected_points(logdir / name)
        got = stored_points(runs[name])
        mapped = {}
        for tag, points in want.items():
            key = {"train/loss": ("loss", (("subset", "train"),)), "val/acc": ("acc", (("subset", "val"),))}.get(
                tag, (tag, ()))
            mapped[key] = points
        assert got == mapped  # exact: steps, float64 wall times, float32 values widened
    assert len(stored_points(runs["long"])["loss", (("subset", "train"),)]) == 12_000
    assert result.points == 12_000 + 1_200 + 2 + 50 + 3 + 1 == 13_256
    # the restart: both jobs' points, in file order (steps 20..29 twice)
    restart = runs["restart"].sequence("loss")
    assert restart.steps.tolist() == list(range(30)) + list(range(20, 40))
    assert runs["long"].sequence("lr").steps.tolist() == [-5, 2 ** 40]
    # times: the run starts and ends when its events say
    walls = [w for pts in expected_points(logdir / "long").values() for _, w, _ in pts]
    assert runs["long"].created_at <= min(walls) and runs["long"].ended_at == max(walls)
    assert runs["long"].status == "finished"
    assert runs["long"].experiment == "logs"


def test_hparams_merged_and_objects(logdir, tmp_path):
    repo = Repo(tmp_path / "repo")
    result = importers.tensorboard(logdir, repo=repo, experiment="legacy")
    run = next(r for r in repo.runs() if r.name == "objects")
    assert len(repo) == 3  # the add_hparams sub-directory is not a run of its own
    assert run.experiment == "legacy"
    assert run["hparams"] == {"lr": 0.01, "optimizer": {"name": "adam"}, "layers": 3, "bn": True}
    assert run.sequence("hparam/best").values.tolist() == [0.75]
    assert run.sequence("loss", {"subset": "train"}).values.tolist() == [0.0, 0.5, 1.0]
    assert result.skipped == [] and result.objects == 9
    # the same values tensorboard's own loader reads, with their steps and wall times
    (path,) = (logdir / "objects").glob("events.*")
    want: dict[str, list] = {}
    for raw in RawEventFileLoader(str(path)).Load():  # the records as written (no data-compat rewriting)
        e = event_pb2.Event.FromString(raw)
        for v in e.summary.value:
            want.setdefault(v.tag, []).append((e.step, e.wall_time, v))
    images = run.sequence("sample")
    assert images.type == "image"
    assert images.steps.tolist() == [s for s, _, _ in want["sample"]]
    assert images.timestamps.tolist() == [w for _, w, _ in want["sample"]]
    assert [im.data for im in images.values] == [v.image.encoded_image_string for _, _, v in want["sample"]]
    texts = run.sequence("note")
    assert texts.type == "text" and [t.text for t in texts.values] == ["step 0", "step 1", "step 2"]
    hist = run.sequence("weights")
    assert hist.type == "distribution" and hist.steps.tolist() == [0, 1, 2]
    for d, (_, _, v) in zip(hist.values, want["weights"]):
        assert d.counts.sum() == v.histo.num == 100
        assert d.bin_edges[1:].tolist() == list(v.histo.bucket_limit)


def test_torch_writer_old_and_new_style(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path / "torch"
    w = SummaryWriter(str(root / "run"))
    for step in range(50):
        w.add_scalar("Loss/train", 1.0 / (step + 1), step)
        w.add_scalar("tensor32", step * 0.5, step, new_style=True)
        w.add_scalar("tensor64", step * 0.25, step, new_style=True, double_precision=True)
    w.add_hparams({"lr": 0.1, "bsize": 32}, {"hparam/accuracy": 0.9})
    w.close()
    repo = Repo(tmp_path / "repo")
    importers.tensorboard(root, repo=repo, contexts=False)
    (run,) = repo.runs()
    assert stored_points(run) == {(k, ()): v for k, v in expected_points(root / "run").items()} | {
        ("hparam/accuracy", ()): stored_points(run)["hparam/accuracy", ()]}
    assert run.sequence("tensor64").values.tolist() == [s * 0.25 for s in range(50)]
    assert run["hparams"] == {"lr": 0.1, "bsize": 32}


def test_tf2_tensor_summaries(tmp_path):
    """TF2 writes scalars as tensors (float_val, double_val or tensor_content) with the
    plugin named once; written here with tensorboard's own protos and file writer."""
    root = tmp_path / "tf2" / "run"
    root.mkdir(parents=True)
    writer = EventFileWriter(str(root))
    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    shape = tensor_shape_pb2.TensorShapeProto()
    for step in range(20):
        tensors = {
            "f": tensor_pb2.TensorProto(dtype=1, tensor_shape=shape, float_val=[step * 1.5]),
            "d": tensor_pb2.TensorProto(dtype=2, tensor_shape=shape, double_val=[step / 3]),
            "c": tensor_pb2.TensorProto(dtype=2, tensor_shape=shape,
                                        tensor_content=np.float64(step * 7.25).tobytes()),
        }
        for tag, tensor in tensors.items():
            value = summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=meta if step == 0 else None)
            writer.add_event(event_pb2.Event(wall_time=1.7e9 + step, step=step,
                                             summary=summary_pb2.Summary(value=[value])))
    # a histogram in TF2's form: a [k, 3] tensor of (left, right, count)
    hist_meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="histograms"))
    buckets = np.array([[0, 1, 5], [1, 2, 3]], np.float64)
    hist = tensor_pb2.TensorProto(dtype=2, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=2), tensor_shape_pb2.TensorShapeProto.Dim(size=3)]),
        tensor_content=buckets.tobytes())
    writer.add_event(event_pb2.Event(wall_time=1.7e9 + 30, step=30, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag="w", tensor=hist, metadata=hist_meta)])))
    writer.close()
    repo = Repo(tmp_path / "repo")
    result = importers.tensorboard(tmp_path / "tf2", repo=repo)
    (run,) = repo.runs()
    assert run.sequence("f").values.tolist() == [s * 1.5 for s in range(20)]
    assert run.sequence("d").values.tolist() == [s / 3 for s in range(20)]
    assert run.sequence("c").values.tolist() == [s * 7.25 for s in range(20)]
    assert run.sequence("c").timestamps.tolist() == [1.7e9 + s for s in range(20)]
    (w,) = run.sequence("w").values
    assert w.counts.tolist() == [5, 3] and w.bin_edges.tolist() == [0, 1, 2] and result.skipped == []


def test_idempotent_and_changed_runs(logdir, tmp_path):
    repo = Repo(tmp_path / "repo")
    first = importers.tensorboard(logdir, repo=repo)
    ids = sorted(r.id for r in first)
    again = importers.tensorboard(logdir, repo=repo)
    assert list(again) == [] and len(again.unchanged) == 3 and again.points == 0
    assert sorted(r.id for r in repo.runs()) == ids
    # the "restart" run kept training: only it is imported again, the old copy goes
    w = tensorboardX.SummaryWriter(str(logdir / "restart"), filename_suffix=".3")
    w.add_scalar("loss", -1.0, 40)
    w.close()
    third = importers.tensorboard(logdir, repo=repo)
    assert [r.name for r in third] == ["restart"] and third.replaced == 1 and len(third.unchanged) == 2
    assert len(repo) == 3
    assert next(r for r in repo.runs() if r.name == "restart").sequence("loss").count == 51
    forced = importers.tensorboard(logdir, repo=repo, force=True)
    assert len(forced) == 3 and len(repo) == 3


def test_truncated_and_corrupted_records(logdir, tmp_path):
    src = logdir / "restart"
    files = sorted(src.glob("events.*"))
    data = files[0].read_bytes()
    files[0].write_bytes(data[:-7])  # a writer killed mid-record
    # flip a byte inside the value of a record of the second file
    second = bytearray(files[1].read_bytes())
    second[-6] ^= 0x40
    files[1].write_bytes(bytes(second))
    repo = Repo(tmp_path / "repo")
    result = importers.tensorboard(src, repo=repo)
    (run,) = repo.runs()
    text = "\n".join(result.skipped)
    assert re.search(r"events[^:]*: the last record is truncated \(\d+ bytes at the end", text)
    assert "bad data checksum" in text
    assert run.sequence("loss").count == 29 + 19  # one lost in each file, every other point kept


def test_crc32c_matches_the_library():
    import crc32c
    from runstore.importers._tfrecord import crc32c_rows

    rng = np.random.default_rng(0)
    for length in (1, 8, 37, 200):
        rows = rng.integers(0, 256, size=(50, length), dtype=np.uint8)
        assert crc32c_rows(rows).tolist() == [crc32c.crc32c(r.tobytes()) for r in rows]


def test_framing_with_irregular_lengths(tmp_path):
    """Predicted record positions are checked: tags of many lengths, in a changing
    order, frame exactly as a record-by-record walk does."""
    from runstore.importers._tfrecord import frame

    rng = np.random.default_rng(1)
    w = tensorboardX.SummaryWriter(str(tmp_path / "irregular"), max_queue=100000, flush_secs=1000)
    for step in range(3000):
        for k in range(3 if step < 1000 else int(rng.integers(1, 6))):
            w.add_scalar("t" * (k + 1), float(step), step)
    w.close()
    (path,) = (tmp_path / "irregular").glob("events.*")
    data = path.read_bytes()
    offs, lens, problems = frame(data, path)
    pos, walked = 0, []
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 8], "little")
        walked.append((pos + 12, n))
        pos += 16 + n
    assert problems == []
    assert list(zip(offs.tolist(), lens.tolist())) == walked


def test_source_never_written(logdir, tmp_path):
    before = tree_digest(logdir)
    importers.tensorboard(logdir, repo=Repo(tmp_path / "repo"))
    assert tree_digest(logdir) == before


def test_bad_sources_are_clear_errors(tmp_path):
    repo_path = tmp_path / "repo"
    with pytest.raises(ImportSourceError, match="does not exist"):
        importers.tensorboard(tmp_path / "missing", repo=repo_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    with pytest.raises(ImportSourceError, match="no TensorBoard event files"):
        importers.tensorboard(tmp_path / "empty", repo=repo_path)
    with pytest.raises(ImportSourceError, match="not a TensorBoard event file"):
        importers.tensorboard(tmp_path / "empty" / "notes.txt", repo=repo_path)
    assert not repo_path.exists()  # nothing was made for a source that cannot be read
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "events.out.tfevents.1.host").write_bytes(b"\x05" * 40)
    result = importers.tensorboard(garbage, repo=repo_path)
    assert result.points == 0 and any("events.out.tfevents.1.host" in s for s in result.skipped)


def test_cli(logdir, tmp_path):
    runner = CliRunner()
    repo_path = str(tmp_path / "repo")
    out = runner.invoke(cli, ["import", "tensorboard", str(logdir), "--repo", repo_path, "--experiment", "old"])
    assert out.exit_code == 0, out.output
    assert "Imported 3 runs from tensorboard" in out.output
    assert "13,256 points" in out.output
    again = runner.invoke(cli, ["--repo", repo_path, "import", "tensorboard", str(logdir)])
    assert again.exit_code == 0 and "3 already imported and unchanged" in again.output
    assert {r.experiment for r in Repo(repo_path).runs()} == {"old"}
    bad = runner.invoke(cli, ["import", "tensorboard", str(tmp_path / "nope"), "--repo", repo_path])
    assert bad.exit_code == 1 and "does not exist" in bad.output


def test_single_file_and_no_contexts(logdir, tmp_path):
    (path,) = (logdir / "long").glob("events.*")
    repo = Repo(tmp_path / "repo")
    importers.tensorboard(path, repo=repo, contexts=False, verify=False)
    (run,) = repo.runs()
    assert {s.name for s in run.metrics()} == {"train/loss", "val/acc", "lr"}
    assert math.isclose(run.sequence("train/loss").values[-1], 1 / 12_000, rel_tol=1e-6)
    shutil.rmtree(logdir)
