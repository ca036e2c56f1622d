"""storage/openblock.py: open blocks grown by many sequences' points in one
vectorised pass encode to exactly the bytes ``blocks.encode`` gives for the same
points, after every growth (issue 22, target 6)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstore.storage import blocks as B
from runstore.storage.openblock import OpenBlock, grow

_I64 = st.integers(-(1 << 63), (1 << 63) - 1)
_ODD_NANS = [np.float64(np.nan), -np.float64(np.nan), np.array([0x7FF0000000000001], np.int64).view(np.float64)[0]]


@st.composite
def _steps(draw, n: int) -> np.ndarray:
    kind = draw(st.sampled_from(["range", "stride", "irregular", "huge", "wrap", "const"]))
    start = draw(st.integers(-(1 << 53), 1 << 53))
    if kind == "range":
        return np.arange(n, dtype=np.int64) + start
    if kind == "stride":
        return np.arange(n, dtype=np.int64) * draw(st.integers(-1000, 1000)) + start
    if kind == "huge":
        return np.array(draw(st.lists(_I64, min_size=n, max_size=n)), np.int64)
    if kind == "wrap":  # stride 1 across 2**63 - 1 (int64 differences wrap)
        return (np.arange(n, dtype=np.uint64) + np.uint64((1 << 63) - 1 - draw(st.integers(0, n)))).view(np.int64)
    if kind == "const":
        return np.full(n, start, np.int64)
    return np.sort(np.array(draw(st.lists(st.integers(-1000, 10**6), min_size=n, max_size=n)), np.int64))


_FLOATS = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)


@st.composite
def _values(draw, n: int) -> np.ndarray:
    kind = draw(st.sampled_from(["ints", "floats", "nan"]))
    if kind == "ints":
        return np.array(draw(st.lists(st.integers(-(1 << 40), 1 << 40), min_size=n, max_size=n)), np.float64)
    if kind == "nan":
        return np.full(n, np.nan)
    return np.array(draw(st.lists(_FLOATS, min_size=n, max_size=n)), np.float64)


@st.composite
def _epochs(draw, n: int) -> np.ndarray:
    kind = draw(st.sampled_from(["absent", "absent", "given", "mixed", "odd_nan"]))
    if kind == "absent":
        return np.full(n, np.nan)
    if kind == "given":
        return np.array(draw(st.lists(st.integers(0, 100), min_size=n, max_size=n)), np.float64)
    if kind == "mixed":
        return np.array(draw(st.lists(st.one_of(st.just(float("nan")), st.floats(0, 10)), min_size=n, max_size=n)))
    e = np.full(n, np.nan)
    e[draw(st.integers(0, n - 1))] = draw(st.sampled_from(_ODD_NANS))
    return e


@st.composite
def _times(draw, n: int) -> np.ndarray:
    kind = draw(st.sampled_from(["track", "track", "gaps", "const", "bulk", "odd", "tiny", "any"]))
    base = draw(st.sampled_from([1.7e9, 1.0, 1e-300, 3e6, -1.7e9]))
    if kind == "track":  # microseconds apart
        return base + np.cumsum(np.array(draw(st.lists(st.floats(0, 1e-4), min_size=n, max_size=n))))
    if kind == "gaps":  # mostly small, a few long pauses (exceptions), some backwards
        steps = draw(st.lists(st.one_of(st.floats(0, 3e-5), st.floats(-1e-3, 600.0)), min_size=n, max_size=n))
        return base + np.cumsum(np.array(steps))
    if kind == "const":
        return np.full(n, base)
    if kind == "bulk":  # equal runs then a jump
        return np.repeat(np.array([base, base + 1.0]), [n // 2, n - n // 2])
    if kind == "odd":  # a zero, NaN, inf or a gap beyond int32 units
        t = base + np.arange(n) * 1e-6
        t[draw(st.integers(0, n - 1))] = draw(st.sampled_from([0.0, np.nan, np.inf, -np.inf, base + 1e6, -0.0]))
        return t
    if kind == "tiny":  # subnormals: the exponent bound
        return np.array(draw(st.lists(st.sampled_from([5e-324, 1e-323, 2e-308, 4.9e-324 * 3]), min_size=n,
                                      max_size=n)))
    return np.array(draw(st.lists(_FLOATS, min_size=n, max_size=n)), np.float64)


@st.composite
def _block(draw) -> tuple:
    n = draw(st.one_of(st.integers(1, 4), st.integers(1, 60)))
    if draw(st.integers(0, 9)) == 0:  # a full block, drawn from a seed (lists of 4,096 are slow to draw)
        return _full_block(draw(st.integers(0, 2**32 - 1)))
    return draw(_steps(n)), draw(_values(n)), draw(_epochs(n)), draw(_times(n))


def _full_block(seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    n = B.CAPACITY
    steps = np.arange(n, dtype=np.int64) * int(rng.integers(1, 3)) + int(rng.integers(0, 10**6))
    if rng.random() < 0.3:
        steps[int(rng.integers(0, n))] -= 7
    epochs = np.full(n, np.nan) if rng.random() < 0.5 else np.floor(np.arange(n) / 100.0)
    gaps = rng.exponential(10.0 ** rng.integers(-6, -1), n)
    gaps[rng.integers(0, n, int(rng.integers(0, 40)))] += rng.random() * 5  # pauses: exceptions
    return steps, rng.standard_normal(n), epochs, 1.7e9 + np.cumsum(gaps)


def _grow_all(blocks: list, cuts: list) -> None:
    """Grow open blocks round by round (each takes its next chunk, if any, in one
    grow() call with the others) and compare every block with encode after each."""
    opened = [OpenBlock() for _ in blocks]
    done = [0] * len(blocks)
    rounds = max(len(c) for c in cuts)
    for r in range(rounds):
        take = [i for i in range(len(blocks)) if r < len(cuts[i])]
        parts = [[c[done[i]:cuts[i][r]] for c in blocks[i]] for i in take]
        bounds = np.cumsum([0] + [len(p[1]) for p in parts])
        flat = [np.concatenate([p[c] for p in parts]) for c in range(4)]
        before = [opened[i].encode() if opened[i].n else None for i in take]
        # a growth that is thrown away (a transaction that failed) changes nothing
        grow([opened[i] for i in take], *[c[::-1].copy() for c in flat], bounds)
        assert [opened[i].encode() if opened[i].n else None for i in take] == before
        for i, blk in zip(take, grow([opened[i] for i in take], *flat, bounds)):
            opened[i] = blk
            done[i] = cuts[i][r]
            want = B.encode(*[c[:done[i]] for c in blocks[i]])
            assert blk.encode() == want, (i, r)
            cols = blk.columns()
            for c in range(4):
                assert cols[c].tobytes() == np.ascontiguousarray(blocks[i][c][:done[i]]).tobytes()


@st.composite
def _cuts(draw, n: int) -> list:
    k = draw(st.integers(1, min(n, 5)))
    return sorted(set(draw(st.lists(st.integers(1, n - 1), max_size=k - 1)) if n > 1 else []) | {n})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(_block(), min_size=1, max_size=8), st.data())
def test_grown_blocks_encode_as_encode(blocks, data):
    _grow_all(blocks, [data.draw(_cuts(len(b[1]))) for b in blocks])


def _full(kind: str) -> tuple:
    n = 200
    steps = np.arange(n, dtype=np.int64)
    if kind == "stride":
        steps = steps * 3 + 7
    elif kind == "irregular":
        steps = steps.copy()
        steps[150] = 5
    epochs = np.full(n, np.nan)
    if kind == "epochs":
        epochs[120] = 1.0
    times = 1.7e9 + np.cumsum(np.full(n, 2e-6))
    if kind == "pauses":
        times[50:] += 0.01
        times[100:] += 1.0
    if kind == "const":
        times = np.full(n, 5.0)
    if kind == "exponent":  # timestamps falling below 4.0: the delta unit halves (2**-50 to 2**-51)
        times = 4.0 + (100 - np.arange(n)) * 2.0**-40
    if kind == "exponent8":  # the same with differences of 100 units: int8 until the unit halves
        times = 4.0 + (100 - np.arange(n)) * 100 * 2.0**-50
    if kind == "zero":
        times = np.arange(n) * 1.0 - 100.0
    return steps, np.arange(n) * 0.5, epochs, times


def test_every_transition():
    """A block that starts as a range, a stride, no epochs, one timestamp or int8
    deltas and stops being one when later points arrive, chunk by chunk."""
    kinds = ["range", "stride", "irregular", "epochs", "pauses", "const", "exponent", "exponent8", "zero"]
    blocks = [_full(k) for k in kinds]
    _grow_all(blocks, [[1, 2, 3, 60, 101, 102, 151, 200]] * len(blocks))
    _grow_all(blocks, [[200]] * len(blocks))
    assert B._header(B.encode(*_full("exponent")))[0] & B.TIME_DELTA


def test_width_tie_and_subnormal_times():
    # 16 differences, 2 beyond int8 and none beyond int16: 32 bytes either way, int8 kept
    tie = 1.0 + np.cumsum(np.where(np.arange(17) % 8 == 1, 2.0**-52 * 1000, 2.0**-52))
    tie[0] = 1.0
    blocks = [(np.arange(17, dtype=np.int64), np.ones(17), np.full(17, np.nan), tie)]
    # near the subnormal range: a unit of 2**-1074 is still exact, 2**-1075 is not
    for t in ([2.0**-1022, 2.0**-1022 + 5 * 2.0**-1074], [2.0**-1023, 2.0**-1023 + 3 * 2.0**-1074], [5e-324, 1e-323]):
        blocks.append((np.arange(2, dtype=np.int64), np.ones(2), np.full(2, np.nan), np.array(t)))
    _grow_all(blocks, [[3, 17], [1, 2], [1, 2], [1, 2]])
    _grow_all(blocks, [[17], [2], [2], [2]])
    flags = [B._header(B.encode(*b))[0] & B.TIME_DELTA for b in blocks]
    assert flags == [B.TIME_DELTA, B.TIME_DELTA, 0, 0]
    assert B.encode(*blocks[0])[8 + 8 + 8 * 17 + 10] == 1  # the width byte: int8


def test_of_and_full_block():
    steps, values, epochs, times = _full("pauses")
    blk = OpenBlock.of((steps, values, epochs, times))
    assert blk.encode() == B.encode(steps, values, epochs, times)
    assert OpenBlock.of(B.empty()).n == 0
    full = [np.concatenate([c] * 21)[:B.CAPACITY] for c in _full("range")]
    full[0] = np.arange(B.CAPACITY, dtype=np.int64)
    full[3] = 1.7e9 + np.arange(B.CAPACITY) * 3e-6
    assert OpenBlock.of(tuple(full)).encode() == B.encode(*full)
