"""Lightning (``lightning.pytorch``) logger.

    from lightning.pytorch import Trainer
    from runstore.integrations.lightning import RunstoreLogger

    trainer = Trainer(logger=RunstoreLogger(repo="runs", experiment="mnist"))

For the older ``pytorch_lightning`` package use
``runstore.integrations.pytorch_lightning.RunstoreLogger``.
"""

from __future__ import annotations

from ._common import require
from ._lightning_base import make_logger_class

RunstoreLogger = make_logger_class(require("lightning.pytorch", "lightning"), "lightning")

__all__ = ["RunstoreLogger"]
