"""The query language: text -> AST (``parser``) -> resolved plan (``compiler``) ->
vectorised evaluation (``evaluate``) over cached column tables (``columns``).

``repo.query(text)`` and ``repo.query_sequences(text)`` call :func:`run_query`
and :func:`sequence_query`; docs/query.md is the language reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import contextlib

import numpy as np

from .columns import cache_for
from .compiler import compile_query, run_mask, seq_mask, warn_unknown_params

if TYPE_CHECKING:
    from ..collections import RunCollection, SequenceCollection

__all__ = ["compile_query", "run_query", "sequence_query"]


def _blank(text: Any) -> bool:
    if text is None:
        return True
    if not isinstance(text, str):
        raise TypeError(f"a query must be a string, got {type(text).__name__}")
    return not text.strip()


@contextlib.contextmanager
def _evaluation_errors(text: Any):
    """Arithmetic that overflows while evaluating is the query's problem, said as such."""
    from ..errors import QuerySyntaxError
    from .parser import syntax_error

    try:
        yield
    except QuerySyntaxError:
        raise
    except (OverflowError, RecursionError, ZeroDivisionError, ValueError) as exc:
        raise syntax_error(str(text), (1, 1), f"the query cannot be evaluated ({type(exc).__name__}: {exc})") from None


def run_query(repo: Any, text: str | None = None) -> "RunCollection":
    """The runs of ``repo`` matching ``text`` (every run for None or "")."""
    from .._runframe import Source
    from ..collections import RunCollection

    if _blank(text):
        table = cache_for(repo).runs()
        return RunCollection._from(Source(table, repo), np.arange(table.n))
    plan = compile_query(text)  # syntax errors before any storage access
    runs, seqs = cache_for(repo).tables(plan.uses_seq)
    warn_unknown_params(plan, runs, seqs)
    with _evaluation_errors(text):
        mask = run_mask(plan, runs, seqs)
    return RunCollection._from(Source(runs, repo), np.flatnonzero(mask))


def sequence_query(repo: Any, text: str | None = None) -> "SequenceCollection":
    """The sequences of ``repo`` matching ``text`` (every sequence for None or "")."""
    from ..collections import SequenceCollection

    plan = None if _blank(text) else compile_query(text)
    runs, seqs = cache_for(repo).tables(True)
    if plan is not None:
        warn_unknown_params(plan, runs, seqs)
    with _evaluation_errors(text):
        rows = np.arange(seqs.n_real) if plan is None else np.flatnonzero(seq_mask(plan, runs, seqs))
    return SequenceCollection(repo, seqs, rows)
