"""``PipelineFactory``: the Experiment Manager's way to make a trial run's pipeline.

An experiment calls ``factory.create(name, config, env, id)`` once per trial run, with
``name`` = the trial settings' ``pipeline.type`` (None when the settings have none),
``config`` = the trial's resolved settings (a DictConfig), ``env`` = the trial run's
:class:`~runstore.experiment.Environment` and ``id`` = the trial's id from trials.yaml.
A project's factory dispatches on ``name`` (or on the config) and falls back to
``PipelineFactory.create``, which builds pipelines registered with
``@YAMLSerializable.register("name")``.

Without a name (the Experiment Manager's Quick Start has no ``pipeline.type``: its
factory imports its one pipeline class and falls back to ``PipelineFactory.create``
for the rest), ``PipelineFactory.create(None, ...)`` builds the one pipeline there is:
the Pipeline class the experiment's factory module imports or defines (the seed's
pattern: "import all component classes to ensure they're registered"), else the one
registered pipeline. Several candidates and no name is a ``ConfigError`` naming them.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import sys
from typing import Any, Iterator

from ..errors import ConfigError
from .serializable import Factory, YAMLSerializable

__all__ = ["PipelineFactory", "pipeline_name"]


class PipelineFactory(Factory):
    """Creates registered pipelines by name; subclass it and override :meth:`create`."""

    @staticmethod
    def create(name: str | None, config: Any, env: Any, id: Any = None) -> Any:  # noqa: A002 - the seed's name
        from .pipeline import Pipeline

        cls = YAMLSerializable.get_class(str(name)) if name else _the_only_pipeline()
        if not (isinstance(cls, type) and issubclass(cls, Pipeline)):
            raise ConfigError(f"{name!r} is registered as {cls.__name__}, which is not a Pipeline")
        if "from_config" in vars(cls):
            return cls.from_config(config, env, id)
        return make_pipeline(cls, env, config)


_factory_in_use: contextvars.ContextVar[Any] = contextvars.ContextVar("runstore_pipeline_factory", default=None)


@contextlib.contextmanager
def factory_in_use(factory: Any) -> Iterator[None]:
    """While an experiment calls ``factory.create``: the factory whose module
    ``PipelineFactory.create(None, ...)`` looks in for the pipeline to build."""
    token = _factory_in_use.set(factory)
    try:
        yield
    finally:
        _factory_in_use.reset(token)


def _the_only_pipeline() -> type:
    """The pipeline class to build when the trial names none (see the module docstring)."""
    from .pipeline import Pipeline

    def user_pipeline(obj: Any) -> bool:
        return isinstance(obj, type) and issubclass(obj, Pipeline) and not obj.__module__.startswith("runstore.")

    factory = _factory_in_use.get()
    factory_cls = factory if isinstance(factory, type) else type(factory) if factory is not None else None
    found: dict[type, str] = {}
    where = "the factory's module"
    for klass in getattr(factory_cls, "__mro__", ()):
        module = sys.modules.get(klass.__module__)
        if module is None or klass.__module__.startswith(("runstore.", "builtins")):
            continue
        for obj in vars(module).values():
            if user_pipeline(obj):
                found.setdefault(obj, f"{obj.__qualname__} ({obj.__module__})")
    if not found:
        where = "registered"
        for type_name, obj in sorted(YAMLSerializable._registry.items()):
            if isinstance(obj, type) and issubclass(obj, Pipeline) and obj not in found:
                found[obj] = repr(type_name)
    how = ("add `pipeline: {type: <name>}` to base.yaml's settings (the name your factory dispatches on, or a "
           "name registered with @YAMLSerializable.register), or dispatch on the config in your factory")
    if not found:
        raise ConfigError(
            "no pipeline to create: the trial's settings have no pipeline.type (the factory is called as "
            "create(settings.pipeline.type, settings, env, trial id)), and neither the factory's module nor the "
            f"registry has a Pipeline class; {how}"
        )
    if len(found) > 1:
        raise ConfigError(
            f"which pipeline? the trial's settings have no pipeline.type and {len(found)} pipelines are {where}: "
            f"{', '.join(found.values())}; {how}"
        )
    return next(iter(found))


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
