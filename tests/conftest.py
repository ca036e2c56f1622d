import pytest

from runstore import Repo


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "repo")


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 5 points, so that short tests cross block boundaries."""
    from runstore.storage import blocks

    monkeypatch.setattr(blocks, "CAPACITY", 5)
    return 5
