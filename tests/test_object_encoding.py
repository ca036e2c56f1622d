"""Where objects are encoded (issue 22, target 8): tiny ones by track(), the rest by
the flush before it takes the run's lock, each once however many flushes reach it."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from runstore import Distribution, Image, Repo, Run, Text
from runstore.tracking import object_sequence as _os
from runstore.tracking import objects as _objects


def test_tiny_objects_are_encoded_by_track_bigger_ones_before_the_flush_takes_the_lock(tmp_path, monkeypatch):
    repo = Repo(tmp_path / "r", flush_interval=3600)
    run = Run(repo=repo, system_metrics=False, capture_env=False)
    small = Image(np.full((8, 8, 3), 7, np.uint8))  # 192 bytes
    big = Image(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))  # 3 KB > 1 KiB
    text = Text("hello")
    run.track(small, name="thumbs", step=0)
    run.track(text, name="notes", step=0)
    run.track(big, name="thumbs", step=1)
    assert small._blobs is not None and small._pixels is None  # encoded, the pixel copy dropped
    assert text._blobs == {}
    assert big._blobs is None and big._pixels is not None  # left to the flush

    held = []
    real = _objects.Image._encode

    def encode(self):
        held.append(run._lock._is_owned())  # RLock: whether this (flushing) thread holds it
        return real(self)

    monkeypatch.setattr(_objects.Image, "_encode", encode)
    run.flush()
    assert held == [False]  # encoded once, before the flush took the run's lock
    assert big._pixels is None
    view = Repo(tmp_path / "r").get_run(run.id)
    imgs = view.sequence("thumbs")
    assert imgs.steps.tolist() == [0, 1]
    assert imgs[0].to_numpy().tolist() == np.full((8, 8, 3), 7, np.uint8).tolist()
    assert imgs[1].to_numpy().tolist() == big.to_numpy().tolist()
    assert view.sequence("notes")[0].text == "hello"
    run.close()


def test_two_flushes_reaching_one_object_encode_it_once(tmp_path, monkeypatch):
    """The flush thread's encode_ahead and a flush() call may meet on one object; a
    distribution's encode drops its input, so a second encode would find none."""
    repo = Repo(tmp_path / "r", flush_interval=3600)
    run = Run(repo=repo, system_metrics=False, capture_env=False)
    calls = []
    real = _objects.Distribution._encode

    def slow(self):
        calls.append(1)
        time.sleep(0.2)
        return real(self)

    monkeypatch.setattr(_objects.Distribution, "_encode", slow)
    dist = Distribution(np.arange(100_000.0))
    run.track(dist, name="weights", step=0)  # distributions are histogrammed off the training thread
    assert calls == []
    ahead = threading.Thread(target=_os.encode_ahead, args=(run,))
    ahead.start()
    time.sleep(0.05)  # encode_ahead is inside the encode
    with warnings_as_errors():
        run.flush()
    ahead.join()
    assert calls == [1]
    stored = Repo(tmp_path / "r").get_run(run.id).sequence("weights")[0]
    assert stored.counts.sum() == 100_000
    run.close()


class warnings_as_errors:
    """A dropped point is reported by a RuntimeWarning: make it fail the test."""

    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error", RuntimeWarning)

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def test_track_many_into_an_object_sequence_is_refused_and_queues_nothing(tmp_path):
    from runstore import RunstoreError

    repo = Repo(tmp_path / "r")
    run = Run(repo=repo, system_metrics=False, capture_env=False)
    run.track(Image(np.zeros((4, 4, 3), np.uint8)), name="img", step=0)
    with pytest.raises(RunstoreError, match="track_many"):  # was a TypeError (_extend's arguments)
        run.track_many([1.0, 2.0], name="img")
    run.close()
    seq = repo.get_run(run.id).sequence("img")
    assert seq.type == "image" and seq.count == 1
    assert repo.check() == []
