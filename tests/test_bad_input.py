"""Bad input gives a clear error and leaves earlier data intact (issue 2)."""

import numpy as np
import pytest

from runstore import Run
from runstore.errors import InvalidContextError, InvalidParamError, InvalidValueError


@pytest.fixture
def run(repo):
    run = Run(repo=repo)
    run.track(1.0, name="loss", context={"subset": "train"})
    yield run
    run.close()
    assert run.repo.check() == []


def _intact(run):
    seq = run.sequence("loss", context={"subset": "train"})
    assert seq.values.tolist() == [1.0] and seq.steps.tolist() == [0]


@pytest.mark.parametrize("value", ["0.5", None, [1.0], {"a": 1}, np.array([1.0, 2.0]), object(), 10**400])
def test_bad_values(run, value):
    with pytest.raises(InvalidValueError) as info:
        run.track(value, name="loss", context={"subset": "train"})
    assert isinstance(info.value, TypeError)
    assert "'loss'" in str(info.value)
    with pytest.raises(InvalidValueError):
        run.sequence("loss", context={"subset": "train"}).append(value)
    _intact(run)


@pytest.mark.parametrize("step", ["1", 1.5, None.__class__, [1]])
def test_bad_steps(run, step):
    with pytest.raises(InvalidValueError, match="step"):
        run.track(0.5, name="loss", step=step, context={"subset": "train"})
    _intact(run)


def test_integral_float_and_numpy_steps_are_accepted(run):
    run.track(2.0, name="s", step=3.0)
    run.track(3.0, name="s", step=np.int32(4))
    assert run.sequence("s").steps.tolist() == [3, 4]


def test_bad_epoch(run):
    with pytest.raises(InvalidValueError, match="epoch"):
        run.track(0.5, name="loss", epoch="one", context={"subset": "train"})
    _intact(run)


@pytest.mark.parametrize("context", [["subset"], "train", {"a": [1, 2]}, {1: "x"}, {"a": object()}, {"a": {"b": {1, 2}}}])
def test_bad_contexts(run, context):
    with pytest.raises(InvalidContextError) as info:
        run.track(0.5, name="loss", context=context)
    assert isinstance(info.value, ValueError)
    _intact(run)


@pytest.mark.parametrize("name", ["", None, 3, b"loss"])
def test_bad_names(run, name):
    with pytest.raises(InvalidContextError, match="name"):
        run.track(0.5, name=name)
    _intact(run)


def test_bad_track_many(run):
    with pytest.raises(InvalidValueError):
        run.track_many(["a", "b"], name="loss", context={"subset": "train"})
    with pytest.raises(InvalidValueError):
        run.track_many(np.zeros((2, 2)), name="loss", context={"subset": "train"})
    with pytest.raises(InvalidValueError, match="expected 2"):
        run.track_many([1.0, 2.0], name="loss", steps=[1], context={"subset": "train"})
    with pytest.raises(InvalidValueError, match="integers"):
        run.track_many([1.0, 2.0], name="loss", steps=[1.5, 2], context={"subset": "train"})
    _intact(run)


def test_bad_params(run):
    with pytest.raises(InvalidParamError, match="'a.b'"):
        run["a.b"] = 1
    with pytest.raises(InvalidParamError, match="hparams.opt"):
        run["hparams"] = {"opt": object()}
    with pytest.raises(InvalidParamError):
        run["hparams"] = {"x": {1.5: 2}}
    assert "hparams" not in run
    run["ok"] = 1
    assert run.params == {"ok": 1}


def test_bad_log_metrics(run):
    with pytest.raises(InvalidValueError):
        run.log_metrics([("loss", 1.0)])
    with pytest.raises(ValueError):
        run.close(status="done")
