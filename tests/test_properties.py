"""Property tests: random interleavings of track, track_many, log_metrics and
flush over several names and contexts read back exactly, after close and after
resume (issue 2). Blocks are shrunk to 5 points so that examples cross block
boundaries and rewrite tails."""

import math
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstore import Repo, Run
from runstore.storage import blocks

NAMES = ["loss", "acc"]
CONTEXTS = [None, {"subset": "train"}, {"subset": "val", "fold": 1}]
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
steps = st.one_of(st.none(), st.integers(-5, 50))
epochs = st.one_of(st.none(), st.integers(0, 5))

op = st.one_of(
    st.tuples(st.just("track"), st.sampled_from(NAMES), st.sampled_from(range(3)), floats, steps, epochs),
    st.tuples(st.just("many"), st.sampled_from(NAMES), st.sampled_from(range(3)),
              st.lists(floats, min_size=0, max_size=12), st.booleans()),
    st.tuples(st.just("metrics"), st.sampled_from(range(3)), st.dictionaries(st.sampled_from(NAMES), floats, min_size=1), steps),
    st.tuples(st.just("flush")),
)

_REPO_DIR = tempfile.mkdtemp(prefix="runstore-prop-")


class Model:
    """The expected content: per (name, context index) a list of (step, value, epoch)."""

    def __init__(self):
        self.points: dict = {}

    def add(self, name, ctx, value, step, epoch):
        pts = self.points.setdefault((name, ctx), [])
        if step is None:
            step = pts[-1][0] + 1 if pts else 0
        pts.append((step, value, math.nan if epoch is None else float(epoch)))


def apply(run, model, ops):
    for o in ops:
        kind = o[0]
        if kind == "track":
            _, name, c, value, step, epoch = o
            run.track(value, name=name, step=step, epoch=epoch, context=CONTEXTS[c])
            model.add(name, c, value, step, epoch)
        elif kind == "many":
            _, name, c, values, explicit = o
            stp = list(range(100, 100 + len(values))) if explicit else None
            run.track_many(np.array(values, dtype=float), name=name, steps=stp, context=CONTEXTS[c])
            for i, v in enumerate(values):
                model.add(name, c, v, stp[i] if stp else None, None)
        elif kind == "metrics":
            _, c, metrics, step = o
            run.log_metrics(metrics, step=step, context=CONTEXTS[c])
            for name, v in metrics.items():
                model.add(name, c, v, step, None)
        else:
            run.flush()


def verify(repo, run_id, model):
    run = repo.get_run(run_id)
    stored = {(n, CONTEXTS.index(ctx or None) if ctx else 0): None for n, ctx in run.sequences()}
    assert set(stored) == {k for k, v in model.points.items() if v} | {k for k in stored}
    for (name, c), pts in model.points.items():
        seq = run.sequence(name, context=CONTEXTS[c])
        assert seq.steps.tolist() == [p[0] for p in pts]
        np.testing.assert_array_equal(seq.values, np.array([p[1] for p in pts], dtype=float))
        np.testing.assert_array_equal(seq.epochs, np.array([p[2] for p in pts], dtype=float))
        assert seq.count == len(pts)
        if pts:
            assert seq.last_step == pts[-1][0] and seq.first_step == pts[0][0]
            vals = np.array([p[1] for p in pts])
            finite = vals[~np.isnan(vals)]
            assert seq.min == (finite.min() if len(finite) else None)
            assert seq.max == (finite.max() if len(finite) else None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.lists(op, max_size=25), second=st.lists(op, max_size=25))
def test_interleavings_read_back_exactly(first, second):
    old = blocks.CAPACITY
    blocks.CAPACITY = 5
    try:
        repo = Repo(_REPO_DIR)
        model = Model()
        run = Run(repo=repo)
        apply(run, model, first)
        run.close()
        verify(repo, run.id, model)
        resumed = Run(repo=repo, run_id=run.id)
        apply(resumed, model, second)
        resumed.close()
        verify(repo, run.id, model)
        assert repo.check() == []
    finally:
        blocks.CAPACITY = old


@given(st.lists(floats, max_size=40), st.integers(1, 9))
@settings(max_examples=40, deadline=None)
def test_block_codec_round_trip(values, cap):
    n = len(values)
    rng = np.random.default_rng(n)
    cols = (
        np.cumsum(rng.integers(-2, 3, n)).astype(np.int64),
        np.array(values, dtype=float),
        np.where(rng.random(n) < 0.5, np.nan, rng.integers(0, 3, n)).astype(float),
        rng.random(n) * 1e9,
    )
    for start in range(0, max(n, 1), cap):
        part = tuple(c[start:start + cap] for c in cols)
        back = blocks.decode(blocks.encode(*part))
        for a, b in zip(part, back):
            np.testing.assert_array_equal(a, b)
