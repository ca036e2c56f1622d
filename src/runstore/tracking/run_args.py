"""Validation of ``Run``'s arguments, shared by a local run, a replica and the
server's remote run: each raises a runstore error naming the bad value before
anything is written or buffered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from . import environment as _environment, system_metrics as _system_metrics
from ..errors import InvalidParamError, InvalidValueError

if TYPE_CHECKING:
    from .run import Run


def _key_parts(key: Any) -> tuple:
    if isinstance(key, tuple):
        if not key or not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in key):
            raise KeyError(f"a tuple param key holds strings (and list indices), e.g. run['hparams', 'lr']; got {key!r}")
        return tuple(p for k in key for p in (k.split(".") if isinstance(k, str) else (k,)))
    if not isinstance(key, str):
        raise KeyError(f"a param key is a dotted string or a tuple of strings, got {key!r}")
    return tuple(key.split("."))


def _start_options(created_at: Any, system_metrics: Any, capture_env: Any) -> tuple[float | None, dict]:
    """The sampling interval and environment pieces a new or resumed run asks for,
    validated before anything is written (Run and RemoteRun). A backdated run
    (``created_at``) is an import: both default to off for it."""
    imported = created_at is not None
    interval = _system_metrics.interval_for(False if imported and system_metrics is None else system_metrics)
    return interval, _environment.options(False if imported and capture_env is None else capture_env)


def _opt_str(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidParamError(f"run {what} must be a string or None, got {type(value).__name__}")


def _tag_list(tags: Iterable[str] | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise InvalidParamError(f"tags must be non-empty strings, got {tag!r}")
        if tag not in out:
            out.append(tag)
    return out


def _parent_id(parent: "Run | str | None") -> str | None:
    if parent is None or isinstance(parent, str):
        return parent
    from .run_data import RunData  # Run's base (imported here: run.py imports this module)

    if isinstance(parent, RunData):
        return parent.id
    raise InvalidParamError(f"parent must be a Run, a run id or None, got {type(parent).__name__}")


def _numeric_array(values: Any, what: str, length: int | None = None, keep_ints: bool = False) -> np.ndarray:
    """A 1-D float64 array (int64/uint64 kept when ``keep_ints``) or InvalidValueError
    naming the first element that is not a real number (None, a string, a complex,
    a date): nothing is parsed or silently converted."""
    try:
        arr = np.asarray(values)
    except Exception as exc:  # ragged lists and the like
        raise InvalidValueError(f"{what} must be a 1-D array of numbers: {exc}") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise InvalidValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        if arr.dtype.kind == "O":
            for i, item in enumerate(arr):
                if isinstance(item, bool) or not isinstance(item, (int, float, np.integer, np.floating)):
                    raise InvalidValueError(
                        f"{what} must be real numbers: element {i} is a {type(item).__name__} ({item!r})"
                    )
                if isinstance(item, int) and not -(1 << 63) <= item < (1 << 64):
                    raise InvalidValueError(f"{what}: element {i} ({item}) is outside the int64/uint64 range")
            arr = arr.astype(np.float64)
        else:
            kind = {"U": "str", "S": "bytes", "c": "complex", "M": "datetime64", "m": "timedelta64"}.get(
                arr.dtype.kind, str(arr.dtype))
            raise InvalidValueError(
                f"{what} must be real numbers: element 0 is a {kind} ({arr[0]!r}); "
                "convert explicitly (e.g. np.asarray(x, dtype=float)) if that is what you mean"
            ) if len(arr) else InvalidValueError(f"{what} must be numbers, got dtype {arr.dtype}")
    if length is not None and len(arr) != length:
        raise InvalidValueError(f"{what} has {len(arr)} items, expected {length} (one per value)")
    if keep_ints and arr.dtype.kind in "iu":
        return arr
    return arr.astype(np.float64, copy=False) if arr.dtype.kind in "bf" else arr
