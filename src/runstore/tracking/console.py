"""Console capture: ``Run(capture_output=True)`` tees the process's ``sys.stdout`` and
``sys.stderr`` into the run's artifact ``console.log`` (until text sequences exist).

The user sees exactly what they saw before: every write goes to the original
stream first, unchanged; only complete lines are copied, each line as soon as it is
complete, stderr lines prefixed with ``[stderr] ``. One tee per stream per process
serves every capturing run; the streams are put back when the last one stops (if
nobody replaced them meanwhile).

What it does not see: output written to the file descriptors directly (C
extensions, subprocesses): capturing that would need a pipe and a thread between
the process and its terminal, which changes buffering and isatty() for the user.
A failure to write the copy never reaches the program's ``print``.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from typing import Any


NAME = "console.log"
_lock = threading.RLock()
_sinks: dict[int, "Capture"] = {}
_tees: dict[str, "_Tee"] = {}


class Capture:
    """One run's copy of the console: a line-buffered file (a local run's: in its
    artifacts folder; a remote run's: beside its spool, uploaded when it ends)."""

    def __init__(self, run: Any, path: Any) -> None:
        self.run = run
        self.path = path
        self.file = open(self.path, "a", encoding="utf-8", errors="replace", buffering=1)
        self.created_at = time.time()

    def line(self, text: str) -> None:
        try:
            self.file.write(text)
        except Exception:  # a full disk must not break print()
            pass

    def close(self) -> None:
        try:
            self.file.close()
        except Exception:
            pass


class _Tee(io.TextIOBase):
    """Stands in for sys.stdout / sys.stderr: writes through, copies whole lines."""

    def __init__(self, stream: Any, label: str) -> None:
        self._stream = stream
        self._label = label
        self._partial = ""

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        try:
            self._copy(text)
        except Exception:  # never into the program's print
            pass
        return written

    def _copy(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            return
        text = self._partial + text
        cut = text.rfind("\n") + 1
        self._partial = text[cut:]
        if cut:
            lines = text[:cut]
            if self._label:
                lines = "".join(self._label + line for line in lines.splitlines(keepends=True))
            with _lock:
                sinks = list(_sinks.values())
            for sink in sinks:
                sink.line(lines)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._stream, "errors", None)

    def __getattr__(self, name: str) -> Any:  # buffer, mode, name, reconfigure ...
        return getattr(self._stream, name)


def record_artifact(record: dict, capture: Capture) -> None:
    """Enter (or update) ``console.log`` in a run record's artifact list."""
    size = capture.path.stat().st_size if capture.path.exists() else 0
    entry = {"name": NAME, "kind": "console", "path": str(capture.path), "size": size,
             "created_at": capture.created_at}
    record["artifacts"] = [a for a in record.get("artifacts", []) if a["name"] != NAME] + [entry]


def start(run: Any, path: Any, listed: bool = True) -> Capture:
    """Copy console lines into the file ``path`` for ``run`` (``listed``: entered in
    the run's artifacts now, so it can be followed while the run is live)."""
    capture = Capture(run, path)
    if listed:
        run._modify(lambda record: record_artifact(record, capture))
    with _lock:
        _sinks[id(run)] = capture
        for attr, label in (("stdout", ""), ("stderr", "[stderr] ")):
            current = getattr(sys, attr)
            if not isinstance(current, _Tee):
                tee = _Tee(current, label)
                _tees[attr] = tee
                setattr(sys, attr, tee)
    return capture


def stop(run: Any) -> Capture | None:
    """Stop copying into ``run``'s log; the last run to stop puts the streams back."""
    with _lock:
        capture = _sinks.pop(id(run), None)
        if capture is not None:
            capture.close()
        if not _sinks:
            for attr, tee in list(_tees.items()):
                if getattr(sys, attr) is tee:
                    tee.flush()
                    setattr(sys, attr, tee._stream)
                _tees.pop(attr)
    return capture


def _reset_after_fork() -> None:
    # a forked child writes to its parent's runs' logs only if it asks for it itself
    _sinks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
