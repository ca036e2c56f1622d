"""Framework integrations: thin adapters over the public ``Run``/``Repo`` API.

One module per framework; each imports its framework lazily (on first use of the
adapter), logs from rank 0 only, and never raises into the training loop: a
runstore error inside a callback is logged once as a warning and tracking goes on
(MLflow wraps its autologgers the same way).

    from runstore.integrations.lightning import RunstoreLogger
    from runstore.integrations.transformers import RunstoreCallback
    from runstore.integrations.keras import RunstoreCallback
    from runstore.integrations.xgboost import RunstoreCallback
    from runstore.integrations.lightgbm import runstore_callback
    from runstore.integrations.optuna import RunstoreCallback, runstore_journal_storage
    from runstore.integrations.ray import RunstoreLoggerCallback
"""

from ._common import DEFAULT_PREFIXES, split_prefix

__all__ = ["DEFAULT_PREFIXES", "split_prefix"]
