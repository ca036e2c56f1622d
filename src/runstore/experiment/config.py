"""Configuration: YAML files, dot-list overrides, a dataclass schema, interpolations.

A configuration is built from layers, later ones winning: the schema's defaults,
then each YAML file in order, then ``key=value`` overrides from the command line.
Every layer is merged one at a time so that an error can name the layer that
caused it (``conf.yaml``, ``override 'lr=abc'``); the origin of every leaf is
remembered for the errors that only show up after merging (a missing required
field, an interpolation pointing nowhere).

Interpolations (``${model.layers}``, ``${oc.env:HOME}``) are resolved before the
configuration is handed to user code or stored, so a run's params always hold
the values that were actually used.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf, SCMode
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError

__all__ = [
    "PLACEHOLDER",
    "insert_value",
    "load_config",
    "load_yaml",
    "multiply",
    "parse_override",
    "split_sweep",
    "to_container",
]

#: The placeholder :func:`insert_value` fills (as in the Experiment Manager).
PLACEHOLDER = "?"


# -- building a configuration ----------------------------------------------------------
def load_config(
    *files: str | os.PathLike[str],
    schema: Any = None,
    overrides: Iterable[str] = (),
) -> DictConfig:
    """Merge ``schema`` defaults <- YAML ``files`` (in order) <- ``overrides``; validate; resolve.

    ``schema`` is a dataclass (class or instance) or None for an untyped config. With a
    schema, unknown keys, values of the wrong type and required fields left unset
    (``field: int = MISSING`` or no default) raise :class:`~runstore.errors.ConfigError`
    naming the field and the file or override it came from. Interpolations are resolved
    in the returned config.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Config:
    ...     lr: float = 1e-3
    ...     epochs: int = 10
    >>> load_config(schema=Config, overrides=["epochs=3"]).epochs
    3
    """
    cfg, _origins = build_config(files, schema, overrides)
    return cfg


def build_config(
    files: Iterable[str | os.PathLike[str]], schema: Any, overrides: Iterable[str]
) -> tuple[DictConfig, dict[str, str]]:
    """:func:`load_config` returning also ``{dotted key: where its value came from}``."""
    layers = []
    for path in files:
        layer = load_yaml(path)
        if not isinstance(layer, DictConfig):
            raise ConfigError(
                f"{path}: a config file must hold a mapping of settings at the top level, "
                f"not a {type(layer).__name__}"
            )
        layers.append((str(path), layer))
    return merge_layers(schema, layers, overrides)


def merge_layers(
    schema: Any, layers: Iterable[tuple[str, Any]], overrides: Iterable[str] = (), *, resolve: bool = True
) -> tuple[DictConfig, dict[str, str]]:
    """Merge ``(source name, mapping)`` layers and overrides onto the schema; validate; resolve.

    The source names appear in the errors (a file name, "trials.yaml, trial 'small'").
    ``resolve=False`` leaves interpolations alone (only top-level required fields are
    checked then), for files whose settings are merged and resolved later.
    """
    layers = [(source, layer if isinstance(layer, DictConfig) else OmegaConf.create(layer)) for source, layer in layers]
    schema_name = _schema_name(schema)
    origins: dict[str, str] = {}
    if schema is None:
        cfg = OmegaConf.create({})
    else:
        if not dataclasses.is_dataclass(schema):
            raise ConfigError(
                f"the config schema must be a dataclass (class or instance), got {schema!r}"
            )
        cfg = OmegaConf.structured(schema)
        _record_origins(OmegaConf.to_container(cfg, resolve=False), f"the defaults of {schema_name}", origins)

    for source, layer in layers:
        cfg = _merge(cfg, layer, source, schema_name)
        _record_origins(OmegaConf.to_container(layer, resolve=False), source, origins)

    for text in overrides:
        key, value = parse_override(text)
        source = f"command-line override {text!r}"
        layer = _override_layer(key, value, source)
        cfg = _merge(cfg, layer, source, schema_name)
        _record_origins(OmegaConf.to_container(layer, resolve=False), source, origins)

    if not resolve:
        missing = [str(k) for k in cfg.keys() if OmegaConf.is_missing(cfg, k)]
        if missing:
            raise ConfigError(
                f"{', '.join(source for source, _ in layers) or 'the config'}: required field {missing[0]!r} is missing"
            )
        return cfg, origins
    try:
        # missing_keys() walks the tree resolving interpolations, so both kinds of
        # error surface here; the handler names the source of the offending field.
        missing = sorted(OmegaConf.missing_keys(cfg))
        if not missing:
            OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(
            f"cannot resolve the interpolation in field {key!r} (set by {origins.get(key, 'an unknown source')}): "
            f"{_first_line(exc)}"
        ) from None
    if missing:
        sources = [source for source, _ in layers]
        looked = f"looked in {', '.join(sources)} and the overrides" if sources else "no config file was given"
        raise ConfigError(
            f"required field {missing[0]!r} of {schema_name} has no value ({looked}); "
            f"set it in a config file or on the command line as {missing[0]}=..."
            + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else "")
        )
    return cfg, origins


def _merge(cfg: DictConfig, layer: DictConfig, source: str, schema_name: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, layer)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or _locate_bad_key(cfg, layer) or "?"
        message = _first_line(exc)
        if "not in" in message and "Key" in message:
            allowed = _allowed_keys(cfg, key)
            raise ConfigError(
                f"{source}: unknown field {key!r}, not in the schema {schema_name}"
                + (f" (known here: {', '.join(allowed)})" if allowed else "")
            ) from None
        raise ConfigError(f"{source}: invalid value for field {key!r}: {message}") from None


def _locate_bad_key(cfg: DictConfig, layer: DictConfig) -> str | None:
    """The dotted key of the first leaf of ``layer`` that cannot merge into ``cfg``.

    Some OmegaConf errors (a scalar where a nested dataclass belongs) carry no key;
    merging the layer one key at a time finds it.
    """
    return _locate(cfg, OmegaConf.to_container(layer, resolve=False), [])


def _locate(cfg: DictConfig, tree: Any, path: list[str]) -> str | None:
    if not isinstance(tree, dict):
        return ".".join(path) or None
    for key, value in tree.items():
        part: Any = {key: value}
        for name in reversed(path):
            part = {name: part}
        try:
            OmegaConf.merge(cfg, OmegaConf.create(part))
        except OmegaConfBaseException:
            return _locate(cfg, value, [*path, str(key)]) if isinstance(value, dict) else ".".join([*path, str(key)])
    return ".".join(path) or None


def _allowed_keys(cfg: DictConfig, dotted: str) -> list[str]:
    parent = dotted.rpartition(".")[0]
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []


def _override_layer(key: str, value: str, source: str) -> DictConfig:
    try:
        return OmegaConf.from_dotlist([f"{key}={value}"])
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: cannot parse the value: {_first_line(exc)}") from None


def load_yaml(path: str | os.PathLike[str]) -> DictConfig | ListConfig:
    """One YAML file as an OmegaConf container; errors name the file (and line)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist (resolved to {p.absolute()})")
    try:
        loaded = OmegaConf.load(p)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or _first_line(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: {_first_line(exc)}") from None
    if loaded is None:  # an empty file
        return OmegaConf.create({})
    return loaded


# -- overrides ----------------------------------------------------------------------------
def parse_override(text: str) -> tuple[str, str]:
    """``"model.layers=4"`` -> ``("model.layers", "4")``; a malformed override raises ConfigError."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"cannot parse the override {text!r}: write key=value, e.g. lr=0.01 or model.layers=4"
        )
    parts = key.split(".")
    if not all(part and (part.replace("_", "a").replace("-", "a").isalnum()) for part in parts):
        raise ConfigError(
            f"cannot parse the override {text!r}: {key!r} is not a dotted key "
            "(letters, digits, '_' and '-', separated by '.')"
        )
    return key, value


def split_sweep(value: str) -> list[str]:
    """Split a sweep value on top-level commas: ``"0.1,0.01"`` -> ``["0.1", "0.01"]``.

    Commas inside brackets, braces or quotes belong to the value
    (``"[1,2],[3,4]"`` -> ``["[1,2]", "[3,4]"]``).
    """
    items: list[str] = []
    depth = 0
    quote: str | None = None
    start = 0
    for i, ch in enumerate(value):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(value[start:i].strip())
            start = i + 1
    items.append(value[start:].strip())
    return items


# -- fragments: cartesian products and placeholders ---------------------------------------
def multiply(*fragments: Any) -> list[dict[str, Any]]:
    """The cartesian product of configuration fragments, each combination deep-merged.

    Each argument is a list of dicts (a single dict counts as a list of one); the result
    has one plain dict per combination, the first argument varying slowest. Nested
    dicts merge key by key; any other value (lists included) from a later fragment
    replaces the earlier one. Inputs are not modified.

    >>> multiply([{"model": "mlp"}, {"model": "cnn"}], [{"lr": 0.1}, {"lr": 0.01}])[1]
    {'model': 'mlp', 'lr': 0.01}
    """
    lists = []
    for i, fragment in enumerate(fragments):
        fragment = _plain(fragment)
        if isinstance(fragment, dict):
            fragment = [fragment]
        if not isinstance(fragment, list) or not all(isinstance(f, dict) for f in fragment):
            raise ConfigError(
                f"multiply() argument {i + 1} must be a list of dicts (configuration fragments), "
                f"got {type(fragment).__name__}"
            )
        lists.append(fragment)
    result = []
    for combo in itertools.product(*lists):
        merged: dict[str, Any] = {}
        for part in combo:
            merged = deep_merge(merged, part)
        result.append(merged)
    return result


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``update`` merged into ``base``, recursively for nested dicts."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def insert_value(config: Any, value: Any, placeholder: str = PLACEHOLDER) -> Any:
    """A copy of ``config`` with every ``"?"`` placeholder replaced by ``value``.

    Works on dicts, lists and OmegaConf containers (returning the same kind), at any
    depth. Combine with a loop or :func:`multiply` to generate many configurations.

    >>> insert_value({"lr": "?", "batch_size": 32}, 0.001)
    {'lr': 0.001, 'batch_size': 32}
    """
    if isinstance(config, (DictConfig, ListConfig)):
        plain = OmegaConf.to_container(config, resolve=False)
        return OmegaConf.create(_replace(plain, value, placeholder))
    return _replace(config, value, placeholder)


def _replace(node: Any, value: Any, placeholder: str) -> Any:
    if isinstance(node, str) and node == placeholder:
        return copy.deepcopy(value)
    if isinstance(node, Mapping):
        return {k: _replace(v, value, placeholder) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_replace(v, value, placeholder) for v in node]
    return node


# -- conversions ------------------------------------------------------------------------------
def to_container(cfg: Any) -> Any:
    """A resolved configuration as plain dicts and lists (what a run stores as params)."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(
            cfg,
            resolve=True,
            throw_on_missing=True,
            enum_to_str=True,
            structured_config_mode=SCMode.DICT,
        )
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return to_container(OmegaConf.structured(cfg))
    return _plain(cfg)


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, tuple):
        return list(value)
    return value


def _record_origins(tree: Any, source: str, origins: dict[str, str], prefix: str = "") -> None:
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            _record_origins(value, source, origins, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        origins[prefix] = source


def _schema_name(schema: Any) -> str:
    if schema is None:
        return "the config"
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

