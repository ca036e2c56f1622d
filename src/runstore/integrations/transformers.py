"""Hugging Face ``transformers`` Trainer callback.

    from transformers import Trainer
    from runstore.integrations.transformers import RunstoreCallback

    trainer = Trainer(model, args, train_dataset=..., callbacks=[RunstoreCallback(repo="runs")])

Pass ``report_to="none"`` in ``TrainingArguments`` to keep other trackers out.
"""

from __future__ import annotations

from typing import Any, Mapping

from ._common import Guard, clean_params, guarded, merge_params, open_run, prefix_map, require, track_metrics

_transformers = require("transformers", "transformers")

# Keys the Trainer logs once at the end of training: they are summary params,
# not 1-point curves.
_ONE_OFF = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss")
_ONE_OFF_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")


class RunstoreCallback(_transformers.TrainerCallback):
    """Params from ``TrainingArguments`` and the model config at ``on_train_begin``;
    ``on_log`` metrics as curves at the global step (``eval_loss`` -> ``loss``
    with context ``{"subset": "val"}``); end-of-training figures (``train_runtime``,
    ``total_flos``, ...) under the param ``summary``; checkpoints as artifacts on
    ``on_save`` with ``log_checkpoints=True``. Only the main process writes."""

    def __init__(self, repo: Any = None, experiment: str | None = None, name: str | None = None,
                 run_id: str | None = None, context_from_prefix: bool | Mapping[str, str] = True,
                 log_checkpoints: bool = False, run: Any = None, close_on_end: bool | None = None,
                 **run_kwargs: Any) -> None:
        self._args = (run, repo, experiment, name, run_id)
        self._run_kwargs = run_kwargs
        self._prefixes = prefix_map(context_from_prefix)
        self._log_checkpoints = log_checkpoints
        self._close = (run is None) if close_on_end is None else close_on_end
        self._run: Any = None
        self._guard = Guard("transformers callback")

    @property
    def run_id(self) -> str | None:
        """The run's id (None before training starts); unlike ``run`` never resumes a closed run."""
        return None if self._run is None else self._run.id

    @property
    def run(self) -> Any:
        if self._run is None or (self._run.closed and self._args[0] is None):
            if self._run is not None:  # closed at on_train_end; a later evaluate() resumes it
                from .. import Run

                self._run = Run(repo=self._run.repo, run_id=self._run.id)
            else:
                self._run = open_run(*self._args, **self._run_kwargs)
        return self._run

    @guarded
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        run = self.run
        merge_params(run, "args", _args_dict(args))
        config = getattr(model, "config", None)
        if config is not None:
            as_dict = config.to_dict() if hasattr(config, "to_dict") else vars(config)
            merge_params(run, "model_config", as_dict)
        if model is not None and hasattr(model, "num_parameters"):
            merge_params(run, "model", {"class": type(model).__name__, "num_parameters": int(model.num_parameters())})

    @guarded
    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        one_off = {k: v for k, v in logs.items() if _is_one_off(k, logs)}
        if one_off:
            merge_params(self.run, "summary", one_off)
        track_metrics(self.run, logs, state.global_step, self._prefixes, epoch=state.epoch,
                      skip=set(one_off) | {"epoch"})

    @guarded
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not (self._log_checkpoints and state.is_world_process_zero):
            return
        import os

        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder):
            self.run.log_artifact(folder, kind="checkpoint")

    @guarded
    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self._run is None:
            return
        if self._close and not self._run.closed:
            self._run.close("finished")
        else:
            self._run.flush()


def _args_dict(args: Any) -> dict:
    # to_sanitized_dict keeps what a human set (no tokens: hub_token is masked there)
    if hasattr(args, "to_sanitized_dict"):
        return args.to_sanitized_dict()
    return clean_params(vars(args))


def _is_one_off(key: str, logs: Mapping[str, Any]) -> bool:
    if key.endswith(_ONE_OFF_SUFFIXES) or key == "total_flos":
        return True
    # the final averaged train_loss comes together with train_runtime
    return key in _ONE_OFF and "train_runtime" in logs


__all__ = ["RunstoreCallback"]
