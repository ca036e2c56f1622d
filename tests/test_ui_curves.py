"""The explorer's server-side curve maths (runstore.ui._curves) against plain-Python references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runstore.ui import _curves


def ema_reference(values, weight):
    out, last, n = [], 0.0, 0
    for v in values:
        if not np.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1 - weight) * v
        n += 1
        out.append(last / (1 - weight ** n))
    return np.array(out)


@given(st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))), max_size=60),
       st.floats(0.01, 0.99))
@settings(max_examples=150, deadline=None)
def test_ema_matches_the_debiased_loop(values, weight):
    got = _curves.ema(np.array(values, dtype=np.float64), weight)
    np.testing.assert_allclose(got, ema_reference(values, weight), rtol=1e-9, atol=1e-6)


def test_ema_zero_weight_is_identity():
    y = np.array([1.0, 5.0, 2.0])
    assert _curves.ema(y, 0.0) is y


def naive_picks(seq, steps, y, w):
    keep = set()
    groups: dict = {}
    for i, (s, st_, v) in enumerate(zip(seq, steps, y)):
        groups.setdefault((s, st_ // w), []).append(i)
    for idx in groups.values():
        keep.update({idx[0], idx[-1]})
        vals = [y[i] for i in idx if np.isfinite(y[i])]
        if vals:
            keep.add(next(i for i in idx if y[i] == min(vals)))
            keep.add(next(i for i in idx if y[i] == max(vals)))
    return sorted(keep)


@given(st.lists(st.tuples(st.integers(1, 40), st.lists(st.one_of(st.floats(-10, 10), st.just(float("nan"))),
                                                     min_size=1, max_size=80)), min_size=1, max_size=5),
       st.sampled_from([1, 2, 4, 16]))
@settings(max_examples=150, deadline=None)
def test_pick_indices_keep_first_last_min_max_of_every_bucket(curves, w):
    seq, steps, y = [], [], []
    for k, (gap, vals) in enumerate(curves):
        seq += [k] * len(vals)
        steps += list(range(0, gap * len(vals), gap))
        y += vals
    seq, steps, y = np.array(seq, np.int32), np.array(steps, np.int64), np.array(y)
    got = _curves.pick_indices(seq, steps, y, w).tolist()
    assert got == (list(range(len(y))) if w == 1 else naive_picks(seq.tolist(), steps.tolist(), y.tolist(), w))


def test_bucket_width_is_a_power_of_two_and_bounds_the_points():
    assert _curves.bucket_width(900, 1000) == 1
    for span in (1001, 10_000, 123_457, 10**9):
        w = _curves.bucket_width(span, 1000)
        assert w & (w - 1) == 0
        assert span / w <= 250 < 2 * span / w  # the smallest width that fits


def test_complete_buckets_do_not_change_as_a_curve_grows():
    rng = np.random.default_rng(1)
    y = rng.normal(size=5000)
    w = 64
    before = _curves.pick_indices(np.zeros(3000, np.int32), np.arange(3000), y[:3000], w)
    after = _curves.pick_indices(np.zeros(5000, np.int32), np.arange(5000), y, w)
    cursor = (2999 // w) * w  # the start of the last, incomplete bucket
    assert before[before < cursor].tolist() == after[after < cursor].tolist()


def test_group_curves_mean_and_band():
    seq_group = np.array([0, 0, 1])
    seqs = np.array([0, 1, 2, 0, 1, 2])
    buckets = np.array([0, 0, 0, 1, 1, 1])
    mx = np.array([0.5, 0.5, 0.5, 1.5, 1.5, 1.5])
    my = np.array([1.0, 3.0, 5.0, 2.0, np.nan, 6.0])
    g, x, y, lo, hi, n = _curves.group_curves(seq_group, seqs, buckets, mx, my)
    assert g.tolist() == [0, 0, 1, 1]
    assert y.tolist() == [2.0, 2.0, 5.0, 6.0]
    assert lo.tolist() == [1.0, 2.0, 5.0, 6.0] and hi.tolist() == [3.0, 2.0, 5.0, 6.0]
    _, _, ys, lo, hi, _ = _curves.group_curves(seq_group, seqs, buckets, mx, my, band="std")
    assert lo[0] == pytest.approx(1.0) and hi[0] == pytest.approx(3.0)
