"""The same logger for the older ``pytorch_lightning`` package.

    from pytorch_lightning import Trainer
    from runstore.integrations.pytorch_lightning import RunstoreLogger
"""

from __future__ import annotations

from ._common import require
from ._lightning_base import make_logger_class

RunstoreLogger = make_logger_class(require("pytorch_lightning", "pytorch-lightning"), "pytorch_lightning")

__all__ = ["RunstoreLogger"]
