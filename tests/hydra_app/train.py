"""A real Hydra app for tests/test_main_hydra.py: config groups model/{mlp,cnn}, a
defaults list (conf/config.yaml), a structured config (app_config.Config).

APP_OPTIONS (comma-separated) picks @runstore.main's keyword arguments, APP_FAIL
makes jobs whose lr equals it raise, APP_KILL_AT_EPOCH SIGKILLs the process,
APP_SLEEP makes each job take that long.
"""

import os
import signal
import time

import runstore
from app_config import Config

OPTIONS = {name: True for name in os.environ.get("APP_OPTIONS", "").split(",") if name}
SCHEMA = None if OPTIONS.pop("untyped", False) else Config


def derive(cfg):
    cfg.total_steps = cfg.epochs * 100  # a value computed from others, stored and matched


if OPTIONS.pop("update", False):
    OPTIONS["update"] = derive


@runstore.main(SCHEMA, config_path="conf", config_name="config", **OPTIONS)
def train(run, cfg):
    """Train a toy model."""
    for epoch in range(cfg.epochs):
        # the fluent API: lands in this job's run
        runstore.log_metric("loss", cfg.lr / (epoch + 1), step=epoch)
        if os.environ.get("APP_KILL_AT_EPOCH") == str(epoch):
            run.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(os.environ.get("APP_SLEEP", "0")))
    with open("cwd.txt", "w") as handle:  # where the function ran (chdir=True: the run's artifacts folder)
        handle.write(os.getcwd())
    if os.environ.get("APP_FAIL") == str(cfg.lr):
        raise RuntimeError(f"failing for lr={cfg.lr}")
    return cfg.lr * 10 + cfg.epochs  # the objective Optuna minimises


if __name__ == "__main__":
    train()
