"""The workflow layer: configs with overrides, the ``main`` decorator, sweeps,
experiments of trials and repeats, pipelines and callbacks, and the Experiment
Manager's model (environments, trackers, levels).

Everything here is built on the public ``Repo``/``Run`` API; see docs/experiments.md.
"""

from .callbacks import Callback, Checkpoint, CheckpointCallback, EarlyStopping, MetricsCSV, MetricsTracker
from .config import insert_value, load_config, multiply
from .environment import Environment
from .experiment import Experiment, Trial, TrialResult, seed_everything
from .factory import PipelineFactory
from .levels import Level, Metric
from .main import main
from .rundirs import iter_run_dirs
from .pipeline import Pipeline, RunStatus
from .serializable import Factory, YAMLSerializable
from .trackers import LogTracker, MLflowTracker, RunstoreTracker, Tracker, TrackerManager, TrackScope

__all__ = [
    "Callback",
    "Checkpoint",
    "CheckpointCallback",
    "EarlyStopping",
    "Environment",
    "Experiment",
    "Factory",
    "Level",
    "LogTracker",
    "MLflowTracker",
    "Metric",
    "MetricsCSV",
    "MetricsTracker",
    "Pipeline",
    "PipelineFactory",
    "RunStatus",
    "RunstoreTracker",
    "TrackScope",
    "Tracker",
    "TrackerManager",
    "Trial",
    "TrialResult",
    "YAMLSerializable",
    "insert_value",
    "iter_run_dirs",
    "load_config",
    "main",
    "multiply",
    "seed_everything",
]
