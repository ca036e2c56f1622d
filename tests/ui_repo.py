"""A small generated repository for the UI tests (API and browser)."""

from __future__ import annotations

import numpy as np

from runstore import Repo, Run

MODELS = ("lstm", "gru", "cnn")


def make_ui_repo(path, runs: int = 24, steps: int = 300) -> tuple[Repo, list[str], Run]:
    """(repo, run ids in creation order, the last run, left open: status 'running')."""
    repo = Repo(path)
    rng = np.random.default_rng(0)
    ids = []
    parent = None
    for i in range(runs):
        model = MODELS[i % 3]
        lr = [1e-3, 1e-2, 1e-1][(i // 3) % 3]
        run = Run(repo=repo, experiment="mnist" if i % 4 else "cifar", name=f"{model}-{i}",
                  tags=["best"] if i % 5 == 0 else [], parent=parent if i in (1, 2) else None)
        run["hparams"] = {"lr": lr, "model": model, "layers": 2 + i % 4, "seed": i,
                          "optim": {"name": "adam", "beta": 0.9}}
        x = np.arange(steps)
        loss = np.exp(-x * lr * 5) + rng.normal(0, 0.02, steps) + 0.1
        run.track_many(loss, name="loss", context={"subset": "train"})
        run.track_many(loss[::10] + 0.05, name="loss", steps=x[::10], context={"subset": "val"})
        run.track_many(1 - loss, name="acc", context={"subset": "train"})
        run.track_many(np.linspace(0.1, 0.0, steps) + (0.0 if i else -0.5), name="lr")  # values <= 0 too
        if i == 0:
            parent = run.id
        status = "failed" if i == 5 else "finished"
        if i == runs - 1:
            run.flush()  # the last run stays open ("running") for the live tests
            ids.append(run.id)
            return repo, ids, run
        run.close(status)
        ids.append(run.id)
    raise AssertionError("unreachable")


def add_object_run(repo: Repo, name: str = "objects") -> tuple[str, dict]:
    """A finished run with one sequence of every object type (issue 13), small enough for
    fast tests: (run id, what was tracked, for byte-for-byte comparisons)."""
    import io

    from PIL import Image as PILImage

    from runstore import Array, Audio, Distribution, Figure, Image, Text

    rng = np.random.default_rng(1)
    run = Run(repo=repo, experiment="objects", name=name)
    tracked: dict = {"png": {}, "jpeg": {}, "text": {}, "npy": {}}
    for step in range(0, 50, 5):
        for subset, shade in (("train", 40), ("val", 200)):
            pixels = np.full((12, 16, 3), shade, np.uint8)
            pixels[:, : step // 5 + 1] = 255 - shade  # a bar that grows with the step
            buf = io.BytesIO()
            PILImage.fromarray(pixels).save(buf, format="PNG")
            tracked["png"][(subset, step)] = buf.getvalue()
            run.track(Image(buf.getvalue(), caption=f"{subset} é {step}"), name="samples", step=step,
                      context={"subset": subset})
        run.track(Text(f"generated at step {step}: ünïcode"), name="generations", step=step)
        tracked["text"][step] = f"generated at step {step}: ünïcode"
        run.track(Distribution(rng.normal(step / 10, 1.0, 2000), bins=32), name="weights", step=step,
                  context={"layer": "fc1"})
        matrix = np.arange(9, dtype=np.int64).reshape(3, 3) * step
        run.track(Array(matrix), name="confusion", step=step)
        run.track(Audio(np.sin(np.arange(800) * (step + 1) / 50), rate=8000), name="speech", step=step)
    jpeg = io.BytesIO()
    PILImage.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(jpeg, format="JPEG")
    tracked["jpeg"] = jpeg.getvalue()
    run.track(Image(jpeg.getvalue(), format="jpeg"), name="photo", step=3)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [0, 1, 0.5])
    run.track(Figure(fig), name="roc", step=0)
    plt.close(fig)
    import plotly.graph_objects as go

    run.track(Figure(go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))), name="pr", step=0)
    run.track_many(np.linspace(1, 0, 50), name="loss")
    run.close()
    return run.id, tracked
