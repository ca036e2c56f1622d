"""MLflow-style fluent API: ``start_run`` / ``log_metric`` / ``log_params`` / ``end_run``.

Users with MLflow habits switch by changing an import::

    import runstore as rs

    with rs.start_run(name="training_run", experiment="mnist") as run:
        rs.log_params({"learning_rate": 0.001, "optimizer.name": "adam"})
        rs.log_metrics({"loss": 0.5, "accuracy": 0.95}, step=1)
        with rs.start_run(name="fold-1", nested=True) as child:
            rs.log_metric("loss", 0.7)          # goes to ``child``; child.parent == run.id

Every function here is a thin layer over :class:`runstore.Run`; the only state
this module keeps is, per thread, the stack of runs it started (the *active*
runs).  ``start_run`` returns the :class:`~runstore.Run` itself, so ``with``
uses the run's own context-manager semantics (exception -> ``"failed"`` and
re-raise, ``KeyboardInterrupt`` -> ``"killed"``, clean exit -> ``"finished"``).

Why the stack is pruned lazily instead of being popped by a wrapper's
``__exit__``: a run can be closed in several ways (its ``with`` block,
``run.close()``, ``end_run()``), and only ``run.closed`` tells them all apart
reliably.  Each fluent call first drops closed runs from the thread's
stack, so whichever way a run ended, the next call sees its parent as the
active run again.  Nested runs still open when an outer run closes are
closed with the outer run's status (their work was interrupted with it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..tracking import active as _active
from ..tracking.values import same_param_value
from ..errors import ActiveRunError, InvalidParamError, InvalidValueError, ParamChangedError
from ..tracking.repo import Repo
from ..tracking.run import Run

__all__ = [
    "active_run",
    "end_run",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "set_tag",
    "set_tags",
    "start_run",
]

_STATUSES = ("finished", "failed", "killed")

# The per-thread stack of active runs lives in runstore.tracking.active, shared with
# @main and pipelines (their runs are pushed there while the user's code runs).
# Runs never ended need no registry here: the core ends every live run at
# interpreter exit (finished, or failed/killed after an uncaught exception).
_stack = _active.stack
# Params are read-modify-written at the top level of the run's params tree;
# two threads logging into one (shared parent) run must not lose an update.
_params_lock = threading.RLock()
# set_experiment() / set_tracking_uri(): the process-wide defaults of start_run (MLflow's rule).
_defaults: dict[str, Any] = {"experiment": None, "repo": None}


def _reset_after_fork() -> None:
    global _params_lock
    _params_lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _tag_list(tags: Iterable[str] | Mapping[str, Any] | None) -> list[str]:
    """Accept runstore tags (a list of strings) or MLflow tags (a dict)."""
    if tags is None:
        return []
    if isinstance(tags, Mapping):
        return [_kv_tag(key, value) for key, value in tags.items()]
    if isinstance(tags, str):
        return [tags]
    return list(tags)


def start_run(
    name: str | None = None,
    experiment: str | None = None,
    nested: bool = False,
    tags: Iterable[str] | Mapping[str, Any] | None = None,
    run_id: str | None = None,
    repo: Repo | str | os.PathLike[str] | None = None,
    description: str | None = None,
    *,
    run_name: str | None = None,
) -> Run:
    """Start (or resume, with ``run_id``) a run and make it this thread's active run.

    Returns the :class:`~runstore.Run`; use it as a context manager to end it
    automatically (``"failed"`` on an exception, ``"killed"`` on Ctrl-C).

    While a run is active, starting another one needs ``nested=True``; the new
    run records the active run as its ``parent`` and, unless given, inherits
    its repository and experiment.  ``tags`` is a list of strings or an
    MLflow-style dict (stored as ``"key=value"`` strings).  ``repo`` is a
    :class:`~runstore.Repo` or a path; ``None`` means the default repository
    (``$RUNSTORE_REPO`` or ``./.runstore``).

    ``run_name`` is MLflow's spelling of ``name``; :func:`set_experiment` and
    :func:`set_tracking_uri` set the defaults of ``experiment`` and ``repo``.

    Raises :class:`~runstore.errors.ActiveRunError` when a run is active and
    ``nested`` is false.
    """
    if run_name is not None:
        if name is not None and name != run_name:
            raise InvalidParamError(f"pass either name= or run_name= (MLflow's spelling), not both: {name!r} / {run_name!r}")
        name = run_name
    stack = _stack()
    parent = stack[-1] if stack else None
    if parent is not None and not nested:
        raise ActiveRunError(
            f"run {parent.id} ({parent.name!r}) is already active in this thread; "
            "pass nested=True to start a child run inside it, or call "
            "runstore.end_run() (or leave its 'with' block) before starting another run"
        )
    if repo is None and parent is not None:
        repo = parent.repo
    if experiment is None and parent is not None and run_id is None:
        experiment = parent.experiment
    if repo is None:
        repo = _defaults["repo"]
    if experiment is None and run_id is None:
        experiment = _defaults["experiment"]
    tag_list = _tag_list(tags)

    if run_id is not None:
        run = Run(repo=repo, run_id=run_id)
        if name is not None:
            run.name = name
        if experiment is not None:
            run.experiment = experiment
        if description is not None:
            run.description = description
        for tag in tag_list:
            _add_tag(run, tag)
        if parent is not None and run.parent is None and run.id != parent.id:
            run.parent = parent.id
    else:
        kwargs: dict[str, Any] = {"repo": repo, "name": name, "tags": tag_list}
        if experiment is not None:
            kwargs["experiment"] = experiment
        if description is not None:
            kwargs["description"] = description
        if parent is not None:
            kwargs["parent"] = parent.id
        run = Run(**kwargs)
    stack.append(run)
    return run


def active_run() -> Run | None:
    """This thread's innermost active run, or ``None``."""
    stack = _stack()
    return stack[-1] if stack else None


def end_run(status: str = "finished") -> None:
    """End this thread's innermost active run (no-op when none is active).

    ``status`` is ``"finished"``, ``"failed"`` or ``"killed"``.  The enclosing
    run, if any, becomes the active run again.
    """
    if status not in _STATUSES:
        raise ValueError(f"status must be one of {', '.join(_STATUSES)}, not {status!r}")
    stack = _stack()
    if not stack:
        return
    stack.pop().close(status=status)


def _current() -> Run:
    """The active run; as in MLflow, logging without one starts one, but says so:
    a call that was meant for another run (one made by ``@main`` in another thread,
    say) must not land in a stray run without a word."""
    stack = _stack()
    if stack:
        return stack[-1]
    run = start_run()
    import logging  # the one message of this module: not worth ~3 ms at import

    logging.getLogger("runstore").warning(
        "runstore: no active run, so this call started run %s (experiment %r) in repository %s; "
        "call runstore.start_run(...) (or log inside @runstore.main / a Pipeline) to choose the run",
        run.id, run.experiment, run.repo.path,
    )
    return run


def log_metric(
    key: str,
    value: float,
    step: int | None = None,
    epoch: float | None = None,
    context: Mapping[str, Any] | None = None,
) -> None:
    """Track one value of metric ``key`` on the active run (``Run.track``)."""
    _current().track(value, name=key, step=step, epoch=epoch, context=context)


def log_metrics(
    metrics: Mapping[str, float],
    step: int | None = None,
    epoch: float | None = None,
    context: Mapping[str, Any] | None = None,
) -> None:
    """Track several metrics at one step on the active run (``Run.log_metrics``)."""
    if not isinstance(metrics, Mapping):
        raise InvalidValueError(
            f"log_metrics takes a dict of name -> value, got {type(metrics).__name__}; "
            "for one value use log_metric(name, value)"
        )
    _current().log_metrics(dict(metrics), step=step, epoch=epoch, context=context)


# --- params -----------------------------------------------------------------


def _plain(value: Any) -> Any:
    """The plain-container form a param is stored in, to compare like with like."""
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalar or array
        return _plain(value.tolist()) if getattr(value, "ndim", 0) else value.item()
    if hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type):  # dataclasses.is_dataclass
        import dataclasses

        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return _plain(OmegaConf.to_container(value, resolve=True))
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _split_key(key: str) -> list[str]:
    if not isinstance(key, str):
        raise InvalidParamError(f"param key must be a str, not {type(key).__name__}: {key!r}")
    parts = key.split(".")
    if not all(parts):
        raise InvalidParamError(
            f"param key {key!r} has an empty part; use dotted names like 'optimizer.lr'"
        )
    return parts


def _leaves(path: list[str], value: Any) -> Iterable[tuple[list[str], Any]]:
    """Split a (nested) value into leaf paths, so dict params merge key by key."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves([*path, *_split_key(key)], item)
    else:
        yield path, value


def _merge_leaf(tree: dict[str, Any], path: list[str], value: Any, key: str) -> None:
    """Set ``tree[path] = value`` unless a different value is already there."""
    node = tree
    for depth, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None and part not in node:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise ParamChangedError(
                f"param {where!r} is already logged as {child!r}; cannot log {key!r} = {value!r} "
                "under it (params are immutable; use a new key, or set run[...] directly to overwrite)"
            )
        node = child
    last = path[-1]
    if last not in node:
        node[last] = value
        return
    old = node[last]
    if isinstance(old, dict) and isinstance(value, dict) and not value:
        return  # merging an empty dict changes nothing
    if not same_param_value(old, value):
        raise ParamChangedError(
            f"param {'.'.join(path)!r} is already logged as {old!r}; cannot change it to "
            f"{value!r} (params are immutable; use a new key, or set run[...] directly to overwrite)"
        )


def log_param(key: str, value: Any) -> None:
    """Log one param on the active run; a dotted key is stored nested.

    ``log_param("optimizer.lr", 0.1)`` stores ``run.params["optimizer"]["lr"]``.
    Logging the same value again does nothing; a different value raises
    :class:`~runstore.errors.ParamChangedError`.
    """
    log_params({key: value})


def log_params(params: Mapping[str, Any]) -> None:
    """Log several params on the active run, all or nothing.

    Keys may be dotted (``"optimizer.lr"``) and values may be nested dicts,
    OmegaConf configs or dataclasses; everything is merged leaf by leaf into
    the top level of ``run.params``.  If any leaf would change an existing
    value, :class:`~runstore.errors.ParamChangedError` is raised and nothing
    is written.
    """
    run = _current()
    with _params_lock:
        current = run.params
        merged = _plain(current)
        for key, value in params.items():
            for path, leaf in _leaves(_split_key(key), _plain(value)):
                _merge_leaf(merged, path, leaf, key)
        for top, value in merged.items():
            if top not in current or not same_param_value(current[top], value):
                run[top] = value


# --- tags -------------------------------------------------------------------


def _kv_tag(key: str, value: Any) -> str:
    if not isinstance(key, str) or not key or "=" in key:
        raise InvalidParamError(
            f"tag key must be a non-empty str without '=', not {key!r} "
            "(key-value tags are stored as 'key=value' strings in run.tags)"
        )
    return f"{key}={value}"


def _add_tag(run: Run, tag: str) -> None:
    """Add a tag; a ``key=value`` tag replaces an earlier value of the same key."""
    if "=" in tag:
        prefix = tag.split("=", 1)[0] + "="
        for old in run.tags:
            if old.startswith(prefix) and old != tag:
                run.remove_tag(old)
    if tag not in run.tags:
        run.add_tag(tag)


def set_tag(key: str, value: Any) -> None:
    """Tag the active run with ``"key=value"`` (replacing an earlier value of ``key``).

    Unlike params, tags are mutable, as in MLflow.  They land in ``run.tags``,
    so ``repo.query("'team=vision' in run.tags")`` finds them.
    """
    _add_tag(_current(), _kv_tag(key, value))


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set several ``key=value`` tags on the active run (see :func:`set_tag`)."""
    strings = [_kv_tag(key, value) for key, value in tags.items()]  # validate all first
    run = _current()
    for tag in strings:
        _add_tag(run, tag)


def log_artifact(path: str | os.PathLike[str] | Path, kind: str | None = None) -> dict[str, Any]:
    """Copy a file into the active run's artifacts (``Run.log_artifact``); returns its record."""
    return _current().log_artifact(path, kind=kind)
