"""RunCollection and SequenceCollection: what queries return, and what analysis works on.

A RunCollection is a view: a column table of runs (shared with the query cache)
and an array of row numbers.  ``filter``, ``sort``, ``group_by``, ``to_numpy``
and ``to_arrow`` work on the table's columns; Run objects are only created when
you iterate, index, or pass a callable that needs them.

>>> runs = repo.query("run.experiment == 'mnist'")            # doctest: +SKIP
>>> best = runs.filter(hparams__lr=(1e-4, 1e-2)).sort("loss@subset=val.min")[0]  # doctest: +SKIP
>>> runs.group_by("hparams.model", count=len)                 # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Generic, Iterable, Iterator, TypeVar, overload

import numpy as np

from . import keys as _keys, runframe as _runframe
from .runframe import Source
from .seqframe import SequenceCollection
from ..errors import MatchError
from ..query.vectors import MISSING, display
from ..query.tables import RunTable, cache_for

__all__ = ["GroupBy", "RunCollection", "SequenceCollection"]

#: The config class of a typed collection (``runs.typed(Config)``); Any when untyped.
#: The default (PEP 696) is for type checkers only: typing_extensions' import was ~2 ms of
#: a fresh process's first query, and at run time the parameter works the same without it.
if TYPE_CHECKING:
    from typing_extensions import TypeVar as _TypeVarWithDefault

    C = _TypeVarWithDefault("C", default=Any)
else:
    C = TypeVar("C")
T = TypeVar("T")

if TYPE_CHECKING:
    from ..tracking.run import Run

    class TypedRun(Run, Generic[C]):
        """What a type checker sees for a run of ``RunCollection[C]``: ``run.cfg`` is a ``C``.
        At run time these are plain :class:`~runstore.Run` objects."""

        @property
        def cfg(self) -> C: ...  # type: ignore[override]


class RunCollection(Generic[C]):
    """An ordered collection of runs with HydraFlow-style analysis methods.

    Build one from a query (``repo.query(...)``) or from Run objects
    (``RunCollection([run1, run2])``). ``runs.typed(Config)`` is a
    ``RunCollection[Config]``: a type checker sees ``run.cfg`` as ``Config``.
    """

    def __init__(self, runs: Iterable[Any] = ()) -> None:
        src, rows = _source_for(list(runs))
        self._src, self._rows = src, rows

    @classmethod
    def _from(cls, src: Source, rows: np.ndarray) -> RunCollection[Any]:
        self = cls.__new__(cls)
        self._src, self._rows = src, np.asarray(rows, dtype=np.int64)
        return self

    def _derive(self, rows: np.ndarray) -> RunCollection[C]:
        return RunCollection._from(self._src, rows)

    # -- sequence protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[TypedRun[C]]:
        run = self._src.run
        for row in self._rows.tolist():
            yield run(row)

    @overload
    def __getitem__(self, index: int) -> TypedRun[C]: ...

    @overload
    def __getitem__(self, index: slice) -> RunCollection[C]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return self._derive(self._rows[index])
        if isinstance(index, (int, np.integer)):
            return self._src.run(int(self._rows[index]))
        raise TypeError(f"RunCollection indices must be integers or slices, not {type(index).__name__}")

    def __add__(self, other: RunCollection) -> RunCollection:
        if not isinstance(other, RunCollection):
            return NotImplemented
        if other._src is self._src:
            return self._derive(np.concatenate([self._rows, other._rows]))
        joined = RunCollection(list(self) + list(other))
        a, b = self._src, other._src
        if a.cfg_type is b.cfg_type and a.impl_factory is b.impl_factory:  # keep a shared typing
            joined._src.cfg_type, joined._src.impl_factory = a.cfg_type, a.impl_factory
        return joined

    def __bool__(self) -> bool:
        return len(self._rows) > 0

    def __contains__(self, run: Any) -> bool:
        rid = getattr(run, "id", run)
        return any(self._src.table.ids[r] == rid for r in self._rows.tolist())

    @property
    def ids(self) -> list[str]:
        ids = self._src.table.ids
        return [ids[r] for r in self._rows.tolist()]

    def __repr__(self) -> str:
        return _repr_table(self)

    # -- typed access ------------------------------------------------------------------
    def typed(self, cfg_type: type[T]) -> RunCollection[T]:
        """Runs whose ``run.cfg`` is an OmegaConf structured config of ``cfg_type`` (a dataclass);
        the collection is a ``RunCollection[cfg_type]`` for a type checker."""
        src = Source(self._src.table, self._src.repo, cfg_type, self._src.impl_factory)
        return RunCollection._from(src, self._rows)

    def with_impl(self, factory: Callable) -> RunCollection[C]:
        """Runs whose ``run.impl`` is ``factory(artifacts_dir)`` or ``factory(artifacts_dir, cfg)``, built lazily once."""
        src = Source(self._src.table, self._src.repo, self._src.cfg_type, factory)
        return RunCollection._from(src, self._rows)

    # -- selection ---------------------------------------------------------------------
    def _mask(self, criteria: tuple, kw: dict) -> np.ndarray:
        src, rows = self._src, self._rows
        n = len(rows)
        mask = np.ones(n, dtype=bool)
        pairs: list[tuple[str, Any]] = []
        predicates: list[Callable] = []
        for crit in criteria:
            if isinstance(crit, str):
                mask &= _query_mask(src, rows, crit)
            elif isinstance(crit, tuple) and len(crit) == 2 and isinstance(crit[0], str):
                pairs.append(crit)
            elif isinstance(crit, dict):
                pairs.extend(crit.items())
            elif isinstance(crit, (np.ndarray, list)) and _is_mask(crit, n):
                mask &= np.asarray(crit, dtype=bool)
            elif callable(crit):
                predicates.append(crit)
            else:
                raise TypeError(
                    f"unsupported filter criterion {crit!r}: use key=value, ('dotted.key', value), "
                    f"a query string, a callable taking a run or a boolean mask of {n} values"
                )
        for key, value in kw.items():
            if key == "predicate":
                predicates.append(value)
            else:
                pairs.append((key.replace("__", "."), value))
        for key, value in pairs:  # every key is looked up, so a typo raises even after an empty match
            col = _runframe.key_column(src, rows, key)
            mask &= _runframe.criterion_mask(col, value)
        for fn in predicates:
            for i in np.flatnonzero(mask).tolist():
                mask[i] = bool(fn(src.run(int(rows[i]))))
        return mask

    def filter(self, *criteria: Any, **kw: Any) -> RunCollection[C]:
        """Runs matching every criterion (AND).

        ``filter(model="lstm")`` equality; ``filter(lr=(1e-4, 1e-2))`` inclusive range;
        ``filter(model=["lstm", "gru"])`` any of; ``filter(("model.hidden", 512))`` or
        ``filter(model__hidden=512)`` dotted keys; ``filter(predicate=fn)`` or ``filter(fn)``;
        ``filter("run.hparams.lr < 0.01")`` a query; ``filter(mask)`` a boolean array or
        list with one value per run (e.g. ``runs.to_numpy("loss.last") < 0.1``).  A stored list is compared with a list
        or tuple criterion by equality."""
        return self._derive(self._rows[self._mask(criteria, kw)])

    def exclude(self, *criteria: Any, **kw: Any) -> RunCollection[C]:
        """The runs ``filter`` with the same criteria would drop."""
        return self._derive(self._rows[~self._mask(criteria, kw)])

    def get(self, *criteria: Any, **kw: Any) -> TypedRun[C]:
        """The only run matching the criteria; MatchError (a ValueError) if none or several do."""
        found = self.filter(*criteria, **kw)
        if len(found) != 1:
            raise MatchError(_match_message(len(found), criteria, kw, "exactly one"))
        return found[0]

    def try_get(self, *criteria: Any, **kw: Any) -> TypedRun[C] | None:
        """Like ``get`` but None when nothing matches (still an error for several)."""
        found = self.filter(*criteria, **kw)
        if len(found) > 1:
            raise MatchError(_match_message(len(found), criteria, kw, "at most one"))
        return found[0] if len(found) else None

    def first(self, *criteria: Any, **kw: Any) -> TypedRun[C]:
        found = self.filter(*criteria, **kw)
        if not len(found):
            raise MatchError(_match_message(0, criteria, kw, "at least one"))
        return found[0]

    def last(self, *criteria: Any, **kw: Any) -> TypedRun[C]:
        found = self.filter(*criteria, **kw)
        if not len(found):
            raise MatchError(_match_message(0, criteria, kw, "at least one"))
        return found[-1]

    def sort(self, *keys: str, reverse: bool = False) -> RunCollection[C]:
        """Sorted by ``keys`` (first primary); runs missing a key go last, also with ``reverse``."""
        if not keys:
            return self._derive(self._rows[::-1] if reverse else self._rows)
        cols = [_runframe.key_column(self._src, self._rows, k) for k in keys]
        return self._derive(self._rows[_runframe.sort_order(cols, reverse)])

    # -- values ------------------------------------------------------------------------
    def to_list(self, key: str, default: Any = _keys.NO_DEFAULT) -> list:
        """``[run.get(key, default) for run in runs]``, computed from columns."""
        col = _runframe.key_column(self._src, self._rows, key, check=default is _keys.NO_DEFAULT)
        values = col.to_pylist(MISSING)
        for i, v in enumerate(values):
            if v is MISSING:
                if default is _keys.NO_DEFAULT:
                    run_id = self._src.table.ids[self._rows[i]]
                    raise KeyError(
                        f"run {run_id} has no key {key!r}; pass default=... (e.g. default=None) "
                        "to get a value for runs without it"
                    )
                values[i] = default(self[i]) if callable(default) else default
        return values

    def to_numpy(self, key: str, default: Any = _keys.NO_DEFAULT) -> np.ndarray:
        """The values of ``key`` as an array (float64/int64 for numbers, object otherwise)."""
        col = _runframe.key_column(self._src, self._rows, key, check=default is _keys.NO_DEFAULT)
        if col.kinds() in (["int"], ["float"]) and col.num_mask.all():
            return (col.ints if col.ints is not None else col.num).copy()
        values = self.to_list(key, default)
        kinds = {type(v) for v in values}
        if kinds <= {int, float} and kinds:
            return np.asarray(values, dtype=np.float64 if float in kinds else np.int64)
        if kinds == {str} or kinds == {bool}:
            return np.asarray(values)
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    def unique(self, key: str) -> np.ndarray:
        """Distinct values of ``key`` in sort order, as a NumPy array (as HydraFlow);
        runs without the key are skipped."""
        return _array(self._unique(key))

    def _unique(self, key: str) -> list:
        col = _runframe.key_column(self._src, self._rows, key)
        sub = col.take(np.flatnonzero(col.present()))
        rank, _ = _runframe.ranks(sub)
        _, first = np.unique(rank, return_index=True)
        return sub.take(first).to_pylist()

    def n_unique(self, key: str) -> int:
        return len(self._unique(key))

    def to_series(self, key: str, default: Any = _keys.NO_DEFAULT, *, name: str | None = None) -> Any:
        """The values of ``key`` as a polars Series named ``name`` (default: the key)."""
        pl = _require("polars")
        from ..query.vectors import Column

        values = self.to_list(key, default)
        return pl.Series(name or key, pl.from_arrow(Column.from_values(values).to_arrow()))

    # -- HydraFlow's collection helpers ------------------------------------------------
    @staticmethod
    def concat(*collections: RunCollection[C]) -> RunCollection[C]:
        """One collection with the runs of all of them, in order (``RunCollection.concat(a, b)``)."""
        if not collections:
            return RunCollection([])
        out = collections[0]
        for other in collections[1:]:
            out = out + other
        return out

    def map(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> list[T]:
        """``[fn(run, *args, **kwargs) for run in runs]``."""
        return [fn(run, *args, **kwargs) for run in self]

    def sample(self, n: int, seed: int | None = None) -> RunCollection[C]:
        """``n`` runs drawn without replacement, in collection order (reproducible with ``seed``)."""
        if not isinstance(n, (int, np.integer)) or not 0 <= n <= len(self):
            raise ValueError(f"cannot sample {n!r} runs from a collection of {len(self)}")
        picked = np.sort(np.random.default_rng(seed).choice(len(self._rows), size=int(n), replace=False))
        return self._derive(self._rows[picked])

    def shuffle(self, seed: int | None = None) -> RunCollection[C]:
        """The runs in a random order (reproducible with ``seed``)."""
        return self._derive(self._rows[np.random.default_rng(seed).permutation(len(self._rows))])

    # -- tables ------------------------------------------------------------------------
    def to_arrow(self, *keys: str | tuple[str, Any], defaults: dict[str, Any] | None = None,
                 **callables: Callable) -> Any:
        """A pyarrow Table, one row per run.

        No arguments: id, name, experiment, status, tags, created_at, ended_at and every
        param as a dotted column (``hparams.lr``).  ``keys`` are anything ``run.get``
        accepts; each keyword is a callable taking a run and returning a value (a column
        named by the keyword) or a dict (one column per key). A key may be a pair
        ``("key", default)``, and ``defaults={"key": default}`` gives defaults by name, for
        runs without the key (a callable default is called with the run)."""
        names, merged = _keys_and_defaults(keys, defaults)
        return _runframe.build_arrow(self._src, self._rows, names, callables, merged)

    def to_pandas(self, *keys: str | tuple[str, Any], defaults: dict[str, Any] | None = None,
                  **callables: Callable) -> Any:
        _require("pandas")
        return self.to_arrow(*keys, defaults=defaults, **callables).to_pandas()

    def to_polars(self, *keys: str | tuple[str, Any], defaults: dict[str, Any] | None = None,
                  **callables: Callable) -> Any:
        pl = _require("polars")
        return pl.from_arrow(self.to_arrow(*keys, defaults=defaults, **callables))

    def to_frame(self, *keys: str | tuple[str, Any], defaults: dict[str, Any] | None = None,
                 **callables: Callable) -> Any:
        """A polars DataFrame (HydraFlow's ``to_frame``); same arguments as ``to_arrow``."""
        return self.to_polars(*keys, defaults=defaults, **callables)

    def group_by(self, *keys: str, **aggs: Callable) -> Any:
        """Groups of runs by the values of ``keys``.

        Without aggregations: a dict from the key value (a scalar for one key, a tuple for
        several; lists become tuples) to a RunCollection, in order of first appearance.
        With ``name=callable`` aggregations (each taking a group's RunCollection): a polars
        DataFrame with one row per group (``group_by_arrow`` gives a pyarrow Table)."""
        if aggs:
            pl = _require("polars")
            return pl.from_arrow(self.group_by_arrow(*keys, **aggs))
        return self._groups(keys)

    def _groups(self, keys: tuple) -> GroupBy[C]:
        if not keys:
            raise TypeError("group_by() needs at least one key")
        cols = [_runframe.key_column(self._src, self._rows, k) for k in keys]
        return GroupBy(keys, {key: self._derive(self._rows[idx]) for key, idx in _runframe.group_rows(cols)})

    def group_by_arrow(self, *keys: str, **aggs: Callable) -> Any:
        """``group_by`` with aggregations, as a pyarrow Table."""
        return self._groups(keys).agg_arrow(**aggs)


class GroupBy(dict, Generic[C]):
    """What ``group_by(keys)`` returns: a dict from the group's key value to its
    RunCollection, plus HydraFlow's ``agg``."""

    def __init__(self, keys: tuple, groups: dict) -> None:
        super().__init__(groups)
        self.keys_ = tuple(keys)

    def agg(self, *keys: str, **aggs: Callable[[RunCollection[C]], Any]) -> Any:
        """A polars DataFrame, one row per group: the group keys, then for each ``key``
        the list of its values in the group, then each ``name=fn(group)``."""
        pl = _require("polars")
        return pl.from_arrow(self.agg_arrow(*keys, **aggs))

    def agg_arrow(self, *keys: str, **aggs: Callable) -> Any:
        """``agg`` as a pyarrow Table."""
        import pyarrow as pa

        from ..query.vectors import Column

        funcs: dict[str, Callable] = {k: (lambda g, k=k: g.to_list(k, default=None)) for k in keys}
        for name, fn in aggs.items():
            if name in funcs:
                raise ValueError(f"{name!r} is given both as a key and as an aggregation")
            funcs[name] = fn
        group_keys = self.keys_
        data: dict[str, list] = {k: [] for k in group_keys}
        for name in funcs:
            if name in data:
                raise ValueError(f"aggregation {name!r} has the name of a group key")
            data[name] = []
        for gkey, group in self.items():
            values = gkey if len(group_keys) > 1 else (gkey,)
            for k, v in zip(group_keys, values):
                data[k].append(list(v) if isinstance(v, tuple) else v)
            for name, fn in funcs.items():
                data[name].append(_runframe._plain(fn(group)))
        return pa.table({k: Column.from_values(v).to_arrow() for k, v in data.items()})


# -- helpers ---------------------------------------------------------------------------------
def _is_mask(crit: Any, n: int) -> bool:
    arr = np.asarray(crit)
    if arr.dtype != bool or arr.shape != (n,):
        raise TypeError(
            f"a filter mask must hold one bool per run ({n}), got {arr.dtype} of shape {arr.shape}"
        )
    return True


def _array(values: list) -> np.ndarray:
    """Numbers as float64/int64, strings as str, anything else as object."""
    kinds = {type(v) for v in values}
    if kinds and kinds <= {int, float}:
        return np.asarray(values, dtype=np.float64 if float in kinds else np.int64)
    if kinds in ({str}, {bool}):
        return np.asarray(values)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _keys_and_defaults(keys: tuple, defaults: dict | None) -> tuple[tuple, dict]:
    names: list[str] = []
    merged = dict(defaults or {})
    for key in keys:
        if isinstance(key, tuple):
            if len(key) != 2 or not isinstance(key[0], str):
                raise TypeError(f"a key with a default is a pair ('key', default), got {key!r}")
            names.append(key[0])
            merged[key[0]] = key[1]
        else:
            names.append(key)
    return tuple(names), merged


def _source_for(runs: list) -> tuple[Source, np.ndarray]:
    """Prefer the repository's cached table (vectorised everything); fall back to a table
    built from the Run objects when they span repositories or are not all committed."""
    if runs:
        repo = runs[0].repo
        if all(r.repo == repo for r in runs):
            table = cache_for(repo).runs()
            rows = [table.index.get(r.id, -1) for r in runs]
            if min(rows) >= 0:
                src = Source(table, repo)
                for row, run in zip(rows, runs):
                    src.runs.setdefault(row, run)  # iteration gives back the caller's objects
                return src, np.asarray(rows, dtype=np.int64)
    table = RunTable.from_runs(runs)
    src = Source(table, runs[0].repo if runs else None)
    src.runs.update(enumerate(runs))
    return src, np.arange(len(runs), dtype=np.int64)


def _query_mask(src: Source, rows: np.ndarray, text: str) -> np.ndarray:
    from ..query.tables import SeqTable
    from ..query.compiler import compile_query, run_mask

    plan = compile_query(text)
    table = src.table
    seqs = None
    if plan.uses_seq:
        if src.repo is None or (table.runs is not None and any(r.repo != src.repo for r in table.runs)):
            raise ValueError("seq.* conditions need runs of one repository")
        current, seqs = cache_for(src.repo).tables(True)
        if seqs.run_table is not table:
            seqs = SeqTable(seqs.base, table)
    return run_mask(plan, table, seqs)[rows]


def _match_message(count: int, criteria: tuple, kw: dict, expected: str) -> str:
    parts = [repr(c) for c in criteria] + [f"{k}={v!r}" for k, v in kw.items()]
    what = ", ".join(parts) or "(no criteria)"
    if count == 0:
        return f"no run matches {what}; expected {expected}"
    return f"{count} runs match {what}, expected {expected}"


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"this needs {module}, which is not installed: pip install 'runstore[{module}]' "
            f"(or use to_arrow(), which needs nothing extra)"
        ) from None


def _repr_table(runs: RunCollection, limit: int = 8) -> str:
    n = len(runs)
    head = f"RunCollection({n} run{'s' if n != 1 else ''})"
    if n == 0:
        return head
    src, rows = runs._src, runs._rows[:limit]
    table = src.table
    columns = [("id", "id"), ("name", "name"), ("experiment", "experiment"), ("status", "status")]
    varying, constant = _params_by_variation(table, runs._rows)
    columns += [(".".join(map(str, p)), p) for p in (varying[:4] or [p for p, _ in constant[:3]])]
    cells = []
    for title, what in columns:
        col = table.attr(what) if isinstance(what, str) else table.param(what)
        values = col.take(rows).to_pylist(MISSING)
        texts = ["" if v is MISSING or v is None else display(v) for v in values]
        texts = [t if len(t) <= 24 else t[:21] + "..." for t in texts]
        cells.append([title] + texts)
    widths = [max(len(t) for t in col) for col in cells]
    lines = [head]
    for i in range(len(rows) + 1):
        lines.append("  " + "  ".join(col[i].ljust(w) for col, w in zip(cells, widths)).rstrip())
    if n > limit:
        lines.append(f"  ... {n - limit} more")
    if varying and constant and n > 1:
        same = ", ".join(f"{'.'.join(map(str, p))}={display(v)}" for p, v in constant)
        lines.append(f"  same in all {n}: {same if len(same) <= 100 else same[:97] + '...'}")
    return "\n".join(lines)


def _params_by_variation(table: Any, rows: np.ndarray, sample: int = 2000) -> tuple[list, list]:
    """(paths of the params whose values differ across the rows, most distinct values first;
    (path, value) of those that are the same in every row), each group in table order."""
    rows = rows[:sample]
    varying, constant = [], []
    for i, path in enumerate(table.param_paths()):
        values = table.param(path).take(rows).to_pylist(MISSING)
        distinct = len({repr(v) for v in values})
        if distinct > 1:
            varying.append((-distinct, i, path))
        elif values and values[0] is not MISSING:
            constant.append((path, values[0]))
    return [path for _, _, path in sorted(varying)], constant
