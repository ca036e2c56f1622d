"""What every integration shares: opening the run, prefix -> context, params
cleaning, and the guard that keeps a tracker error from killing training."""

from __future__ import annotations

import functools
import importlib
import logging
import math
import numbers
from typing import Any, Callable, Iterable, Mapping

from ..errors import ConfigError

log = logging.getLogger("runstore.integrations")

# Metric-name prefixes that name a data subset. "train_loss", "val/loss" and
# "eval_loss" all become "loss" with context {"subset": ...} so curves from
# different frameworks line up in one chart.
DEFAULT_PREFIXES: dict[str, str] = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "eval": "val",
    "test": "test",
}


def split_prefix(name: str, prefixes: Mapping[str, str] | None = DEFAULT_PREFIXES) -> tuple[str, dict]:
    """``("val_loss")`` -> ``("loss", {"subset": "val"})``; names without a known
    prefix (or with nothing after it) come back unchanged with an empty context."""
    if prefixes:
        for sep in ("/", "_", "-"):
            head, found, rest = name.partition(sep)
            if found and rest and head.lower() in prefixes:
                return rest, {"subset": prefixes[head.lower()]}
    return name, {}


def prefix_map(context_from_prefix: bool | Mapping[str, str]) -> Mapping[str, str] | None:
    """The ``context_from_prefix`` argument every adapter takes: True for the
    defaults, False for none, or a mapping prefix -> subset of your own."""
    if context_from_prefix is True:
        return DEFAULT_PREFIXES
    if not context_from_prefix:
        return None
    if isinstance(context_from_prefix, Mapping):
        return {str(k).lower(): str(v) for k, v in context_from_prefix.items()}
    raise ConfigError(
        f"context_from_prefix must be True, False or a dict prefix -> subset, got {context_from_prefix!r}"
    )


def require(module: str, extra_hint: str) -> Any:
    """Import a framework module, or fail with what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"runstore.integrations needs {module!r}: pip install {extra_hint} "
            f"(or pip install 'runstore[integrations]')"
        ) from exc


def open_run(run: Any = None, repo: Any = None, experiment: str | None = None, name: str | None = None,
             run_id: str | None = None, **kwargs: Any) -> Any:
    """The run an adapter writes to: the one given, else a new (or resumed) Run."""
    from .. import Run

    if run is not None:
        return run
    return Run(repo=repo, run_id=run_id, experiment=experiment, name=name, **kwargs)


def as_number(value: Any) -> float | int | None:
    """A plain Python number from a float, numpy scalar or 0-d tensor; None when
    the value is not a number (strings, lists ...: not a curve point)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    item = getattr(value, "item", None)
    if item is not None:
        try:
            value = item()
        except (TypeError, ValueError, RuntimeError):
            return None
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if isinstance(value, numbers.Real):
        return float(value)
    return None


def clean_params(value: Any, depth: int = 0) -> Any:
    """Framework config objects as plain storable params: Namespaces, OmegaConf,
    dataclasses, enums, dtypes and other objects become dicts or their str();
    keys with '.' (which the query language walks) get '_' instead."""
    if depth > 20:
        return str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    number = as_number(value)
    if number is not None and not hasattr(value, "__len__"):
        return number
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=True)
    elif hasattr(value, "__dataclass_fields__"):
        value = {k: getattr(value, k) for k in value.__dataclass_fields__}
    elif type(value).__name__ == "Namespace" and hasattr(value, "__dict__"):
        value = vars(value)
    if isinstance(value, Mapping):
        return {_key(k): clean_params(v, depth + 1) for k, v in value.items() if _key(k)}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [clean_params(v, depth + 1) for v in value]
    return str(value)


def _key(key: Any) -> str:
    return str(key).replace(".", "_")


def merge_params(run: Any, key: str, params: Any) -> None:
    """Merge ``params`` into the run's top-level param ``key`` (later calls add keys)."""
    params = clean_params(params)
    if not isinstance(params, dict):
        params = {"value": params}
    current = run.params.get(key) if key in run.params else {}
    if isinstance(current, dict):
        current.update(params)
        params = current
    run[key] = params


class Guard:
    """Runs tracker code so that its errors never reach the training loop: the
    first failure of each adapter is logged as a warning (with the traceback),
    later ones at debug level, and training continues."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.warned = False

    def __call__(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception:
            if not self.warned:
                self.warned = True
                log.warning("runstore %s: tracking failed; training continues (later failures are logged "
                            "at debug level)", self.what, exc_info=True)
            else:
                log.debug("runstore %s: tracking failed again", self.what, exc_info=True)
            return None


def guarded(method: Callable) -> Callable:
    """Method decorator: the instance's ``_guard`` runs the method."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self._guard(method, self, *args, **kwargs)

    return wrapper


# (raw name, prefixes, extra context) -> (name, context): a logger sees the same few
# names every step, so the split is done once per name, not once per call.
_names: dict[tuple, tuple[str, dict | None]] = {}
_prefix_maps: dict[int, Any] = {}


def _name_context(raw: Any, prefixes: Mapping[str, str] | None, context: Mapping[str, Any] | None) -> tuple:
    key = (raw, id(prefixes), tuple(context.items()) if context else None)
    found = _names.get(key)
    if found is None:
        name, ctx = split_prefix(str(raw), prefixes)
        if context:
            ctx = {**ctx, **context}
        found = (name, ctx or None)
        if len(_names) < 100_000:  # names made up per step (f"loss_{step}") must not grow it forever
            _prefix_maps[id(prefixes)] = prefixes  # kept alive: its id stays its own
            _names[key] = found
    return found


def track_metrics(run: Any, metrics: Mapping[str, Any], step: int | None, prefixes: Mapping[str, str] | None,
                  epoch: Any = None, context: Mapping[str, Any] | None = None,
                  skip: Iterable[str] = ()) -> None:
    """Track every numeric entry of ``metrics`` with the prefix mapped to a context."""
    if epoch is not None:
        epoch = as_number(epoch)
    for raw, value in metrics.items():
        if raw in skip:
            continue
        number = value if type(value) is float else as_number(value)
        if number is None or number != number:  # not a number, or NaN: not a curve point
            continue
        name, ctx = _name_context(raw, prefixes, context)
        run.track(float(number), name=name, step=step, epoch=epoch, context=ctx)
