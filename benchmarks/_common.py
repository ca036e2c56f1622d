"""Shared helpers for the benchmark scripts (not part of the package)."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def workdir(name: str) -> Path:
    """A fresh scratch directory (removed at exit by the caller's cleanup)."""
    base = Path(os.environ.get("RUNSTORE_BENCH_DIR") or tempfile.gettempdir()) / f"runstore-bench-{name}-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    return base


def best_of(fn, repeat: int = 3) -> tuple[float, float]:
    """(median, min) wall time of ``fn()`` over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def row(label: str, value: str, ratio: str = "") -> None:
    print(f"  {label:<58} {value:>16} {ratio}")
