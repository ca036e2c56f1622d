import os

import pytest

from runstore import Repo

# Runs sample system metrics every 10 s by default (issue 16): a run that outlives that on a
# slow machine (the Experiment Manager's Quick Start in a subprocess did, under load) would
# hold system/* sequences its test never tracked. The sampler's own tests turn it on
# explicitly; subprocesses inherit this.
os.environ.setdefault("RUNSTORE_SYSTEM_METRICS", "0")


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "repo")


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 5 points, so that short tests cross block boundaries."""
    from runstore.storage import blocks

    monkeypatch.setattr(blocks, "CAPACITY", 5)
    return 5
