"""``run.get(key)`` and the key spelling shared by RunCollection and the CLI.

A key is a full dotted path, looked up in this order:

1. params: ``"hparams.lr"``, ``"hparams.layers.0"`` (list index);
2. (typed runs) a default from the structured config: ``runs.typed(Config)``;
3. run attributes: ``"name"``, ``"status"``, ``"id"`` (alias ``"run_id"``), ...;
4. sequence summaries: ``"loss.last"`` (the run's only sequence named loss,
   whatever its context) or ``"loss@subset=val.last"`` (``k=v`` pairs separated
   by commas; nested context keys are dotted), also spelled
   ``"loss[subset=val].last"`` (the bracket-free spelling needs no shell quoting:
   zsh reads ``[...]`` as a glob); fields are count, first_step, last_step, last,
   min and max;
5. (runs with an implementation) an attribute of ``run.impl``.

The typed-config and implementation state lives on the Run object itself
(``_rs_*`` attributes) because ``Run.cfg`` / ``Run.impl`` are properties that
call :func:`run_cfg` / :func:`run_impl` here.
"""

from __future__ import annotations

import copy
import inspect
import re
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, MatchError
from ..query.parser import node_class
from ..query.vectors import MISSING
from ..query.tables import RUN_ATTRS, SUMMARY_FIELDS, walk

NO_DEFAULT: Any = type("NoDefault", (), {"__repr__": lambda self: "NO_DEFAULT"})()
ATTR_ALIASES = {"run_id": "id", "hash": "id"}
#: Keys computed from the run rather than stored: HydraFlow's ``run_dir``.
DERIVED_KEYS = ("run_dir",)


# Immutable value classes as named tuples (see node_class: a frozen dataclass costs
# ~0.5 ms to create, paid by every fresh process's first query).
RunInfo = node_class("RunInfo", "run_id run_dir job_name", (None,),
                     "HydraFlow's ``RunInfo``: ``run_id``, ``run_dir`` (the artifacts folder) and "
                     "``job_name`` (the experiment).")


def derived(run: Any, key: str) -> Any:
    """``run_dir``: the run's artifacts folder (a Path; not created by asking)."""
    if key == "run_dir":
        return Path(run.repo.path) / "artifacts" / run.id
    return MISSING

_SEQ_KEY = re.compile(
    r"^(?P<name>[^\[\]@]+?)(?:\[(?P<ctx>[^\[\]]*)\]|@(?P<at>[^\[\]]+?))?\.(?P<field>"
    + "|".join(SUMMARY_FIELDS) + r")$"
)


class SeqKey(node_class("SeqKey", "name context field")):
    """A sequence-summary key: ``name``, ``context`` (((dotted key, raw text), ...)), ``field``."""

    __slots__ = ()

    def matches(self, name: str, context: dict) -> bool:
        if name != self.name:
            return False
        for key, raw in self.context:
            value = walk(context, tuple(key.split(".")))
            if value is MISSING or not context_value_matches(value, raw):
                return False
        return True

    def spelling(self) -> str:
        ctx = ",".join(f"{k}={v}" for k, v in self.context)
        return f"{self.name}@{ctx}.{self.field}" if ctx else f"{self.name}.{self.field}"


def parse_seq_key(key: str) -> SeqKey | None:
    """``"loss@subset=val.last"`` or ``"loss[subset=val].last"`` -> SeqKey; None when
    ``key`` is not spelled like that."""
    m = _SEQ_KEY.match(key)
    if m is None:
        return None
    pairs = []
    ctx = m.group("ctx") or m.group("at")
    if ctx:
        for part in ctx.split(","):
            if not part.strip():
                continue
            k, eq, v = part.partition("=")
            if not eq or not k.strip():
                raise ValueError(f"bad context {part!r} in key {key!r}: write name@key=value,....field")
            pairs.append((k.strip(), v.strip()))
    return SeqKey(m.group("name"), tuple(pairs), m.group("field"))


def context_value_matches(value: Any, raw: str) -> bool:
    """Does a stored context value equal the text of a key (``fold=1``, ``subset=val``)?"""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return value == raw[1:-1]
    if isinstance(value, bool) or value is None:
        return str(value) == raw or raw.lower() == str(value).lower()
    if isinstance(value, (int, float)):
        try:
            return float(raw) == value
        except ValueError:
            return False
    return str(value) == raw


def split_path(key: str) -> tuple:
    return tuple(key.split("."))


def context_text(context: dict) -> str:
    return "{" + ", ".join(f"{k}: {v!r}" for k, v in context.items()) + "}" if context else "{}"


# -- run.get ----------------------------------------------------------------------------
def run_get(run: Any, key: str, default: Any = NO_DEFAULT) -> Any:
    """The value of ``key`` for ``run`` (see the module docstring for the lookup order)."""
    if not isinstance(key, str) or not key:
        raise TypeError(f"a key must be a non-empty string such as 'hparams.lr', got {key!r}")
    value = _lookup(run, key)
    if value is not MISSING:
        return value
    if default is not NO_DEFAULT:
        return default(run) if callable(default) else default
    raise KeyError(missing_key_message(key, f"run {run.id} has no key", candidates_for_run(run)))


def _lookup(run: Any, key: str) -> Any:
    tree = _param_tree(run)
    value = walk(tree, split_path(key))
    if value is not MISSING:
        return copy.deepcopy(value)
    if getattr(run, "_rs_cfg_type", None) is not None:
        value = _cfg_default(run, key)
        if value is not MISSING:
            return value
    attr = ATTR_ALIASES.get(key, key)
    if attr in RUN_ATTRS:
        return getattr(run, attr)
    if key in DERIVED_KEYS:
        return derived(run, key)
    spec = parse_seq_key(key)
    if spec is not None:
        value = _summary(run, spec)
        if value is not MISSING:
            return value
    impl = _bound_impl(run)
    if impl is not None and "." not in key and hasattr(impl, key):
        return getattr(impl, key)
    return MISSING


def _param_tree(run: Any) -> dict:
    tree = getattr(run, "_param_tree", None)
    return tree() if callable(tree) else run.params


def _summary(run: Any, spec: SeqKey) -> Any:
    if getattr(run, "_writable", False):
        run._flush()
    stored = run._stored_sequences() if hasattr(run, "_stored_sequences") else [
        run.sequence(n, c) for n, c in run.sequences()
    ]
    found = [s for s in stored if spec.matches(s.name, s.context)]
    if not found:
        return MISSING
    if len(found) > 1:
        raise MatchError(ambiguous_message(run.id, spec, [s.context for s in found]))
    return getattr(found[0], spec.field)


def ambiguous_message(run_id: str, spec: SeqKey, contexts: list) -> str:
    shown = "; ".join(context_text(c) for c in contexts[:6])
    example = ""
    first = next((c for c in contexts if c), None)
    if first:
        k, v = next(iter(first.items()))
        example = f"; pick one, e.g. {spec.name}@{k}={v}.{spec.field}"
    return (
        f"key {spec.spelling()!r} is ambiguous: run {run_id} has {len(contexts)} sequences named "
        f"{spec.name!r}, with contexts {shown}{example}"
    )


def missing_key_message(key: str, subject: str, candidates: list, advice: str | None = None) -> str:
    """``subject`` reads before the key: "run 01ab... has no key" or "no run has the key".

    ``advice`` replaces the closing "pass default=..." (the CLI gives its own advice)."""
    from difflib import get_close_matches  # only for an error's suggestions
    close = get_close_matches(key, candidates, n=5, cutoff=0.5)
    hint = f"; closest keys: {', '.join(close)}" if close else ""
    return (
        f"{subject} {key!r} (not a param, a run attribute or a sequence summary){hint}; "
        + (advice if advice is not None else "pass default=... to get a value instead")
    )


def candidates_for_run(run: Any) -> list:
    from ..query.tables import leaf_paths

    out = [".".join(map(str, p)) for p in leaf_paths([_param_tree(run)])]
    out += list(RUN_ATTRS) + list(DERIVED_KEYS)
    try:
        for name, ctx in run.sequences():
            out.append(f"{name}.last")
            if ctx:
                out.append(SeqKey(name, tuple((k, str(v)) for k, v in ctx.items()), "last").spelling())
    except Exception:  # pragma: no cover - suggestions must never hide the KeyError
        pass
    return out


# -- typed configs and implementations ------------------------------------------------------
def bind(run: Any, cfg_type: Any = None, impl_factory: Callable | None = None) -> Any:
    """Attach a config class and/or an implementation factory to ``run`` (returns ``run``)."""
    if cfg_type is not None:
        run._rs_cfg_type = cfg_type
        run._rs_cfg = None
    if impl_factory is not None:
        run._rs_impl_factory = impl_factory
        run._rs_impl = None
    return run


def run_cfg(run: Any) -> Any:
    """``run.cfg``: the params as an OmegaConf config (structured when the run is typed)."""
    from omegaconf import OmegaConf

    cached = getattr(run, "_rs_cfg", None)
    if cached is not None:
        return cached
    cfg_type = getattr(run, "_rs_cfg_type", None)
    params = copy.deepcopy(_param_tree(run))
    if cfg_type is None:
        cfg = OmegaConf.create(params)
    else:
        schema = OmegaConf.structured(cfg_type)
        try:
            cfg = OmegaConf.merge(schema, _known_keys(schema, params))
        except Exception as exc:  # omegaconf raises several unrelated classes
            raise ConfigError(
                f"the params of run {run.id} do not fit {getattr(cfg_type, '__name__', cfg_type)}: {exc}"
            ) from exc
    run._rs_cfg = cfg
    return cfg


def _known_keys(schema: Any, params: Any) -> Any:
    """``params`` without the keys a structured config does not declare.

    Params usually hold more than the config class (a seed logged on its own, a
    git hash): they are left out instead of failing the merge."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(params, dict) or not isinstance(schema, DictConfig):
        return params
    if OmegaConf.get_type(schema) in (dict, None):
        return params
    out = {}
    for key, value in params.items():
        if key in schema:
            node = schema._get_node(key)
            out[key] = _known_keys(node, value) if isinstance(node, DictConfig) else value
    return out


def _cfg_default(run: Any, key: str) -> Any:
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.select(run_cfg(run), key, default=MISSING, throw_on_missing=False)
    except Exception:
        return MISSING
    if value is MISSING:
        return MISSING
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _bound_impl(run: Any) -> Any:
    if getattr(run, "_rs_impl_factory", None) is None:
        return None
    return run_impl(run)


def run_impl(run: Any) -> Any:
    """``run.impl``: ``factory(artifacts_dir)`` or ``factory(artifacts_dir, cfg)``, built once."""
    impl = getattr(run, "_rs_impl", None)
    if impl is not None:
        return impl
    factory = getattr(run, "_rs_impl_factory", None)
    if factory is None:
        raise AttributeError(
            f"run {run.id} has no implementation; get runs from runs.with_impl(factory) to use run.impl"
        )
    if _positional_arity(factory) >= 2:
        impl = factory(run.artifacts_dir, run_cfg(run))
    else:
        impl = factory(run.artifacts_dir)
    run._rs_impl = impl
    return impl


def _positional_arity(fn: Callable) -> int:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    count = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return 2
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count
