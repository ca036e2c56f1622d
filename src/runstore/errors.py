"""Every error runstore raises.

One root, :class:`RunstoreError`, so ``except runstore.RunstoreError`` catches
them all; each subclass also inherits the built-in exception a caller would
naturally expect (``KeyError`` for a missing run, ``ValueError`` for bad input,
``TypeError`` for a value of the wrong type, ``OSError`` for storage trouble).
Every message says what was wrong and what to do about it.
"""

from __future__ import annotations


class RunstoreError(Exception):
    """Root of every runstore error."""


class RunNotFoundError(RunstoreError, KeyError):
    """No run with that id exists in the repository."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class AmbiguousRunError(RunNotFoundError):
    """A short handle or id prefix names several runs; ``candidates`` holds their ids."""

    def __init__(self, message: str, candidates: list[str] | None = None) -> None:
        super().__init__(message)
        self.candidates = list(candidates or [])


class SequenceNotFoundError(RunstoreError, KeyError):
    """The run has no sequence with that name and context."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidValueError(RunstoreError, TypeError):
    """A tracked value, step or param has a type runstore cannot store."""


class InvalidContextError(RunstoreError, ValueError):
    """A sequence name or context is not valid."""


class InvalidParamError(RunstoreError, ValueError):
    """A param key or structure is not valid."""


class RunClosedError(RunstoreError, RuntimeError):
    """The run was closed; resume it with ``Run(repo=..., run_id=...)`` to write again."""


class RunLockedError(RunstoreError, RuntimeError):
    """Another live process holds the run's writer lease (two writers would lose
    each other's points); the message names its host and pid and how to take over.
    Also raised in a writer whose lease was taken over: it stops writing."""


class RepositoryError(RunstoreError, OSError):
    """The repository cannot be opened or written (not a repository, wrong format)."""


class StorageFullError(RepositoryError):
    """The disk is full; nothing committed was lost and pending data is kept in memory."""


class QuerySyntaxError(RunstoreError, ValueError):
    """A query could not be parsed; ``line`` and ``column`` point at the problem (1-based)."""

    def __init__(self, message: str, line: int = 1, column: int = 1, query: str = "") -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.query = query


class QueryNameError(QuerySyntaxError):
    """A query names something that does not exist (an unknown root name or method)."""


class ImportSourceError(RunstoreError, ValueError):
    """A source given to an importer cannot be read (missing, unreadable, not what it
    should be, or it needs a package that is not installed); nothing was written."""


class ParamChangedError(RunstoreError, ValueError):
    """A logged param already has a different value (params are immutable in the fluent API)."""


class ConfigError(RunstoreError, ValueError):
    """A configuration file, override or schema check failed."""


class ActiveRunError(RunstoreError, RuntimeError):
    """A fluent run is already active in this thread (pass ``nested=True`` or call ``end_run()`` first)."""


class MatchError(RunstoreError, ValueError):
    """Exactly one match was expected: ``RunCollection.get`` found no run or several,
    or a key such as ``"loss.last"`` names several sequences of one run."""


class SQLError(RunstoreError, ValueError):
    """A query given to ``repo.sql`` / ``runstore sql`` failed in DuckDB (syntax, an unknown
    table or column, a type error); the message is DuckDB's, plus the tables to use."""


class QueryWarning(UserWarning):
    """A query ran but names something no run has (a param path that may be a typo).

    Not an error: the query's result is kept (the term matches nothing); the
    warning names the key and the closest existing keys. The CLI prints it on stderr."""
