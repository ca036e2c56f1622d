"""Writes one run into an Aim repository with the real aim SDK and prints, as JSON,
every point it tracked as aim itself reads it back (run by tests/test_import_aim.py,
one process per run as in training: aim loses the sequences of a second run that
reuses a context in the same process).

    python aim_writer.py REPO_PATH first|second|crashed
"""

import json
import math
import os
import sys

import numpy as np
from aim import Distribution, Image, Run, Text

path, which = sys.argv[1], sys.argv[2]
expected = {}


def record(run):
    seqs = []
    for name, context, _ in run.iter_sequence_info_by_type(("float", "int")):
        metric = run.get_metric(name, context)  # run.metrics() hides an archived run's metrics
        steps, (values, epochs, stamps) = metric.data.numpy()
        seqs.append({"name": metric.name, "context": metric.context.to_dict(), "steps": steps.tolist(),
                     "values": [v if math.isfinite(v) else repr(v) for v in values.tolist()],
                     "epochs": [e if e == e else None for e in epochs.tolist()], "timestamps": stamps.tolist()})
    expected[run.hash] = {"name": run.name, "experiment": run.experiment, "created_at": run.creation_time,
                          "sequences": seqs}


if which == "first":
    first = Run(repo=path, experiment="baseline", system_tracking_interval=None)
    first.name = "first"
    first.description = "the first one"
    first.add_tag("good")
    first["hparams"] = {"lr": 0.001, "batch": 64, "optimizer": {"name": "adam", "betas": [0.9, 0.999]},
                        "use_bn": True, "note": None}
    first["dataset"] = "mnist"
    for step in range(300):
        epoch = step // 100
        first.track(1.0 / (step + 1), name="loss", step=step, epoch=epoch, context={"subset": "train"})
        if step % 10 == 0:
            first.track(step / 300, name="acc", step=step, epoch=epoch, context={"subset": "val", "fold": 1})
    first.track(float("nan"), name="odd", step=0)
    first.track(float("inf"), name="odd", step=1)
    first.track(Text("hello"), name="notes", step=0)
    first.track(Text("world"), name="notes", step=1)
    pixels = (np.arange(8 * 8 * 3) % 256).astype(np.uint8).reshape(8, 8, 3)
    first.track([Image(pixels), Image(255 - pixels)], name="samples", step=0, context={"subset": "val"})
    first.track(Distribution(np.linspace(-1.0, 1.0, 101), bin_count=10), name="weights", step=5)
    record(first)
    first.close()

elif which == "second":
    second = Run(repo=path, experiment="baseline", system_tracking_interval=None)
    second["hparams"] = {"lr": 0.01}
    for step in range(50):
        second.track(step * 2.0, name="loss", step=step, context={"subset": "train"})
    record(second)
    second.archived = True
    second.close()

else:
    crashed = Run(repo=path, experiment="other", system_tracking_interval=None)
    crashed.name = "crashed"
    for step in range(20):
        crashed.track(float(step), name="progress", step=step)
    record(crashed)
print(json.dumps(expected), flush=True)
if which == "crashed":
    os._exit(0)  # no close, no atexit: the run stays open in Aim's eyes, as after a crash
