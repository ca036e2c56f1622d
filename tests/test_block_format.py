"""Numeric block format 2 (issue 22, target 7): exact timestamp deltas and step
strides, the repository format 3 mark, reading old blocks, migration by compact."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import msgpack
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from runstore import Repo, Run
from runstore.storage import blocks as B

U22 = 2.0 ** -22  # the float64 spacing of today's time.time() (1.07e9 .. 2.1e9 s)


def old_encode(steps, values, epochs, times) -> bytes:
    """runstore's format-1 encoder as it was before format 2 (kept verbatim): the
    blocks every repository written until now holds."""
    n = len(values)
    flags = 0
    parts = []
    if n and steps[-1] - steps[0] == n - 1 and (n == 1 or bool(np.all(np.diff(steps) == 1))):
        flags |= 1
        parts.append(np.int64(steps[0]).tobytes())
    else:
        parts.append(np.ascontiguousarray(steps, "<i8").tobytes())
    parts.append(np.ascontiguousarray(values, "<f8").tobytes())
    if bool(np.all(np.isnan(epochs))):
        flags |= 2
    else:
        parts.append(np.ascontiguousarray(epochs, "<f8").tobytes())
    if n and bool(np.all(times == times[0])):
        flags |= 4
        parts.append(np.float64(times[0]).tobytes())
    else:
        parts.append(np.ascontiguousarray(times, "<f8").tobytes())
    return struct.pack("<BBHI", 1, flags, 0, n) + b"".join(parts)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def roundtrip(steps, values, epochs, times) -> bytes:
    cols = (np.asarray(steps, np.int64), np.asarray(values, np.float64), np.asarray(epochs, np.float64),
            np.asarray(times, np.float64))
    raw = B.encode(*cols)
    for got in (B.decode(raw), B.decode_many([raw]), tuple(c[len(cols[1]):] for c in B.decode_many([raw, raw]))):
        for want, have in zip(cols, got):
            assert same_bits(want, have), (want[:5], have[:5])
    return raw


# -- the encoding -----------------------------------------------------------------------

def test_track_loop_timestamps_are_stored_as_exact_small_deltas():
    n = B.CAPACITY
    times = np.array([time.time() for _ in range(n)])
    raw = roundtrip(np.arange(n), np.random.default_rng(0).random(n), np.full(n, np.nan), times)
    assert raw[0] == B.FORMAT_2 and raw[1] & B.TIME_DELTA
    # values 8 B + the deltas' width (1 B while points are < 30 µs apart, 2 B < 7.8 ms)
    assert len(raw) <= 8 + 16 + 16 + n * 10


def test_a_few_long_gaps_are_exceptions_not_a_wider_block():
    n = B.CAPACITY
    gaps = np.full(n, 3 * U22)
    gaps[[5, 700, 3000]] = [0.004, 120.0, -0.5]  # a flush, a pause, the clock stepping back
    times = 1.7e9 + np.cumsum(gaps)
    raw = roundtrip(np.arange(n), np.ones(n), np.full(n, np.nan), times)
    assert raw[1] & B.TIME_DELTA
    assert len(raw) == B.HEADER_SIZE + 8 + 8 * n + 16 + (n - 1) + 3 * 8
    gaps[::2] = 0.004  # every other gap 4 ms: int16 for all, 120 s and -0.5 s apart
    gaps[[5, 700, 3000]] = [0.004, 120.0, -0.5]
    raw = roundtrip(np.arange(n), np.ones(n), np.full(n, np.nan), 1.7e9 + np.cumsum(gaps))
    assert len(raw) == B.HEADER_SIZE + 8 + 8 * n + 16 + 2 * (n - 1) + 2 * 8


@pytest.mark.parametrize("gap, width", [(10 * U22, 1), (1e-3, 2), (60.0, 4)])
def test_the_narrowest_width_that_fits(gap, width):
    times = 1.7e9 + np.arange(100) * gap
    raw = roundtrip(np.arange(100), np.ones(100), np.full(100, np.nan), times)
    assert raw[1] & B.TIME_DELTA
    assert len(raw) == B.HEADER_SIZE + 8 + 800 + 16 + width * 99


def test_clock_stepping_back_gives_negative_deltas():
    times = 1.7e9 + np.array([0.0, 1e-3, -5e-3, 2e-3, 2e-3, -1.0, 0.5])
    raw = roundtrip(np.arange(7), np.ones(7), np.full(7, np.nan), times)
    assert raw[1] & B.TIME_DELTA


@pytest.mark.parametrize("times", [
    1.7e9 + np.array([0.0, 1.0, 1000.0]),  # 1000 s > int32 units of 2**-22 s: float64 kept
    np.array([0.0, 1.0, 2.0]),  # a zero timestamp: no spacing to count in
    np.array([1.7e9, np.nan, 1.7e9 + 1]),
    np.array([1.7e9, np.inf, 1.7e9 + 1]),
    np.array([-np.inf, np.inf, 1.0]),
])
def test_timestamps_that_do_not_fit_keep_float64(times):
    raw = roundtrip(np.arange(3), np.ones(3), np.full(3, np.nan), times)
    assert not raw[1] & B.TIME_DELTA
    assert raw[0] == B.FORMAT  # nothing else is new: an old reader reads this block


def test_mlflow_millisecond_timestamps_read_back_exactly():
    ms = 1_700_000_000_000 + np.cumsum(np.random.default_rng(1).integers(0, 5000, 500))
    times = ms / 1000.0
    raw = roundtrip(np.arange(500), np.ones(500), np.full(500, np.nan), times)
    assert raw[1] & B.TIME_DELTA
    assert (np.round(B.decode(raw)[3] * 1000).astype(np.int64) == ms).all()


def test_values_nan_inf_and_epochs_are_stored_as_given():
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324, 1.7976931348623157e308])
    epochs = np.array([np.nan, 1.0, 2.0, np.nan, 3.5, 4.0])
    roundtrip(np.arange(6), values, epochs, 1.7e9 + np.arange(6) * 1e-4)


def test_steps_every_n_are_a_stride_and_ranges_stay_format_1():
    raw = roundtrip(np.arange(0, 4096 * 10, 10), np.ones(4096), np.full(4096, np.nan), np.full(4096, 5.0))
    assert raw[0] == B.FORMAT_2 and raw[1] & B.STEPS_STRIDE
    assert len(raw) == B.HEADER_SIZE + 16 + 8 * 4096 + 8
    bulk = roundtrip(np.arange(7, 4103), np.ones(4096), np.full(4096, np.nan), np.full(4096, 5.0))
    assert bulk == old_encode(np.arange(7, 4103), np.ones(4096), np.full(4096, np.nan), np.full(4096, 5.0))
    roundtrip(np.array([2 ** 63 - 1, -2 ** 63, 2 ** 63 - 1]), np.ones(3), np.full(3, np.nan), np.ones(3))
    roundtrip(np.array([5, 5, 5, 5]), np.ones(4), np.full(4, np.nan), np.ones(4))  # stride 0
    roundtrip(np.array([9, 6, 3, 0]), np.ones(4), np.full(4, np.nan), np.ones(4))


def test_decoders_refuse_unknown_formats_and_flags():
    raw = bytearray(B.encode(np.arange(3), np.ones(3), np.full(3, np.nan), 1.7e9 + np.arange(3.0)))
    for fmt, flags in ((3, raw[1]), (1, raw[1]), (2, raw[1] | 0x40)):
        bad = bytearray(raw)
        bad[0], bad[1] = fmt, flags
        for decode in (B.decode, lambda r: B.decode_many([r])):
            with pytest.raises(ValueError):
                decode(bytes(bad))


int64s = st.integers(-2 ** 63, 2 ** 63 - 1)
floats = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def columns(draw):
    n = draw(st.integers(1, 300))
    kind = draw(st.sampled_from(["range", "stride", "any"]))
    start = draw(int64s)
    if kind == "any":
        steps = np.array(draw(st.lists(int64s, min_size=n, max_size=n)), np.int64)
    else:
        stride = 1 if kind == "range" else draw(st.integers(-10 ** 6, 10 ** 6))
        with np.errstate(over="ignore"):
            steps = (np.arange(n, dtype=np.int64) * np.int64(stride) + np.int64(start)).astype(np.int64)
    values = np.array(draw(st.lists(floats, min_size=n, max_size=n)))
    epochs = np.full(n, np.nan) if draw(st.booleans()) else np.array(draw(st.lists(floats, min_size=n, max_size=n)))
    tkind = draw(st.sampled_from(["clock", "ms", "const", "any"]))
    if tkind == "clock":  # a clock read per point, now and then stepping back or jumping
        base = draw(st.floats(1e8, 4e9))
        deltas = draw(st.lists(st.one_of(st.floats(-1e-3, 1e-2), st.floats(-1e4, 1e5)), min_size=n, max_size=n))
        times = base + np.cumsum(deltas)
    elif tkind == "ms":
        times = (draw(st.integers(0, 2 ** 44)) + np.cumsum(draw(
            st.lists(st.integers(0, 10 ** 6), min_size=n, max_size=n)))) / 1000.0
    elif tkind == "const":
        times = np.full(n, draw(floats))
    else:
        times = np.array(draw(st.lists(floats, min_size=n, max_size=n)))
    return steps, values, epochs, times


def test_an_epoch_nan_of_another_sign_or_payload_reads_back_as_written():
    # x86 gives inf - inf as -nan; only np.nan itself may be dropped as "no epochs"
    for nan in (-np.nan, np.float64(np.inf) - np.float64(np.inf), np.int64(0x7FF0000000000001).view(np.float64)):
        epochs = np.full(5, nan)
        raw = roundtrip(np.arange(5), np.ones(5), epochs, np.full(5, 1.0))
        assert not raw[1] & B.NO_EPOCHS
    assert roundtrip(np.arange(5), np.ones(5), np.full(5, np.nan), np.full(5, 1.0))[1] & B.NO_EPOCHS


@settings(max_examples=300, deadline=None)
@given(columns())
@example(cols=(np.array([0]), np.array([0.0]), np.array([-np.nan]), np.array([1.0e8])))
def test_any_block_reads_back_bit_for_bit(cols):
    raw = roundtrip(*cols)
    assert raw[0] == (B.FORMAT_2 if raw[1] & (B.TIME_DELTA | B.STEPS_STRIDE) else B.FORMAT)


# -- repositories -------------------------------------------------------------------------

def _track_loop(path, n=3 * B.CAPACITY + 100, **kw):
    with Run(repo=Repo(path, create=True), **kw) as run:
        for i in range(n):
            run.track(float(i) * 0.5, name="loss")
        for i in range(50):
            run.track(float(i), name="acc", step=i * 100)
    return run.id


def _numeric_blocks(repo):
    env = repo._env
    with env.read() as txn:
        return [(bytes(k), bytes(v)) for k, v in txn.cursor(db=env.dbs["blocks"]) if v[0] in (1, 2)]


def _format_record(repo):
    env = repo._env
    with env.read() as txn:
        return msgpack.unpackb(txn.get(b"format", db=env.dbs["meta"]))["format"]


def as_old_repository(path, fmt=2):
    """Turn ``path`` into what the previous runstore wrote: every numeric block in
    format 1 (through its encoder) and the repository marked ``fmt``. Done with
    py-lmdb alone, in a process of its own (LMDB opens a path once per process)."""
    env = lmdb.open(str(path), max_dbs=16)
    try:
        with env.begin(write=True) as txn:
            blocks = env.open_db(b"blocks", txn=txn, create=False)
            meta = env.open_db(b"meta", txn=txn, create=False)
            for key, raw in [(bytes(k), bytes(v)) for k, v in txn.cursor(db=blocks)]:
                if raw[0] in (1, 2):
                    txn.put(key, old_encode(*B.decode(raw)), db=blocks)
            txn.put(b"format", msgpack.packb({"format": fmt}), db=meta)
    finally:
        env.close()


def _in_child(call: str) -> str:
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_block_format as t; {call}"
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def _old_repository(path, n=3 * B.CAPACITY + 100, fmt=2) -> str:
    return _in_child(f"print(t._track_loop({str(path)!r}, n={n})); from runstore import Repo; "
                     f"Repo({str(path)!r})._env.close(); t.as_old_repository({str(path)!r}, {fmt})")


def _read_all(repo, run_id):
    run = repo.get_run(run_id)
    return {name: tuple(np.array(c) for c in (s.steps, s.values, s.timestamps))
            for name in ("loss", "acc") for s in [run.sequence(name)]}


def test_new_repositories_are_format_3_and_store_track_loops_small(tmp_path):
    run_id = _track_loop(tmp_path / "r")
    repo = Repo(tmp_path / "r")
    assert repo._env.format == 3 and _format_record(repo) == 3
    blocks = _numeric_blocks(repo)
    assert all(raw[0] == B.FORMAT_2 for _, raw in blocks)
    full = [raw for _, raw in blocks if len(raw) > 20000]
    assert len(full) == 3 and sum(map(len, full)) / (3 * B.CAPACITY) <= 10.1  # 8 B value + <= 2 B delta
    seq = repo.get_run(run_id).sequence("acc")
    assert seq.steps.tolist() == list(range(0, 5000, 100))
    assert np.all(np.diff(seq.timestamps) >= 0)
    assert repo.check() == []


def test_old_repository_opens_reads_unchanged_then_migrates_on_compact(tmp_path):
    path = tmp_path / "old"
    run_id = _old_repository(path)
    before = (path / "data.mdb").read_bytes()
    repo = Repo(path)
    assert repo._env.format == 2
    assert all(raw[0] == 1 for _, raw in _numeric_blocks(repo))
    want = _read_all(repo, run_id)
    assert want["acc"][0].tolist() == list(range(0, 5000, 100))
    assert repo.check() == []
    assert (path / "data.mdb").read_bytes() == before  # opening, reading, checking wrote nothing

    size_before, size_after = repo.compact()
    assert repo._env.format == 3 and _format_record(repo) == 3
    assert all(raw[0] == B.FORMAT_2 for _, raw in _numeric_blocks(repo))
    assert size_after < size_before
    got = _read_all(Repo(path), run_id)
    for name in want:
        assert all(same_bits(a, b) for a, b in zip(want[name], got[name])), name
    assert repo.check() == []
    assert _in_child(f"from runstore import Repo; print(len(Repo({str(path)!r}).get_run({run_id!r})"
                     ".sequence('loss').values))") == str(3 * B.CAPACITY + 100)


def test_appending_to_an_old_repository_marks_it_with_its_first_new_block(tmp_path):
    path = tmp_path / "old"
    run_id = _old_repository(path, n=10)
    repo = Repo(path)
    with Run(repo=repo, run_id=run_id) as run:
        run.track_many(np.ones(100), name="bulk")  # one timestamp, steps 0..99: format-1 blocks
    assert repo._env.format == 2 and _format_record(repo) == 2
    with Run(repo=repo, run_id=run_id) as run:
        for i in range(100):
            run.track(float(i), name="loss")
    assert repo._env.format == 3 and _format_record(repo) == 3
    assert repo.get_run(run_id).sequence("loss").values.tolist()[10:] == [float(i) for i in range(100)]
    assert repo.check() == []


def test_check_reports_new_blocks_in_a_repository_marked_older(tmp_path):
    path = tmp_path / "r"
    _in_child(f"t._track_loop({str(path)!r}, n=100)")
    # Mark it 2 while keeping its new blocks: what a writer that forgot the mark would leave.
    _in_child(f"import lmdb, msgpack; e = lmdb.open({str(path)!r}, max_dbs=16); "
              "txn = e.begin(write=True); txn.put(b'format', msgpack.packb({'format': 2}), "
              "db=e.open_db(b'meta', txn=txn, create=False)); txn.commit()")
    problems = Repo(path).check()
    assert any("block format 2 but the repository is marked format 2" in p for p in problems), problems


def test_an_older_runstore_refuses_a_format_3_repository_clearly(tmp_path):
    path = tmp_path / "r"
    _track_loop(path, n=100)
    # The previous runstore: formats 1 and 2 only (storage/env.py before issue 22).
    code = f"""
import runstore.storage.env as e
e.READABLE_FORMATS = (1, 2)
from runstore import Repo
try:
    Repo({str(path)!r})
except Exception as exc:
    print(type(exc).__name__, exc)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.startswith("RepositoryError") and "storage format 3" in out and "upgrade runstore" in out, out
