"""Keras 3 callback (any backend).

    from runstore.integrations.keras import RunstoreCallback

    model.fit(x, y, validation_split=0.2, epochs=5, callbacks=[RunstoreCallback(repo="runs")])
"""

from __future__ import annotations

from typing import Any, Mapping

from ._common import Guard, guarded, merge_params, open_run, prefix_map, require, track_metrics

_keras = require("keras", "keras")


class RunstoreCallback(_keras.callbacks.Callback):
    """Batch metrics (context ``{"subset": "train", "every": "batch"}``, step = the
    global batch index) and epoch metrics (step = epoch; ``val_loss`` -> ``loss`` with
    ``{"subset": "val"}``, the rest ``{"subset": "train"}``); the optimizer's config
    and ``fit`` params as params. ``log_batches=False`` keeps only epoch curves."""

    def __init__(self, repo: Any = None, experiment: str | None = None, name: str | None = None,
                 run_id: str | None = None, context_from_prefix: bool | Mapping[str, str] = True,
                 log_batches: bool = True, run: Any = None, close_on_end: bool | None = None,
                 **run_kwargs: Any) -> None:
        super().__init__()
        self._args = (run, repo, experiment, name, run_id)
        self._run_kwargs = run_kwargs
        self._prefixes = prefix_map(context_from_prefix)
        self._log_batches = log_batches
        self._close = (run is None) if close_on_end is None else close_on_end
        self._run: Any = None
        self._batch = 0
        self._guard = Guard("keras callback")

    @property
    def run_id(self) -> str | None:
        """The run's id (None before training starts); unlike ``run`` never resumes a closed run."""
        return None if self._run is None else self._run.id

    @property
    def run(self) -> Any:
        if self._run is None:
            self._run = open_run(*self._args, **self._run_kwargs)
        elif self._run.closed and self._args[0] is None:
            from .. import Run

            self._run = Run(repo=self._run.repo, run_id=self._run.id)
        return self._run

    @guarded
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        run = self.run
        if self.params:
            merge_params(run, "fit", dict(self.params))
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and hasattr(optimizer, "get_config"):
            merge_params(run, "optimizer", {"class": type(optimizer).__name__, **optimizer.get_config()})
        if self.model is not None:
            merge_params(run, "model", {"class": type(self.model).__name__, "name": self.model.name,
                                        "num_parameters": int(self.model.count_params())})

    @guarded
    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._log_batches and logs:
            track_metrics(self.run, logs, self._batch, None, context={"subset": "train", "every": "batch"})
        self._batch += 1

    @guarded
    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if not logs:
            return
        # Keras names train metrics bare ("loss") and validation ones "val_loss"
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        rest = {k: v for k, v in logs.items() if k.startswith("val_")}
        track_metrics(self.run, train, epoch, None, epoch=epoch,
                      context={"subset": "train"} if self._prefixes else None)
        track_metrics(self.run, rest, epoch, self._prefixes, epoch=epoch)

    @guarded
    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._run is None:
            return
        if self._close and not self._run.closed:
            self._run.close("finished")
        else:
            self._run.flush()


__all__ = ["RunstoreCallback"]
