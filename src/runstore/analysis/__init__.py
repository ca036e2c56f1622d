"""Analysis: RunCollection, SequenceCollection, the key spelling of run.get, frames.

Built on query/ (which selects rows) and tracking/ (which reads runs):
:func:`run_query` and :func:`sequence_query` wrap the selected rows into
collections; ``repo.query`` and ``repo.query_sequences`` call them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .collections import RunCollection, SequenceCollection

__all__ = ["run_query", "sequence_query"]


def run_query(repo: Any, text: str | None = None) -> "RunCollection":
    """The runs of ``repo`` matching ``text`` (every run for None or "")."""
    from ..query import select_runs
    from .collections import RunCollection
    from .runframe import Source

    table, rows = select_runs(repo, text)
    return RunCollection._from(Source(table, repo), rows)


def sequence_query(repo: Any, text: str | None = None) -> "SequenceCollection":
    """The sequences of ``repo`` matching ``text`` (every sequence for None or "")."""
    from ..query import select_sequences
    # seqframe, not collections: a sequence query needs neither RunCollection nor the
    # key spelling (~100 KB of bytecode less on a fresh process's first query)
    from .seqframe import SequenceCollection

    seqs, rows = select_sequences(repo, text)
    return SequenceCollection(repo, seqs, rows)
