"""Components built from YAML by type name (the Experiment Manager's factory pattern).

::

    @YAMLSerializable.register("MyCallback")
    class MyCallback(YAMLSerializable):
        def __init__(self, config=None):
            super().__init__(config)
            self.patience = self.config.get("patience", 3)

    Factory.create("MyCallback", {"patience": 5})

Pipelines, callbacks and trackers register the same way; ``PipelineFactory.create``
and env.yaml's ``trackers:`` look names up here.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError

__all__ = ["Factory", "YAMLSerializable"]


class YAMLSerializable:
    """Base class of components that are created from a config and registered by name."""

    _registry: ClassVar[dict[str, type]] = {}

    def __init__(self, config: Any = None) -> None:
        self.config = _config(config)

    @classmethod
    def register(cls, type_name: str) -> Any:
        """Class decorator: make the class available as ``type_name`` to the factories."""
        if not isinstance(type_name, str) or not type_name:
            raise ConfigError(f"a registered type needs a non-empty name, got {type_name!r}")

        def decorator(subclass: type) -> type:
            YAMLSerializable._registry[type_name] = subclass
            return subclass

        return decorator

    @classmethod
    def get_class(cls, type_name: str) -> type:
        """The class registered as ``type_name``."""
        found = YAMLSerializable._registry.get(type_name)
        if found is None:
            known = ", ".join(sorted(YAMLSerializable._registry)) or "none yet"
            raise ConfigError(
                f"unknown type {type_name!r}: no class is registered under that name (registered: {known}); "
                f"decorate the class with @YAMLSerializable.register({type_name!r}) and import its module "
                "before creating it"
            )
        return found

    @classmethod
    def from_config(cls, config: Any, *args: Any, **kwargs: Any) -> Any:
        """An instance built from ``config`` (override for other constructors)."""
        return cls(config, *args, **kwargs) if (args or kwargs) else cls(config)

    def to_config(self) -> DictConfig:
        """The config this object was built from (what YAML would hold)."""
        return OmegaConf.create(OmegaConf.to_container(self.config) if isinstance(self.config, DictConfig)
                                else dict(self.config or {}))


class Factory:
    """Creates registered components by type name."""

    @staticmethod
    def create(type_name: str, config: Any = None, *args: Any, **kwargs: Any) -> Any:
        cls = YAMLSerializable.get_class(type_name)
        make = getattr(cls, "from_config", None)
        if make is None:
            return cls(_config(config), *args, **kwargs)
        try:
            inspect.signature(make).bind(_config(config), *args, **kwargs)
        except TypeError:
            # A from_config(config) that takes nothing else: the extras are for the constructor's
            # relatives (env, id) that this class does not want.
            return make(_config(config))
        return make(_config(config), *args, **kwargs)


def _config(config: Any) -> Any:
    if config is None:
        return OmegaConf.create({})
    if isinstance(config, dict):
        return OmegaConf.create(config)
    return config
