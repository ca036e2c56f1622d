"""Import an Aim repository through the ``aim`` package's own SDK.

Aim's storage (RocksDB containers, its own tree encoding) is only readable
through aim, and aim has no wheels for the newest Pythons and pins many
packages. So the reading happens in a subprocess running
``_aim_reader.py`` under an interpreter that has aim: this one when aim is
installed beside runstore, else the one given with ``python=`` /
``--python`` (a virtual environment made for aim). The reader streams each
run as a JSON line plus raw NumPy columns; this side turns them into
``SourceRun`` objects as they arrive, so one run is in memory at a time.

What maps to what: run hash -> source id; name, experiment, description,
tags, archived, creation and end time; every attribute (``run["hparams"]``
...) -> params; every metric with its context, steps, epochs and timestamps;
Aim's system metrics ``__system__cpu`` -> ``system/cpu`` (the name runstore's
own system metrics use); a run without an end time is still running.
Images, texts and distributions become Image, Text and Distribution
sequences; figures and audio are counted and reported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from ..errors import ImportSourceError
from ._common import ObjectSeries, Series, SourceRun

READER = Path(__file__).with_name("_aim_reader.py")


def find_repo(path: str | os.PathLike) -> Path:
    root = Path(path).expanduser()
    if root.name == ".aim" and root.is_dir():
        root = root.parent
    if not root.exists():
        raise ImportSourceError(f"{root} does not exist: give the folder holding the Aim repository (.aim)")
    if not (root / ".aim").is_dir():
        raise ImportSourceError(f"{root} is not an Aim repository: it has no .aim folder (the folder given to "
                                "`aim init` / Run(repo=...))")
    return root.resolve()


def interpreter(python: str | os.PathLike | None) -> str:
    if python is not None:
        exe = Path(python).expanduser()
        if not exe.exists():
            raise ImportSourceError(f"--python {exe}: no such interpreter (give e.g. /path/to/aim-venv/bin/python)")
        return str(exe)
    if importlib.util.find_spec("aim") is None:
        raise ImportSourceError(
            "importing from Aim needs the aim package: pip install aim, or pass --python with the interpreter "
            "of an environment that has it (aim has no wheels for the newest Pythons)")
    return sys.executable


class AimStream:
    """The reader subprocess and the runs it streams."""

    def __init__(self, root: Path, python: str) -> None:
        self.root = root
        self.python = python
        env = {**os.environ, "AIM_UI_TELEMETRY_ENABLED": "0", "AIM_ENABLE_TRACKING_THREAD": "0"}
        self.proc = subprocess.Popen([python, str(READER), str(root)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.problems: list[str] = []
        first = self._line()
        while first is not None and "warning" in first:
            self.problems.append(f"aim: {first['warning']}")
            first = self._line()
        if first is None or "runs" not in first:
            self._fail()
        self.total = int(first["runs"])

    def _line(self) -> dict | None:
        assert self.proc.stdout is not None
        raw = self.proc.stdout.readline()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            self._fail()
            raise AssertionError("unreachable")

    def _fail(self) -> None:
        self.proc.kill()
        _, err = self.proc.communicate()
        tail = (err or b"").decode("utf-8", "replace").strip().splitlines()[-8:]
        if any("No module named 'aim'" in line for line in tail):
            raise ImportSourceError(f"{self.python} has no aim package: pip install aim into that environment, "
                                    "or pass --python with one that has it")
        raise ImportSourceError(f"aim could not read {self.root}: " + (" | ".join(tail) or "the reader stopped"))

    def runs(self) -> Iterator[SourceRun]:
        assert self.proc.stdout is not None
        try:
            while True:
                header = self._line()
                if header is None:
                    self._fail()
                if header.get("end"):
                    self.problems.extend(header.get("problems", []))
                    break
                if "error" in header:
                    continue  # counted in the final problems
                yield self._run(header, self.proc.stdout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.communicate()

    def _run(self, header: dict, stream: IO[bytes]) -> SourceRun:
        series = []
        for info in header["series"]:
            n = int(info["n"])
            data = _read_exactly(stream, n * 32)
            steps = np.frombuffer(data, "<i8", n, 0)
            values, epochs, stamps = (np.frombuffer(data, "<f8", n, n * 8 * k) for k in (1, 2, 3))
            name = info["name"]
            if name.startswith("__system__"):
                name = "system/" + name[len("__system__"):]
            series.append(Series(name, info["context"] or {}, steps, values, stamps,
                                 None if np.isnan(epochs).all() else epochs))
        objects = []
        for info in header.get("object_series", []):
            kind = {"images": "image", "texts": "text", "distributions": "distribution"}[info["kind"]]
            payloads = info["payloads"]
            if kind == "image":
                payloads = [_read_exactly(stream, int(size)) for size in payloads]
            epochs = info["epochs"]
            objects.append(ObjectSeries(info["name"], info["context"] or {}, kind, info["steps"], info["timestamps"],
                                        payloads, None if all(e is None for e in epochs) else
                                        [np.nan if e is None else e for e in epochs]))
        skipped = [f"{len(names)} {kind.rstrip('s')} sequence{'s' if len(names) != 1 else ''} "
                   f"({', '.join(sorted(names))}): figures and audio are not imported yet"
                   for kind, names in sorted(header.get("objects", {}).items())]
        digest = hashlib.sha1(json.dumps({k: v for k, v in header.items() if k != "objects"},
                                         sort_keys=True).encode()).hexdigest()
        ended = header.get("ended_at")
        return SourceRun(
            source_id=header["hash"],
            fingerprint=digest,
            name=header.get("name"),
            experiment=header.get("experiment") or "default",
            created_at=header.get("created_at"),
            ended_at=ended,
            status="finished" if ended is not None else "running",
            description=header.get("description") or None,
            params=_floats_back(header.get("params") or {}),
            tags=[t for t in header.get("tags", []) if t],
            series=series,
            objects=objects,
            archived=bool(header.get("archived")),
            skipped=skipped,
        )


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise ImportSourceError("the aim reader stopped in the middle of a run (see its message above)")
    return data


def _floats_back(value):
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _floats_back(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats_back(v) for v in value]
    return value
