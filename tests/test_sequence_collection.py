"""SequenceCollection: iteration, long Arrow tables, NumPy, alignment and downsampling."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from runstore import Repo, Run, Sequence
from runstore.analysis import seqframe as _seqframe
from runstore.analysis.collections import RunCollection, SequenceCollection


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "repo")


@pytest.fixture
def filled(repo):
    ids = []
    for i in range(3):
        with Run(repo=repo, name=f"r{i}") as run:
            run["hparams"] = {"lr": 10.0 ** -(i + 2)}
            run.track_many(np.arange(5, dtype=float) + i, name="loss", steps=np.arange(0, 10, 2) + i,
                           context={"subset": "train"})
            run.track_many([9.0 - i, 8.0 - i], name="loss", steps=[0, 4], epochs=[0, 1], context={"subset": "val"})
            if i == 1:
                run.track(0.5, name="acc")
        ids.append(run.id)
    return repo, ids


def test_iteration_gives_sequences(filled):
    repo, ids = filled
    seqs = repo.query_sequences("seq.name == 'loss' and seq.context.subset == 'val'")
    assert isinstance(seqs, SequenceCollection) and len(seqs) == 3
    items = list(seqs)
    assert all(isinstance(s, Sequence) for s in items)
    first = items[0]
    assert first.run.id == ids[0] and first.name == "loss" and first.context == {"subset": "val"}
    assert first.values.tolist() == [9.0, 8.0] and first.steps.tolist() == [0, 4]
    assert first.epochs.tolist() == [0.0, 1.0] and len(first.timestamps) == 2
    assert (first.count, first.first_step, first.last_step, first.last, first.min, first.max) == (2, 0, 4, 8.0, 8.0, 9.0)
    assert seqs[-1].run.id == ids[2]
    assert len(seqs[:2]) == 2 and isinstance(seqs[:2], SequenceCollection)
    assert seqs.keys[1] == (ids[1], "loss", {"subset": "val"})
    assert isinstance(seqs.runs, RunCollection) and seqs.runs.ids == ids
    assert "SequenceCollection(3 sequences)" in repr(seqs)


def test_to_arrow_long_form(filled):
    repo, ids = filled
    table = repo.query_sequences("run.hparams.lr > 0.0005").to_arrow()  # every sequence of r0 and r1
    assert table.column_names == ["run_id", "name", "context.subset", "step", "value", "epoch", "timestamp"]
    assert table.num_rows == 5 + 2 + 5 + 2 + 1
    assert pa.types.is_dictionary(table.schema.field("run_id").type)
    assert table.schema.field("step").type == pa.int64()
    rows = table.to_pylist()
    acc = [r for r in rows if r["name"] == "acc"]
    assert acc == [dict(run_id=ids[1], name="acc", **{"context.subset": None}, step=0, value=0.5,
                        epoch=acc[0]["epoch"], timestamp=acc[0]["timestamp"])]
    assert np.isnan(acc[0]["epoch"])
    val0 = [(r["step"], r["value"], r["epoch"]) for r in rows if r["run_id"] == ids[0] and r["context.subset"] == "val"]
    assert val0 == [(0, 9.0, 0.0), (4, 8.0, 1.0)]
    df = repo.query_sequences("seq.name == 'acc'").to_pandas()
    assert list(df["value"]) == [0.5]
    pl = pytest.importorskip("polars")
    assert repo.query_sequences("seq.name == 'acc'").to_polars().height == 1
    assert isinstance(repo.query_sequences("seq.name == 'acc'").to_polars(), pl.DataFrame)


def test_chunked_arrow_equals_concatenated(filled, monkeypatch):
    repo, _ = filled
    small = repo.query_sequences("").to_arrow()
    monkeypatch.setattr(_seqframe, "_CHUNK_THRESHOLD", 1)
    big = repo.query_sequences("").to_arrow()
    assert big.column("step").num_chunks > 1  # one chunk per sequence, no concatenation
    assert _rows(big) == _rows(small)


def _rows(table) -> list:
    return [{k: "nan" if isinstance(v, float) and np.isnan(v) else v for k, v in row.items()}
            for row in table.to_pylist()]


def test_context_columns_of_mixed_kinds(repo):
    with Run(repo=repo) as run:
        run.track(1.0, name="m", context={"fold": 1, "split": {"name": "a"}})
        run.track(2.0, name="m", context={"fold": "x"})
    table = repo.query_sequences("").to_arrow()
    assert table.column_names[:4] == ["run_id", "name", "context.fold", "context.split.name"]
    assert table.column("context.fold").to_pylist() == ["1", "x"]  # mixed int/str: strings
    assert table.column("context.split.name").to_pylist() == ["a", None]


def test_empty_selection(filled):
    repo, _ = filled
    seqs = repo.query_sequences("seq.name == 'nothing'")
    assert len(seqs) == 0 and list(seqs) == []
    table = seqs.to_arrow()
    assert table.num_rows == 0 and "value" in table.column_names
    aligned = seqs.align()
    assert aligned.values.shape == (0, 0)


def test_to_numpy(filled):
    repo, ids = filled
    out = repo.query_sequences("seq.name == 'loss' and seq.context.subset == 'train'").to_numpy()
    assert [o["run_id"] for o in out] == ids
    assert out[2]["steps"].tolist() == [2, 4, 6, 8, 10] and out[2]["values"].tolist() == [2, 3, 4, 5, 6]
    assert set(out[0]) == {"run_id", "name", "context", "steps", "values", "epochs", "timestamps"}


def test_align_on_steps_and_epochs(filled):
    repo, _ = filled
    seqs = repo.query_sequences("seq.name == 'loss' and seq.context.subset == 'train'")
    aligned = seqs.align()
    assert aligned.axis.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert aligned.values.shape == (3, 11)
    assert aligned.values[0, 0] == 0.0 and np.isnan(aligned.values[0, 1])
    assert aligned.values[1, 1] == 1.0 and np.isnan(aligned.values[1, 0])
    assert np.isfinite(aligned.values).sum() == 15
    by_epoch = repo.query_sequences("seq.context.subset == 'val'").align(on="epoch")
    assert by_epoch.axis.tolist() == [0.0, 1.0] and by_epoch.values[:, 1].tolist() == [8.0, 7.0, 6.0]
    assert len(repo.query_sequences("seq.context.subset == 'train'").align(on="epoch").axis) == 0
    with pytest.raises(ValueError, match="step"):
        seqs.align(on="value")


def test_align_keeps_last_point_of_a_repeated_step(repo):
    with Run(repo=repo) as run:
        run.track_many([1.0, 2.0, 3.0], name="m", steps=[0, 1, 1])
    aligned = repo.query_sequences("").align()
    assert aligned.axis.tolist() == [0, 1] and aligned.values.tolist() == [[1.0, 3.0]]


def test_downsample_keeps_shape(repo):
    x = np.linspace(0, 20, 10_000)
    y = np.sin(x)
    y[5_000] = 50.0  # a spike must survive
    with Run(repo=repo) as run:
        run.track_many(y, name="curve")
        run.track_many([1.0, 2.0], name="short")
    seqs = repo.query_sequences("")
    mm = seqs.downsample(100)
    curve, short = mm
    assert len(curve["values"]) <= 100 and curve["values"].max() == 50.0
    assert curve["steps"][0] == 0 and curve["steps"][-1] == 9_999
    assert np.all(np.diff(curve["steps"]) > 0)
    assert curve["values"].min() == y.min()
    assert short["values"].tolist() == [1.0, 2.0]  # shorter than n: untouched
    lt = seqs.downsample(100, method="lttb")[0]
    assert len(lt["values"]) == 100 and lt["values"].max() == 50.0
    assert np.all(np.diff(lt["steps"]) > 0)
    with pytest.raises(ValueError):
        seqs.downsample(2)
    with pytest.raises(ValueError, match="minmax"):
        seqs.downsample(10, method="nope")


def test_minmax_indices_handle_nan():
    y = np.array([0.0, np.nan, 5.0, np.nan, -1.0, 2.0, 3.0, np.nan, 1.0])
    idx = _seqframe.minmax_indices(y, 6)
    assert idx[0] == 0 and idx[-1] == 8
    assert 2 in idx and 4 in idx and len(idx) <= 6


def test_parallel_read_keeps_order(filled, monkeypatch):
    repo, _ = filled
    serial = repo.query_sequences("").to_numpy()
    from runstore.storage import bulk

    # Every block copied on its own (the path of long blocks), over two threads.
    monkeypatch.setattr(bulk, "SMALL_BYTES", 0)
    monkeypatch.setattr(bulk, "PARALLEL_POINTS", 1)
    monkeypatch.setattr(bulk.os, "cpu_count", lambda: 2)
    parallel = repo.query_sequences("").to_numpy()
    assert [(p["run_id"], p["name"], p["context"]) for p in parallel] == [
        (s["run_id"], s["name"], s["context"]) for s in serial]
    assert all(np.array_equal(p["values"], s["values"]) and np.array_equal(p["steps"], s["steps"])
               for p, s in zip(parallel, serial))
