"""A child process for the crash and concurrency tests.

    python writer_child.py REPO MODE N FLUSH_INTERVAL

MODE "loop": track forever on three sequences, plus an image every 10 steps
(pixels i % 251) and a text every 50 (issue 13), and print "i time" after every
100 steps (the parent SIGKILLs it). MODE "count": track N values per sequence,
close, exit.
"""

import sys
import time

import numpy as np

from runstore import Image, Repo, Run, Text

repo_path, mode, n, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
repo = Repo(repo_path, flush_interval=interval)
run = Run(repo=repo, experiment=mode, name=f"child-{n}")
run["hparams"] = {"n": n}
print(run.id, flush=True)
seq = run.sequence("handle", context={"kind": "append"})
i = 0
while mode == "loop" or i < n:
    run.track(float(i), name="loss", step=i, context={"subset": "train"})
    run.log_metrics({"acc": i * 0.5}, step=i, context={"subset": "val"})
    seq.append(float(-i), step=i)
    if i % 500 == 499:
        run.track_many(np.full(5, float(i)), name="bulk")
    if mode == "loop" and i % 10 == 0:
        run.track(Image(np.full((8, 8, 3), i % 251, np.uint8)), name="samples", step=i)
        if i % 50 == 0:
            run.track(Text(f"text {i}"), name="notes", step=i)
    if mode == "loop" and i % 100 == 99:
        print(i, time.time(), flush=True)
    i += 1
run.close()
