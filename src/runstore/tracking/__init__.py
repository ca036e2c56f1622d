"""Tracking: Repo, Run and Sequence, value validation, the flush thread and signals.

Sits on storage/ and below query/: nothing here imports an upper layer, except
the two facades that say so (Repo.query and friends, Run.get's key spelling).
"""

from .repo import Repo
from .run import Run
from .sequence import Sequence

__all__ = ["Repo", "Run", "Sequence"]
