"""The workflow layer: configs with overrides, the ``main`` decorator, sweeps,
experiments of trials and repeats, pipelines and callbacks.

Everything here is built on the public ``Repo``/``Run`` API; see docs/experiments.md.
"""

from .callbacks import Callback, Checkpoint, EarlyStopping, MetricsCSV
from .config import insert_value, load_config, multiply
from .experiment import Experiment, Trial, TrialResult, seed_everything
from .main import main
from .pipeline import Pipeline, RunStatus

__all__ = [
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "Experiment",
    "MetricsCSV",
    "Pipeline",
    "RunStatus",
    "Trial",
    "TrialResult",
    "insert_value",
    "load_config",
    "main",
    "multiply",
    "seed_everything",
]
