"""A writer for the lease tests: resume RUN_ID and track until stopped.

    python lease_child.py REPO RUN_ID FLUSH_INTERVAL MIN_STALE

Prints "ready PID" once it holds the run; when tracking raises (the run was taken
over or deleted) prints "stopped ErrorType: message" and exits with code 7.

SIGUSR1 freezes it (alive, but no flush and no heartbeat) until SIGUSR2. Not SIGSTOP:
a process stopped inside a write transaction holds LMDB's writer lock, and every
other writer of the repository would wait for it for ever. Frozen here, it holds the
run's lock, which the flush takes, so it is never frozen mid-transaction.
"""

import os
import signal
import sys
import time

from runstore import Repo, Run, RunstoreError
from runstore.tracking import lease as _lease

repo_path, run_id, interval, min_stale = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
_lease.MIN_STALE = min_stale
run = Run(repo=Repo(repo_path, flush_interval=interval), run_id=run_id)
state = {"freeze": False, "frozen": False}
signal.signal(signal.SIGUSR1, lambda *_: state.update(freeze=True))
signal.signal(signal.SIGUSR2, lambda *_: state.update(freeze=False))
print("ready", os.getpid(), flush=True)
try:
    while True:
        run.track(1.0, name="loss")
        if state["freeze"]:
            with run._lock:  # waits for a flush in progress; then none can start
                print("frozen", flush=True)
                while state["freeze"]:
                    time.sleep(0.01)
        time.sleep(0.002)  # a shared 2-core machine: do not hog it
except RunstoreError as exc:
    print(f"stopped {type(exc).__name__}: {exc}", flush=True)
    sys.exit(7)
