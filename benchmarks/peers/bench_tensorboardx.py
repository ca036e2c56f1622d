"""TensorBoard event files through tensorboardX's SummaryWriter: write speed and disk only.

Used the way its docs show: one ``SummaryWriter(logdir)`` per run,
``add_scalar(tag, value, global_step)`` per value (there is no batching call:
``add_scalars`` writes one extra event file per tag, a different layout),
``add_hparams`` for the params, ``close()``. ``add_scalar`` puts the event on a
queue that a background thread writes; ``close()`` flushes and closes the file
(no fsync).

Selecting runs and reading curves are not measured: TensorBoard has no query API
(the reader lives in the tensorboard package, a web-UI backend that loads whole
event files), so workloads 3 and 4 are "n/a" for it.
"""

from __future__ import annotations

import time
from importlib.metadata import version

import _workloads as w
from tensorboardX import SummaryWriter


def _tag(name: str) -> str:
    # no context: the nearest equivalent is TensorBoard's tag hierarchy
    return f"{w.CONTEXT['subset']}/{name}"


def track_per_value(wd: w.Workdir, steps: int, _subset: int) -> tuple[float, int]:
    writer = SummaryWriter(str(wd.sub("track-value")))
    add_scalar, names = writer.add_scalar, w.NAMES
    tags = {name: _tag(name) for name in names}
    t = time.perf_counter()
    for step in range(steps):
        values = w.step_values(step)
        for name in names:
            add_scalar(tags[name], values[name], step)
    writer.close()
    return time.perf_counter() - t, steps


def build(wd: w.Workdir, params: list[dict]) -> tuple[float, str]:
    root = wd.sub("build")
    t = time.perf_counter()
    for i, p in enumerate(params):
        writer = SummaryWriter(str(root / f"run-{i}"))
        curve = w.loss_curve(i)
        for step, value in enumerate(curve):
            writer.add_scalar(w.METRIC, value, step)
        writer.add_hparams(p, {"hparam/final_loss": curve[-1]})
        writer.close()
    return time.perf_counter() - t, str(root)


if __name__ == "__main__":
    w.main("tensorboardX", version("tensorboardX"), track_per_value=track_per_value, build=build,
           notes={"track_per_value": "SummaryWriter.add_scalar per value (no batching call)",
                  "build": "one SummaryWriter (logdir) per run, add_hparams at the end",
                  "durability": "a background thread writes the event file; close() flushes (no fsync)"})
