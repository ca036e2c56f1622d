"""Writes an MLflow store with the real mlflow client (run by tests/test_import_mlflow.py
in a subprocess, so MLflow's process-wide tracking state stays out of the test process).

    python mlflow_writer.py TRACKING_URI ARTIFACT_ROOT
"""

import math
import sys
import tempfile
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

uri, artifacts = sys.argv[1], sys.argv[2]
mlflow.set_tracking_uri(uri)
client = MlflowClient(uri)
exp_a = client.create_experiment("exp-a", artifact_location=str(Path(artifacts) / "a"))
exp_b = client.create_experiment("exp-b", artifact_location=str(Path(artifacts) / "b"))
mlflow.set_experiment("exp-a")

with mlflow.start_run(run_name="parent") as parent:
    mlflow.log_params({"lr": 0.01, "layers": 3, "opt": "adam", "flag": True, "model.depth": 4,
                       "schedule": "cosine(0.1, 10)", "big": 12345678901234})
    mlflow.set_tags({"team": "vision", "empty": "", "mlflow.note.content": "the baseline"})
    for step in range(50):
        mlflow.log_metric("train/loss", 1.0 / (step + 1), step=step)
        mlflow.log_metric("val_acc", step / 50, step=step)
    mlflow.log_metric("weird", math.nan, step=0)
    mlflow.log_metric("weird", math.inf, step=1)
    mlflow.log_metric("weird", -math.inf, step=2)
    mlflow.log_metric("weird", 7.5, step=2)  # two values at one step: both kept
    with tempfile.TemporaryDirectory() as tmp:
        note = Path(tmp) / "notes.txt"
        note.write_text("hello artifacts")
        mlflow.log_artifact(str(note))
    with mlflow.start_run(run_name="child", nested=True):
        mlflow.log_param("seed", 7)
        for step in range(10):
            mlflow.log_metric("acc", 0.1 * step, step=step)

failed = client.create_run(exp_a, run_name="failed-one")
client.log_metric(failed.info.run_id, "x", 1.0, step=0)
client.set_terminated(failed.info.run_id, "FAILED")
killed = client.create_run(exp_a, run_name="killed-one")
client.set_terminated(killed.info.run_id, "KILLED")
running = client.create_run(exp_b, run_name="still-running")
client.log_batch(running.info.run_id, metrics=[
    mlflow.entities.Metric("long", float(i) * 0.5, 1_700_000_000_000 + i, i) for i in range(2000)])
gone = client.create_run(exp_b, run_name="deleted-one")
client.set_terminated(gone.info.run_id)
client.delete_run(gone.info.run_id)
print(parent.info.run_id)
