"""The query language: text -> AST (``parser``) -> resolved plan (``compiler``) ->
vectorised evaluation (``evaluate``) over cached column tables (``tables``) of typed vectors (``vectors``).

This layer selects rows (:func:`select_runs`, :func:`select_sequences`); the
collections wrapping them are the analysis layer's (``runstore.analysis``).
docs/query.md is the language reference.
"""

from __future__ import annotations

from typing import Any

import contextlib

import numpy as np

from .tables import cache_for
from .compiler import compile_query, run_mask, seq_mask, warn_unknown_params

__all__ = ["compile_query", "select_runs", "select_sequences"]


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


def select_runs(repo: Any, text: str | None = None) -> tuple[Any, np.ndarray]:
    """The run table of ``repo`` and the rows matching ``text`` (every row for None or "")."""
    if _blank(text):
        table = cache_for(repo).runs()
        return table, np.arange(table.n)
    plan = compile_query(text)  # syntax errors before any storage access
    runs, seqs = cache_for(repo).tables(plan.uses_seq)
    warn_unknown_params(plan, runs, seqs)
    with _evaluation_errors(text):
        mask = run_mask(plan, runs, seqs)
    return runs, np.flatnonzero(mask)


def select_sequences(repo: Any, text: str | None = None) -> tuple[Any, np.ndarray]:
    """The sequence table of ``repo`` and the rows matching ``text`` (every row for None or "")."""
    plan = None if _blank(text) else compile_query(text)
    runs, seqs = cache_for(repo).tables(True)
    if plan is not None:
        warn_unknown_params(plan, runs, seqs)
    with _evaluation_errors(text):
        rows = np.arange(seqs.n_real) if plan is None else np.flatnonzero(seq_mask(plan, runs, seqs))
    return seqs, rows
