"""A writer for the lease tests: resume RUN_ID and track until stopped.

    python lease_child.py REPO RUN_ID FLUSH_INTERVAL MIN_STALE

Prints "ready PID" once it holds the run; when tracking raises (the run was taken
over or deleted) prints "stopped ErrorType: message" and exits with code 7.
"""

import os
import sys
import time

from runstore import Repo, Run, RunstoreError
from runstore.tracking import lease as _lease

repo_path, run_id, interval, min_stale = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
_lease.MIN_STALE = min_stale
run = Run(repo=Repo(repo_path, flush_interval=interval), run_id=run_id)
print("ready", os.getpid(), flush=True)
try:
    while True:
        run.track(1.0, name="loss")
        time.sleep(0.002)  # a shared 2-core machine: do not hog it
except RunstoreError as exc:
    print(f"stopped {type(exc).__name__}: {exc}", flush=True)
    sys.exit(7)
