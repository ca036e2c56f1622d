"""Reads of many sequences at once (issue 22, target 10): storage/bulk.py gives the
same bits as the per-sequence path (records.read_sequence / blocks.decode), for any
block (format 1 or 2, short or long), any selection (empty sequences, duplicates, any
order, object sequences mixed in) and through a server."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from runstore import InvalidValueError, Repo, Run, Text
from runstore.storage import blocks as B
from runstore.storage import bulk, hugemem
from test_block_format import columns, old_encode, same_bits


def per_block(raws):
    with np.errstate(over="ignore"):  # decode's range of steps may wrap, as the block's own did
        parts = [B.decode(r) for r in raws]
    return tuple(np.concatenate([p[j] for p in parts]) if parts else B.empty()[j] for j in range(4))


@st.composite
def block_lists(draw):
    out = []
    for cols in draw(st.lists(columns(), min_size=0, max_size=12)):
        with np.errstate(over="ignore"):  # the old encoder's step check may wrap around
            out.append(old_encode(*cols) if draw(st.booleans()) else B.encode(*cols))
    return out


@settings(max_examples=200, deadline=None)
@given(block_lists(), st.sampled_from([None, 0, 10 ** 9]), st.booleans())
def test_decode_blocks_gives_the_bits_of_decoding_each_block(raws, small, huge):
    old, old_huge = bulk.SMALL_BYTES, hugemem.HUGE_BYTES
    try:
        if small is not None:  # 0: every block copied on its own; 10**9: every block vectorised
            bulk.SMALL_BYTES = small
        if huge:  # columns and scratch on huge-page mappings however small
            hugemem.HUGE_BYTES = 1
        cols, counts = bulk.decode_blocks(raws)
    finally:
        bulk.SMALL_BYTES, hugemem.HUGE_BYTES = old, old_huge
    want = per_block(raws)
    for a, b in zip(cols, want):
        assert same_bits(a, b)
    assert counts.tolist() == [len(B.decode(r)[1]) for r in raws]


def test_decode_blocks_mixes_long_and_short_blocks():
    rng = np.random.default_rng(1)
    raws = []
    for n in (3, B.CAPACITY, 1, 2000, B.CAPACITY, 7):
        times = 1.7e9 + np.cumsum(rng.exponential(3e-6, n))
        raws.append(B.encode(np.arange(n) * 3, rng.random(n), np.full(n, np.nan), times))
        raws.append(old_encode(np.arange(n), rng.random(n), rng.random(n), np.full(n, 5.0)))
    cols, _ = bulk.decode_blocks(raws)
    for a, b in zip(cols, per_block(raws)):
        assert same_bits(a, b)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=30), st.sampled_from([np.int64, np.float64, np.int32]), st.booleans())
def test_spread_is_repeat_into_place(counts, dtype, huge):
    rng = np.random.default_rng(len(counts))
    per_block = (rng.standard_normal(len(counts)) * (1e12 if dtype is not np.int32 else 1e9)).astype(dtype)
    if dtype is np.float64 and len(counts):
        per_block[::3] = np.array([np.nan, -0.0, np.inf] * 10)[:len(per_block[::3])]
    n = np.array(counts, np.int64)
    first = np.cumsum(n) - n
    old = hugemem.HUGE_BYTES
    try:
        hugemem.HUGE_BYTES = 1 if huge else old
        out = hugemem.empty(int(n.sum()), dtype)
    finally:
        hugemem.HUGE_BYTES = old
    out[:] = 7  # whatever was there is overwritten
    hugemem.spread(per_block, first, n > 0, out)
    assert same_bits(out, np.repeat(per_block, n))


def test_big_reads_are_on_huge_page_mappings():
    """Columns of 1 MiB or more come from one mmap (advised MADV_HUGEPAGE), not the heap."""
    import mmap

    n = 40_000
    raws = [B.encode(np.arange(100) + 100 * i, np.ones(100), np.full(100, np.nan), np.full(100, 1.7e9))
            for i in range(n // 100)]
    (steps, values, epochs, times), _ = bulk.decode_blocks(raws)
    assert steps.tolist() == list(range(n)) and np.isnan(epochs).all() and (times == 1.7e9).all()
    bases = set()
    for col in (steps, values, epochs, times):
        b = col
        while getattr(b, "base", None) is not None:
            b = b.base
        b = b.obj if isinstance(b, memoryview) else b
        bases.add(id(b))
        assert isinstance(b, mmap.mmap) or not hasattr(mmap, "MADV_HUGEPAGE")
    assert len(bases) == 1  # one mapping for the four columns


def test_kept_arrays_waste_at_most_half_on_huge_page_rounding():
    import mmap

    if not hasattr(mmap, "MADV_HUGEPAGE"):
        pytest.skip("no transparent huge pages on this OS: hugemem.mapping gives None")  # not Linux
    for nbytes, kept, size in [(600_000, True, 602_112), (600_000, False, 2 << 20),
                               (3_200_000, True, 4 << 20), (2_500_000, True, 2_502_656)]:
        arr = hugemem.mapping(nbytes, kept)
        assert len(arr) == nbytes and not arr.any()
        assert len(arr.base.obj) == size, (nbytes, kept)
        arr[:] = 1  # writable, all of it


def test_decode_blocks_refuses_damaged_blocks():
    raw = B.encode(np.arange(5), np.ones(5), np.full(5, np.nan), 1.7e9 + np.arange(5.0) * 1e-5)
    for bad in (raw[:-1], raw + b"\0", bytes([3]) + raw[1:], raw[:1] + bytes([raw[1] | 0x40]) + raw[2:], raw[:4]):
        with pytest.raises(ValueError):
            bulk.decode_blocks([raw, bad])


# -- repositories ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """Runs whose sequences cover every block kind: track() loops (timestamp deltas),
    track_many (one timestamp), step strides, epochs, explicit timestamps with gaps,
    sequences of exactly one full block and of many blocks (read-ahead hint), format-1
    blocks (rewritten as an older runstore wrote them) and object sequences."""
    path = tmp_path_factory.mktemp("bulk") / "repo"
    repo = Repo(path)
    rng = np.random.default_rng(7)
    for i in range(6):
        with Run(repo=repo, experiment="e", name=f"r{i}") as run:
            for s in range(1 + 3 * i):
                run.track(float(s) / (i + 1), name="loss", context={"subset": "train", "fold": i % 2})
            run.track_many(rng.random(10 + i), name="acc", context={"subset": "val"})
            run.track_many(rng.random(30), name="strided", steps=np.arange(30) * 5, epochs=np.arange(30) // 10)
            n = 50 + i
            gaps = np.cumsum(rng.exponential(2e-6, n) + (rng.random(n) < 0.1) * 20.0)
            run.track_many(rng.random(n), name="timed", timestamps=1.7e9 + gaps)
            if i == 1:
                run.track_many(rng.random(B.CAPACITY), name="full")
                run.track_many(rng.random(B.CAPACITY + 1), name="full+1")
            if i == 2:
                t = 1.7e9 + np.cumsum(rng.exponential(3e-6, 9 * B.CAPACITY + 3))
                run.track_many(rng.random(len(t)), name="long", timestamps=t)
            if i == 3:
                run.track(Text("hello"), name="notes")
                run.track(Text("world"), name="notes")
            run.track(1.0, name="ctx", context={"nested": {"k": i}, **({"extra": 1.5} if i % 2 else {})})
    env = repo._env
    runs = repo.runs()
    old_run = next(r for r in runs if r.name == "r4").id

    def rewrite(txn):  # run r4: every numeric block in format 1
        db = env.dbs["blocks"]
        for key, raw in [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]:
            if key.hex().startswith(old_run) and raw[0] in (1, 2):
                txn.put(key, old_encode(*B.decode(raw)), db=db)

    env.write(rewrite)
    return repo


def all_keys(repo):
    """Every float sequence (object sequences' blocks are another format: objblocks)."""
    return [(run_id, seq_id) for run_id, seq_id, summary in repo._scan_sequences()
            if (summary.get("type") or "float") == "float"]


def check_same(repo, keys):
    cols, offsets = repo._read_columns(keys)
    assert len(offsets) == len(keys) + 1 and offsets[0] == 0
    for i, want in enumerate(repo._read_sequences(keys)):
        for c, w in zip(cols, want):
            assert same_bits(c[offsets[i]:offsets[i + 1]], w), (keys[i], i)
    assert offsets[-1] == len(cols[1])


def test_read_columns_equals_the_per_sequence_reads(repo):
    keys = all_keys(repo)
    assert len(keys) > 30
    check_same(repo, keys)
    check_same(repo, [])
    blocks = repo._env.dbs["blocks"]
    with repo._env.read() as txn:
        assert any(v[0] == 1 and v[1] & B.CONST_TIME == 0 for v in txn.cursor(db=blocks).iternext(keys=False))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_selection_reads_the_same(repo, data):
    keys = all_keys(repo)
    missing = [(keys[0][0], 999), (keys[-1][0], 12345)]  # sequences without a block
    pool = keys + missing
    picked = data.draw(st.lists(st.sampled_from(pool), max_size=40))  # any order, repeats
    check_same(repo, picked)


def test_long_sequences_get_the_read_ahead_hint(repo, monkeypatch):
    from runstore.storage import prefetch

    hinted = []
    monkeypatch.setattr(prefetch, "enabled", lambda: True)
    monkeypatch.setattr(prefetch, "hint_blocks", lambda first, last, n: hinted.append(n))
    check_same(repo, all_keys(repo))
    assert 10 in hinted  # the 9 * CAPACITY + 3 point sequence; the 1-2 block ones get none
    assert all(n >= prefetch.MIN_BLOCKS for n in hinted)


def reference_arrow_rows(sel):
    """(run id, name, context, step, value, epoch, timestamp) per point, read one sequence at a time."""
    out = []
    for (run_id, name, ctx), seq in zip(sel.keys, sel):
        cols = seq.numpy()
        for p in zip(cols["steps"].tolist(), cols["values"].tolist(), cols["epochs"].tolist(),
                     cols["timestamps"].tolist()):
            out.append((run_id, name, ctx, *p))
    return out


def test_collections_read_the_same_as_sequence_by_sequence(repo):
    sel = repo.query_sequences("seq.type == 'float'")
    items = sel.to_numpy()
    assert len(items) == len(sel) > 30
    for item, seq in zip(items, sel):
        want = seq.numpy()
        for k in ("steps", "values", "epochs", "timestamps"):
            assert same_bits(item[k], want[k])
    table = sel.to_arrow()
    rows = reference_arrow_rows(sel)
    assert table.num_rows == len(rows)
    got = table.to_pydict()
    assert got["run_id"] == [r[0] for r in rows] and got["name"] == [r[1] for r in rows]
    assert got["context.nested.k"] == [r[2].get("nested", {}).get("k") for r in rows]
    assert got["context.extra"] == [r[2].get("extra") for r in rows]
    assert got["context.subset"] == [r[2].get("subset") for r in rows]
    assert pa.types.is_float64(table.schema.field("context.extra").type.value_type)
    for name, j in (("step", 3), ("value", 4), ("epoch", 5), ("timestamp", 6)):
        assert same_bits(table[name].to_numpy(), np.array([r[j] for r in rows], table[name].to_numpy().dtype))
    # a slice of the selection reads the same points again
    part = sel[3:9]
    for item, seq in zip(part.to_numpy(), part):
        assert same_bits(item["values"], seq.numpy()["values"])


def test_object_sequences_mixed_in(repo):
    sel = repo.query_sequences(None)
    assert "text" in sel.types
    with pytest.raises(InvalidValueError, match="notes"):
        sel.to_numpy()
    floats = sel.of_type("float")
    assert len(floats) == len(sel) - 1
    check_same(repo, all_keys(repo))
    assert [i["name"] for i in floats.to_numpy()] == [k[1] for k in floats.keys]


@pytest.mark.slow
def test_a_remote_repository_reads_the_same(repo):
    from server_proc import ServerProcess

    path = repo.path
    with ServerProcess(path) as proc:
        remote = Repo(proc.url)
        here, there = repo.query_sequences("seq.type == 'float'"), remote.query_sequences("seq.type == 'float'")
        assert here.keys == there.keys
        for a, b in zip(here.to_numpy(), there.to_numpy()):
            for k in ("steps", "values", "epochs", "timestamps"):
                assert same_bits(a[k], b[k])
        a, b = here.to_arrow(), there.to_arrow()
        assert a.column_names == b.column_names
        for name in a.column_names:
            if name in ("step", "value", "epoch", "timestamp"):
                assert same_bits(a[name].to_numpy(), b[name].to_numpy())
            else:  # dictionary columns: the same values (the dictionaries' order may differ)
                assert a[name].to_pylist() == b[name].to_pylist()
        with pytest.warns(Warning, match="matches nothing"):
            assert remote.query_sequences("seq.name == 'nothing'").to_numpy() == []


def test_export_groups_rows_by_run_codes():
    from runstore.export import _run_codes

    ids = ["b", "a", "b", "c", "a"]
    for column in (pa.chunked_array([pa.array(ids).dictionary_encode()]),
                   pa.chunked_array([pa.array(ids[:2]).dictionary_encode(), pa.array(ids[2:]).dictionary_encode()]),
                   pa.chunked_array([pa.array(ids)])):
        codes, names = _run_codes(column)
        assert [names[c] for c in codes.tolist()] == ids


def test_export_writes_over_threads_in_order_and_stops_at_an_error(repo, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from runstore import export as E

    progress = []
    res = E.export(repo, tmp_path / "a", "seq.type == 'float'", on_progress=lambda d, t: progress.append((d, t)))
    n = len(repo.runs())
    assert res.runs == n and progress == [(i, n) for i in range(1, n + 1)]
    monkeypatch.setattr(E, "_WRITERS", 1)
    E.export(repo, tmp_path / "b", "seq.type == 'float'")
    files = sorted((tmp_path / "a" / "sequences").glob("*/*"))
    assert len(files) == n
    for f in files:
        other = tmp_path / "b" / f.relative_to(tmp_path / "a")
        assert f.read_bytes() == other.read_bytes()  # the same table written (NaN epochs: no equals)
    monkeypatch.setattr(E, "_WRITERS", 2)
    real, calls = pq.write_table, []

    def failing(table, path, **kw):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(table, path, **kw)

    monkeypatch.setattr(pq, "write_table", failing)
    with pytest.raises(OSError, match="disk full"):
        E.export(repo, tmp_path / "c", "seq.type == 'float'")
