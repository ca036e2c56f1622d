"""The small tracking-layer hooks importers use to keep a run's original times."""

from __future__ import annotations

import numpy as np
import pytest

from runstore import InvalidParamError, InvalidValueError, Repo, Run


def test_backdated_run_keeps_its_times(repo):
    run = Run(repo=repo, name="old", created_at=1_600_000_000.25)
    run.track_many([1.0, 2.0], "loss", steps=[10, 20], timestamps=[1_600_000_001.5, 1_600_000_002.5])
    run.close("failed", ended_at=1_600_000_010.0)
    view = repo.get_run(run.id)
    assert view.created_at == 1_600_000_000.25 and view.ended_at == 1_600_000_010.0
    assert view.status == "failed" and view.duration == pytest.approx(9.75)
    seq = view.sequence("loss")
    assert seq.timestamps.tolist() == [1_600_000_001.5, 1_600_000_002.5]
    assert seq.summary["first_ts"] == 1_600_000_001.5
    # the id encodes the creation time, so the run sorts among runs of its time
    newer = Run(repo=repo, name="new")
    newer.close()
    assert run.id < newer.id and int(run.id[:12], 16) == 1_600_000_000_250


def test_still_running_run_has_no_end(repo):
    run = Run(repo=repo, created_at=1_700_000_000.0)
    run.close("running")
    view = repo.get_run(run.id)
    assert view.status == "running" and view.ended_at is None


def test_hooks_refuse_bad_input(repo):
    with pytest.raises(InvalidParamError, match="created_at"):
        Run(repo=repo, created_at="yesterday")
    with pytest.raises(InvalidParamError, match="created_at"):
        Run(repo=repo, created_at=-1.0)
    run = Run(repo=repo)
    with pytest.raises(InvalidValueError, match="timestamps of sequence 'x' must be finite: element 1"):
        run.track_many([1.0, 2.0], "x", timestamps=[1.0, np.nan])
    with pytest.raises(InvalidValueError, match="2 items, expected 3"):
        run.track_many([1.0, 2.0, 3.0], "x", timestamps=[1.0, 2.0])
    with pytest.raises(InvalidParamError, match="ended_at"):
        run.close(ended_at="now")
    with pytest.raises(InvalidParamError, match="contains '.'"):
        run.update_params({"a": 1, "b.c": 2})
    assert run.params == {}  # all or nothing
    run.close()
    assert len(repo) == 1


def test_update_params_in_one_go(repo):
    run = Run(repo=repo)
    run["kept"] = 1
    run.update_params({"lr": 0.1, "model": {"layers": 3}})
    run.close()
    assert Repo(repo.path).get_run(run.id).params == {"kept": 1, "lr": 0.1, "model": {"layers": 3}}


def test_track_objects_keeps_times_and_checks_everything_first(repo):
    from runstore import Image, Text

    run = Run(repo=repo, name="objs", created_at=1_600_000_000.0)
    run.track_objects([Text("a"), Text("b")], "notes", steps=[3, 7], timestamps=[1_600_000_001.0, 1_600_000_002.0])
    with pytest.raises(InvalidValueError, match="one type"):
        run.track_objects([Text("c"), Image(np.zeros((2, 2), np.uint8))], "notes", steps=[8, 9])
    with pytest.raises(InvalidValueError, match="element 1 is a float"):
        run.track_objects([Text("c"), 1.0], "notes", steps=[8, 9])
    with pytest.raises(InvalidValueError, match="finite"):
        run.track_objects([Text("c")], "notes", steps=[float("nan")])
    run.close("finished", ended_at=1_600_000_003.0)
    seq = repo.get_run(run.id).sequence("notes")
    assert [t.text for t in seq.values] == ["a", "b"]  # nothing of the refused calls
    assert seq.steps.tolist() == [3, 7] and seq.timestamps.tolist() == [1_600_000_001.0, 1_600_000_002.0]
