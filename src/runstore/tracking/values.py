"""Validation and normalisation of what users hand to a run.

The hot path of ``Run.track`` accepts floats and ints without calling anything
here; these functions are the slow paths that decide about everything else,
and they produce the error messages.
"""

from __future__ import annotations

import datetime as _dt
import enum
import math
from typing import Any

from ..errors import InvalidContextError, InvalidParamError, InvalidValueError

_SCALARS = (str, int, float, bool, type(None))

# Deeper nesting than this is refused: msgpack's own limit (and the recursion of
# every reader of params: run.params, to_arrow, show, export) broke whole
# repositories at depth 500.
MAX_DEPTH = 100
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1  # what msgpack can encode


def _scalar_problem(value: Any, *, nan: bool = True) -> str | None:
    """Why ``value`` (a scalar) cannot be stored, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"the string {value!r} holds a lone surrogate (not valid Unicode)"
    elif isinstance(value, int) and not isinstance(value, bool):
        if not _INT_MIN <= value <= _INT_MAX:
            return f"the integer {value} is outside the storable range (int64 / uint64)"
    elif not nan and isinstance(value, float) and value != value:
        return "NaN never equals itself (every call would make a new sequence)"
    return None


# -- tracked values -------------------------------------------------------------
def describe(name: str, context: dict | None) -> str:
    return f"sequence {name!r}" + (f" with context {context}" if context else "")


def coerce_value(value: Any, name: str, context: dict | None) -> float:
    """A tracked value as a float, or InvalidValueError naming the sequence."""
    if isinstance(value, (int, float)):  # bool and int/float subclasses
        return _as_float(value, name, context)
    if isinstance(value, enum.Enum):
        raise InvalidValueError(
            f"cannot track the enum member {value!r} in {describe(name, context)}: track a number; "
            "an Enum is accepted as the *name* of a metric, not as its value"
        )
    item = getattr(value, "item", None)
    if callable(item):  # NumPy scalars and 0-d arrays, torch / jax scalars
        try:
            got = item()
        except (ValueError, TypeError, RuntimeError):
            got = None  # e.g. an array with several elements: reported below
        if isinstance(got, (int, float)):
            return _as_float(got, name, context)
    what = type(value).__name__
    shape = getattr(value, "shape", None)
    if shape is not None:
        try:
            what += f" of shape {tuple(shape)}"
        except TypeError:
            pass
        advice = (f"track() takes one number; for an array of points use "
                  f"run.track_many(values, name={name!r}, steps=...)")
    else:
        advice = ("a tracked value must be a number (int, float, bool, a NumPy scalar, a 0-d array "
                  "or anything with .item()); use track_many() for arrays")
    raise InvalidValueError(
        f"cannot track a {what} in {describe(name, context)}: {advice}. Nothing tracked before was affected"
    )


def metric_name(name: Any) -> Any:
    """An Enum member names a metric by its value (by its name when the value is not a
    string), as the Experiment Manager's ``Metric.TRAIN_LOSS`` does; other names pass."""
    if isinstance(name, enum.Enum):
        return name.value if isinstance(name.value, str) else name.name
    return name


def _as_float(value: float | int, name: str, context: dict | None) -> float:
    try:
        return float(value)
    except OverflowError:
        raise InvalidValueError(
            f"{value} is too large for a float64 in {describe(name, context)}; "
            "nothing tracked before was affected"
        ) from None


def coerce_step(step: Any, name: str, context: dict | None, what: str = "step") -> int:
    """An exact int64 step, or InvalidValueError (floats with a fraction, NaN, out of range)."""
    got = _step_int(step)
    if got is not None:
        if -(1 << 63) <= got < (1 << 63):
            return got
        raise InvalidValueError(
            f"{what} {got} of {describe(name, context)} is outside the int64 range (-2**63 .. 2**63-1)"
        )
    raise InvalidValueError(
        f"{what} must be an integer, got {step!r} ({type(step).__name__}) for {describe(name, context)}"
    )


def _step_int(step: Any) -> int | None:
    if isinstance(step, bool):
        return None
    if isinstance(step, int):
        return int(step)
    if isinstance(step, float) and step.is_integer():
        return int(step)
    item = getattr(step, "item", None)
    if callable(item):
        try:
            v = item()
        except (ValueError, TypeError):
            return None
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
    return None


# -- names and contexts -----------------------------------------------------------
def check_name(name: Any) -> str:
    if isinstance(name, enum.Enum):
        name = metric_name(name)
    if not isinstance(name, str) or not name:
        raise InvalidContextError(f"a sequence name must be a non-empty string, got {name!r}")
    problem = _scalar_problem(name)
    if problem:
        raise InvalidContextError(f"cannot use {name!r} as a sequence name: {problem}")
    return name


def canonical_context(context: Any, name: str = "?", depth: int = 0) -> dict:
    """A validated copy of ``context`` with keys sorted at every level."""
    if context is None:
        return {}
    if depth >= MAX_DEPTH:
        raise InvalidContextError(
            f"the context of sequence {name!r} is nested deeper than {MAX_DEPTH} levels; flatten it"
        )
    if not isinstance(context, dict):
        raise InvalidContextError(
            f"the context of sequence {name!r} must be a dict of str -> scalar, got {type(context).__name__}"
        )
    out = {}
    for key in sorted(context, key=lambda k: (not isinstance(k, str), str(k))):
        value = context[key]
        if not isinstance(key, str):
            raise InvalidContextError(
                f"context keys must be strings, got {key!r} in the context of sequence {name!r}"
            )
        problem = _scalar_problem(key)
        if problem:
            raise InvalidContextError(f"context key of sequence {name!r}: {problem}")
        if isinstance(value, dict):
            out[key] = canonical_context(value, name, depth + 1)
        elif isinstance(value, _SCALARS):
            problem = _scalar_problem(value, nan=False)
            if problem:
                raise InvalidContextError(f"context value {key}=... of sequence {name!r}: {problem}")
            out[key] = value
        else:
            raise InvalidContextError(
                f"context value {key}={value!r} of sequence {name!r} is a {type(value).__name__}; "
                "context values must be str, int, float, bool, None or a nested dict of those"
            )
    return out


def freeze(context: dict) -> frozenset | None:
    """The hashable identity of a canonical context (what the hot path computes
    as ``frozenset(context.items())`` for flat contexts)."""
    if not context:
        return None
    return frozenset((k, freeze(v) if isinstance(v, dict) else v) for k, v in context.items())


# -- params -----------------------------------------------------------------------
def normalize_params(value: Any, path: str = "", depth: int = 0) -> Any:
    """Dicts, OmegaConf containers, dataclasses, lists and scalars as plain
    msgpack-able containers; anything else is an InvalidParamError naming the path."""
    if isinstance(value, _SCALARS):
        problem = _scalar_problem(value)
        if problem:
            raise InvalidParamError(f"cannot store param {path or '(top level)'}: {problem}")
        return value  # msgpack stores NaN and infinities too
    if depth >= MAX_DEPTH:
        raise InvalidParamError(
            f"params are nested deeper than {MAX_DEPTH} levels at {path or '(top level)'}; flatten them"
        )
    mod = type(value).__module__
    if mod.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return normalize_params(OmegaConf.to_container(value, resolve=True), path, depth)
    if hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type):  # dataclasses.is_dataclass
        import dataclasses  # already imported by whoever made the dataclass

        return normalize_params({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, path, depth)
    if isinstance(value, dict) or hasattr(value, "keys") and hasattr(value, "__getitem__"):
        out = {}
        for key in value.keys():
            if not isinstance(key, str):
                if isinstance(key, (int, bool)) or isinstance(key, enum.Enum):
                    key_s = str(key.name if isinstance(key, enum.Enum) else key)
                else:
                    raise InvalidParamError(f"param keys must be strings, got {key!r} at {path or 'the top level'}")
            else:
                key_s = key
            check_param_key(key_s, path)
            if key_s in out:
                raise InvalidParamError(
                    f"param keys {key!r} and {key_s!r} at {path or 'the top level'} both become "
                    f"{key_s!r} once stored (keys are strings); rename one"
                )
            out[key_s] = normalize_params(value[key], f"{path}.{key_s}" if path else key_s, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [normalize_params(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, enum.Enum):
        return normalize_params(value.value, path, depth)
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    tolist = getattr(value, "tolist", None)  # NumPy scalars and arrays
    if callable(tolist) and type(value).__module__ == "numpy":
        return normalize_params(tolist(), path, depth)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return normalize_params(item(), path, depth)
        except (ValueError, TypeError, RuntimeError):
            pass
    raise InvalidParamError(
        f"cannot store a {type(value).__name__} as param {path or '(top level)'}: params must be "
        "None, bool, int, float, str, lists, dicts, dataclasses or OmegaConf configs of those"
    )


def check_param_key(key: Any, parent: str = "") -> str:
    if not isinstance(key, str) or not key:
        raise InvalidParamError(f"param keys must be non-empty strings, got {key!r}")
    problem = _scalar_problem(key)
    if problem:
        raise InvalidParamError(f"param key under {parent or 'the top level'}: {problem}")
    if "." in key:
        where = f" under {parent}" if parent else ""
        raise InvalidParamError(
            f"param key {key!r}{where} contains '.', which the query language uses to walk "
            f"nested params; nest it instead (e.g. {{{key.split('.')[0]!r}: {{...}}}})"
        )
    return key


def same_param_value(a: Any, b: Any) -> bool:
    """Equality of stored params: True is not 1, 1 equals 1.0, NaN equals NaN.

    Used wherever a param is compared with what was logged before (the fluent
    API's immutable params, finding a run with the same config)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(same_param_value(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(same_param_value(x, y) for x, y in zip(a, b)))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b
