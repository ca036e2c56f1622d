"""Shared helpers for the benchmark scripts (not part of the package).

Importing this module writes runstore's bytecode first (see ``ensure_bytecode``), so
that every script's fresh-process figures time importing runstore, not compiling it."""

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


def ensure_bytecode(python: str, module: str = "runstore") -> None:
    """Write the ``.pyc`` files of ``module``'s package under ``python``.

    A fresh-process figure must include importing the modules, not compiling them:
    ``pip install`` compiles a package's bytecode, but an editable install (``pip
    install -e``) leaves that to the first import, and with ``PYTHONDONTWRITEBYTECODE``
    set (it is on some machines) every process compiles every module again: 30-50 ms
    more on runstore's first query. Peers installed from wheels have their bytecode.
    """
    import subprocess

    code = ("import compileall, importlib, os; m = importlib.import_module(%r); "
            "compileall.compile_dir(os.path.dirname(m.__file__), quiet=2)" % module)
    subprocess.run([python, "-c", code], capture_output=True, timeout=300)


ensure_bytecode(__import__("sys").executable)
