"""What a metric value becomes when it is tracked: (name, context, number) points.

Shared by the pipelines' ``epoch_metrics`` and the runstore tracker, so a value is
accepted (or refused, with the same message) whichever way it arrives:

- a number, NumPy scalar, 0-d array or tensor (anything ``run.track`` takes);
- a dict of numbers: one sequence per key, the key in the context ``{"label": key}``
  (the Experiment Manager's per-label metrics);
- under ``Metric.CONFUSION``: a 2-d matrix, one sequence per cell with the context
  ``{"true": i, "pred": j}``;
- under ``Metric.CUSTOM``: a ``(name, value)`` pair or a list of them;
- untracked Metric members (NETWORK, DATA, LABELS, STATUS): nothing.
"""

from __future__ import annotations

import enum
import numbers
from typing import Any

import numpy as np

from ..errors import InvalidValueError
from .levels import Metric, metric_name

__all__ = ["Point", "metric_points", "scalar"]

Point = tuple[str, "dict | None", float]


def scalar(value: Any) -> float | None:
    """``value`` as a float when ``run.track`` would accept it (numbers, NumPy scalars,
    0-d arrays and tensors, anything whose ``.item()`` is a number), else None."""
    if isinstance(value, bool) or isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (str, bytes, dict, enum.Enum)):
        return None
    item = getattr(value, "item", None)
    if callable(item):
        size = getattr(value, "size", 1)
        size = size() if callable(size) else size  # torch: a method; NumPy: an int
        try:
            if int(np.prod(size)) != 1:
                return None
            got = item()
        except Exception:  # noqa: BLE001 - not a scalar, whatever the library says
            return None
        if isinstance(got, numbers.Real):
            return float(got)
    return None


def metric_points(key: Any, value: Any, owner: str = "") -> list[Point] | None:
    """The points for ``key: value``; None when the key is untracked. Raises
    InvalidValueError (naming ``owner``, the metric and the value's type) otherwise."""
    if isinstance(key, Metric) and not key.tracked:
        return None
    if key is Metric.CUSTOM:
        pairs = [value] if isinstance(value, tuple) else list(value) if isinstance(value, list) else None
        if not pairs or not all(isinstance(p, tuple) and len(p) == 2 for p in pairs):
            raise _untrackable(owner, "custom", value, "Metric.CUSTOM takes a (name, value) pair or a list of them")
        out: list[Point] = []
        for name, item in pairs:
            out.extend(metric_points(str(name), item, owner) or [])
        return out
    name = metric_name(key)
    number = scalar(value)
    if number is not None:
        return [(name, None, number)]
    if key is Metric.CONFUSION:
        matrix = np.asarray(getattr(value, "numpy", lambda: value)() if hasattr(value, "detach") else value)
        if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number):
            raise _untrackable(owner, name, value, "a confusion matrix is a 2-d array of numbers")
        return [(name, {"true": i, "pred": j}, float(matrix[i, j]))
                for i in range(matrix.shape[0]) for j in range(matrix.shape[1])]
    if isinstance(value, dict) and value:
        out = []
        for label, item in value.items():
            number = scalar(item)
            if number is None or not isinstance(label, (str, int, bool)):
                raise _untrackable(owner, f"{name}[{label!r}]", item,
                                   "per-label values are numbers keyed by str or int labels")
            out.append((name, {"label": label}, number))
        return out
    shape = getattr(value, "shape", None)
    advice = ("arrays are not tracked as epoch metrics (put a confusion matrix under Metric.CONFUSION); "
              "track a summary number") if shape is not None else \
        "metrics are tracked as numbers (or dicts of numbers, one sequence per label)"
    raise _untrackable(owner, name, value, advice)


def _untrackable(owner: str, name: str, value: Any, advice: str) -> InvalidValueError:
    what = type(value).__name__
    shape = getattr(value, "shape", None)
    if shape is not None:
        what += f" of shape {tuple(shape)}"
    prefix = f"{owner}: " if owner else ""
    return InvalidValueError(
        f"{prefix}metric {name!r} is a {what}, which cannot be tracked: {advice}; to only hand it to the "
        f"callbacks, declare it untracked (untracked_metrics = {{{name.split('[')[0]!r}, ...}}) or use an "
        "untracked Metric member (Metric.NETWORK, DATA, LABELS, STATUS)"
    )
