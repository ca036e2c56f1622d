"""The Experiment Manager's vocabulary: levels of the hierarchy and standard metrics.

Code ported from the Experiment Manager imports these instead of
``experiment_manager.common.common``::

    from runstore.experiment import Level, Metric, RunStatus

How each level lands in a repository (docs/experiments.md has the diagram):

=============  ==================================================================
``EXPERIMENT``  a run with the param ``kind: experiment`` (experiment.yaml's name,
                id, desc and settings); parent of the trials
``TRIAL``       a run with ``kind: trial`` (the trial's name, id, settings and the
                summary over its repeats); parent of the repeats
``TRIAL_RUN``   a run with ``kind: repeat`` (repeat index, seed, attempt)
``PIPELINE``    inside the repeat's run: metrics tracked outside an epoch (step only)
``EPOCH``       inside the repeat's run: points tracked with ``epoch=`` set
``BATCH``       inside the repeat's run: points with the context ``{"level": "batch"}``
=============  ==================================================================
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["Level", "Metric", "metric_name"]


class Level(enum.IntEnum):
    """The six levels of an experiment, outermost first."""

    EXPERIMENT = 0
    TRIAL = 1
    TRIAL_RUN = 2
    PIPELINE = 3
    EPOCH = 4
    BATCH = 5

    @property
    def label(self) -> str:
        """Lower-case name, as stored in artifact records and log file names."""
        return self.name.lower()


class Metric(enum.Enum):
    """Standard metric keys for ``epoch_metrics``/``run_metrics`` and trackers.

    A tracked member is stored as a sequence named by its value (``Metric.VAL_LOSS``
    is ``"val_loss"``). Untracked members (``NETWORK``, ``DATA``, ``LABELS``,
    ``STATUS``) only reach the callbacks: ``CheckpointCallback`` reads the model from
    ``Metric.NETWORK``. ``CONFUSION`` holds a confusion matrix (a 2-d array or nested
    lists) and ``CUSTOM`` a ``(name, value)`` pair or a list of them.
    """

    TRAIN_LOSS = "train_loss"
    TRAIN_ACC = "train_acc"
    VAL_LOSS = "val_loss"
    VAL_ACC = "val_acc"
    TEST_LOSS = "test_loss"
    TEST_ACC = "test_acc"
    LEARNING_RATE = "learning_rate"
    EPOCH = "epoch"
    CONFUSION = "confusion"
    CUSTOM = "custom"
    # Untracked: objects handed to callbacks, never stored as numbers.
    NETWORK = "network"
    DATA = "data"
    LABELS = "labels"
    STATUS = "status"

    @property
    def tracked(self) -> bool:
        """Whether values under this key are stored (False for NETWORK, DATA, LABELS, STATUS)."""
        return self not in _UNTRACKED

    def __str__(self) -> str:
        return self.value


_UNTRACKED = frozenset({Metric.NETWORK, Metric.DATA, Metric.LABELS, Metric.STATUS})


def metric_name(key: Any) -> str:
    """The stored name of a metric key: an Enum's value (or name), else ``str(key)``."""
    if isinstance(key, enum.Enum):
        value = key.value
        return value if isinstance(value, str) else key.name.lower()
    return str(key)
