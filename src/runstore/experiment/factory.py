"""``PipelineFactory``: the Experiment Manager's way to make a trial run's pipeline.

An experiment calls ``factory.create(name, config, env, id)`` once per trial run, with
``name`` = the trial settings' ``pipeline.type`` (None when the settings have none),
``config`` = the trial's resolved settings (a DictConfig), ``env`` = the trial run's
:class:`~runstore.experiment.Environment` and ``id`` = the trial's id from trials.yaml.
A project's factory dispatches on ``name`` (or on the config) and falls back to
``PipelineFactory.create``, which builds pipelines registered with
``@YAMLSerializable.register("name")``.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import ConfigError
from .serializable import Factory, YAMLSerializable

__all__ = ["PipelineFactory", "pipeline_name"]


class PipelineFactory(Factory):
    """Creates registered pipelines by name; subclass it and override :meth:`create`."""

    @staticmethod
    def create(name: str | None, config: Any, env: Any, id: Any = None) -> Any:  # noqa: A002 - the seed's name
        from .pipeline import Pipeline

        if not name:
            raise ConfigError(
                "no pipeline to create: the trial's settings have no pipeline.type (the factory is called as "
                "create(settings.pipeline.type, settings, env, trial id)); add `pipeline: {type: <name>}` to "
                "base.yaml's settings, or dispatch on the config in your factory"
            )
        cls = YAMLSerializable.get_class(str(name))
        if not (isinstance(cls, type) and issubclass(cls, Pipeline)):
            raise ConfigError(f"{name!r} is registered as {cls.__name__}, which is not a Pipeline")
        if "from_config" in vars(cls):
            return cls.from_config(config, env, id)
        return make_pipeline(cls, env, config)


def make_pipeline(cls: type, env: Any, config: Any) -> Any:
    """``cls(env, config)`` for the Experiment Manager's signature, ``cls(env)`` when it takes only env."""
    params = [p for p in inspect.signature(cls.__init__).parameters.values()
              if p.name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    pipeline = cls(env, config) if len(params) >= 2 else cls(env)
    if getattr(pipeline, "config", None) is None:
        pipeline.config = config
    return pipeline


def pipeline_name(settings: Any) -> str | None:
    """``settings.pipeline.type`` (or ``settings.pipeline`` when it is a string)."""
    pipeline = settings.get("pipeline") if hasattr(settings, "get") else None
    if isinstance(pipeline, str):
        return pipeline
    if hasattr(pipeline, "get"):
        value = pipeline.get("type")
        return str(value) if value is not None else None
    return None


def is_seed_factory(factory: Any) -> bool:
    """Whether ``factory`` follows the Experiment Manager (``create(name, config, env, id)``)."""
    return isinstance(factory, type) and issubclass(factory, PipelineFactory) or (
        not isinstance(factory, type) and isinstance(factory, PipelineFactory))


def is_seed_pipeline(cls: Any) -> bool:
    """Whether a Pipeline subclass is built as ``cls(env, config)`` (its first argument is ``env``)."""
    if not isinstance(cls, type):
        return False
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    return bool(params) and params[0].name == "env"
