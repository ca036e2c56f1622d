"""The server's write side: group commit of every client's ops, exactly once.

Flight calls run on gRPC's threads; each hands its op to :class:`Ingest` and
waits.  One committer thread takes *everything* queued, applies it in one write
transaction (``runstore.tracking.replica.commit``) and wakes the callers, which then
acknowledge.  While a commit runs, the next ops queue up and go together into
the next one: with a hundred clients there is one fsync per commit, not a
hundred, and a lone client waits only for its own commit (no timer).

Exactly once: each run's record keeps ``writers`` = {writer id: highest op
number applied}, written in the same transaction as the op's effect.  An op at
or below that number is a duplicate (acknowledged, not applied); the next
number is applied; a gap is refused (the client resends in order).  A server
killed at any moment has either committed an op with its number or neither.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..tracking import replica as _replica
from . import _artifacts
from . import _protocol as P
from ..errors import RunstoreError


class _Pending:
    __slots__ = ("op", "batch", "result", "done")

    def __init__(self, op: dict, batch: Any) -> None:
        self.op, self.batch, self.result = op, batch, None
        self.done = threading.Event()


class _Staged:
    """One run's share of a commit."""

    __slots__ = ("run", "create", "edits", "marks", "clock")

    def __init__(self, run: Any) -> None:
        self.run = run
        self.create: tuple[dict, dict] | None = None
        self.edits: list[dict] = []
        self.marks: dict[str, int] = {}
        self.clock: tuple[float, float] | None = None

    def edit(self, record: dict, params: dict) -> None:
        for op in self.edits:
            _apply_edit(op, record, params)
        writers = record.setdefault("writers", {})
        writers.update(self.marks)
        if self.clock is not None:
            # The server's receive time beside the client's send time: the two
            # clocks' offset can be read off every run (docs/server.md, Clocks).
            record["server_clock"] = {"received_at": self.clock[0], "client_sent_at": self.clock[1]}


def _apply_edit(op: dict, record: dict, params: dict) -> None:
    for key, value in (op.get("set") or {}).items():
        record[key] = value
    tags = record.setdefault("tags", [])
    for tag in op.get("tags+") or ():
        if tag not in tags:
            tags.append(tag)
    for tag in op.get("tags-") or ():
        if tag in tags:
            tags.remove(tag)
    for key, value in (op.get("params") or {}).items():
        params[key] = value
    for key in op.get("params-") or ():
        params.pop(key, None)
    artifact = op.get("artifact")
    if artifact is not None:
        arts = [a for a in record.setdefault("artifacts", []) if a["name"] != artifact["name"]]
        arts.append(artifact)
        record["artifacts"] = arts


class Ingest:
    """Applies ops from every client of one repository (see the module docstring)."""

    def __init__(self, repo: Any) -> None:
        self.repo = repo
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._writers: dict[str, Any] = {}   # run id -> _replica.writer Run
        self._marks: dict[str, dict] = {}    # run id -> {writer: number}, as committed
        self._stopping = False
        self.commits = 0
        self.ops = 0
        self._thread = threading.Thread(target=self._loop, name="runstore-ingest", daemon=True)
        self._thread.start()

    def submit(self, op: dict, batch: Any = None) -> dict:
        """Queue ``op`` and wait until it is committed (or refused); its acknowledgement.
        ``batch``: the op's points, as :func:`decode_points` returns them."""
        item = _Pending(op, batch)
        with self._cond:
            if self._stopping:
                return {"error": "the server is shutting down; retry", "retry": True}
            self._queue.append(item)
            self._cond.notify()
        item.done.wait()
        return item.result

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                items, self._queue = self._queue, []
                if not items and self._stopping:
                    return
            try:
                self._apply(items)
            except BaseException as exc:  # never leave a caller waiting
                for item in items:
                    if item.result is None:
                        item.result = {"error": f"the server could not commit: {exc}", "retry": True}
            for item in items:
                item.done.set()

    def _marks_of(self, run_id: str) -> dict | None:
        marks = self._marks.get(run_id)
        if marks is None:
            found = _replica.stored(self.repo, run_id)
            if found is None:
                return None
            marks = self._marks[run_id] = dict(found[0].get("writers") or {})
        return marks

    def _apply(self, items: list[_Pending]) -> None:
        staged: dict[str, _Staged] = {}
        now = time.time()
        for item in items:
            try:
                item.result = self._stage(item, staged, now)
            except RunstoreError as exc:
                item.result = {"error": str(exc)}
            except (KeyError, TypeError, ValueError) as exc:
                item.result = {"error": f"malformed op ({type(exc).__name__}: {exc})"}
            except OSError as exc:  # an artifact could not be written (disk full...): the client retries
                item.result = {"error": f"the server could not store an artifact: {exc}", "retry": True}
        if not staged:
            return
        try:
            _replica.commit(self.repo, [
                _replica.Change(s.run, s.create, s.edit) for s in staged.values()
            ])
        except BaseException as exc:
            # Nothing was committed: forget the queued points and the tentative
            # numbers, so that the clients' retries are applied afresh.
            for run_id in staged:
                self._writers.pop(run_id, None)
                self._marks.pop(run_id, None)
            for item in items:
                if item.result is not None and item.result.get("ok"):
                    item.result = {"error": f"the server could not commit: {exc}", "retry": True}
            if not isinstance(exc, Exception):
                raise
            return
        for run_id, s in staged.items():
            self._marks.setdefault(run_id, {}).update(s.marks)
        self.commits += 1
        self.ops += sum(1 for item in items if item.result and item.result.get("ok"))

    def _stage(self, item: _Pending, staged: dict[str, _Staged], now: float) -> dict:
        op = item.op
        run_id, writer, number = op["run"], str(op["w"]), int(op["n"])
        s = staged.get(run_id)
        marks = self._marks_of(run_id)
        creating = op.get("create") is not None
        if marks is None and not (creating or (s is not None and s.create is not None)):
            return {"error": f"run {run_id} does not exist on the server (deleted?)"}
        last = (s.marks.get(writer) if s is not None else None) or (marks or {}).get(writer, 0)
        if number <= last:
            return {"ok": 1, "dup": 1}
        if number != last + 1:
            return {"error": f"op {number} of writer {writer} arrived before op {last + 1}; resend in order",
                    "expect": last + 1}
        if s is None:
            run = self._writers.get(run_id)
            if run is None:
                run = self._writers[run_id] = _replica.writer(self.repo, run_id)
            s = _Staged(run)
        if item.batch is not None:
            _stage_points(s.run, op, item.batch)  # raises before queuing anything
        if "blob" in op:  # an artifact's chunk: written now, idempotent if the op comes again
            if op.get("data") is None:
                return {"error": f"a chunk of artifact {op['blob'].get('name')!r} came without its data "
                                 "(its staged copy on the client is gone)"}
            _artifacts.write_chunk(Path(self.repo.path), run_id, writer, op["blob"], op["data"])
        if "artifact" in op:
            op = dict(op, artifact=_artifacts.finish(Path(self.repo.path), run_id, writer, op["artifact"]))
        staged[run_id] = s
        if creating:
            record, params = op["create"]
            s.create = (record, params)
        if any(k in op for k in ("set", "tags+", "tags-", "params", "params-", "artifact")):
            s.edits.append(op)
        s.marks[writer] = number
        s.clock = (now, float(op.get("sent") or 0.0))
        return {"ok": 1}


def decode_points(op: dict, batch: Any) -> list[tuple]:
    """A points batch -> [(seq index, values, steps, has_step, epochs, times)], one
    stretch per sequence, NumPy views of the batch's buffers (no copy).

    Runs on the gRPC thread that received the batch, so that decoding overlaps the
    committer's work instead of queuing behind it; ValueError for a malformed batch."""
    seqs = op.get("seqs") or []
    cols = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
    idx = P.to_numpy(cols["seq"], np.int32)
    n = len(idx)
    if not n:
        return []
    if idx.min() < 0 or idx.max() >= len(seqs):
        raise ValueError("a point names a sequence the op does not list")
    has_step = P.valid(cols["step"])  # None: every step given
    steps = P.to_numpy(cols["step"], np.int64)
    values = P.to_numpy(cols["value"], np.float64)
    epochs = P.to_numpy(cols["epoch"], np.float64)
    times = P.to_numpy(cols["time"], np.float64)
    # The client writes each sequence's points as one stretch; stretches in order.
    if idx[0] == idx[-1] and (n < 2 or not np.any(idx != idx[0])):
        bounds = [(0, n)]
    else:
        edges = np.flatnonzero(np.diff(idx)) + 1
        bounds = zip(np.r_[0, edges].tolist(), np.r_[edges, n].tolist())
    return [(int(idx[lo]), values[lo:hi], steps[lo:hi], None if has_step is None else has_step[lo:hi],
             epochs[lo:hi], times[lo:hi]) for lo, hi in bounds]


def _stage_points(run: Any, op: dict, stretches: list[tuple]) -> None:
    """Queue decoded points on the run's writer (names validated first: all or nothing)."""
    seqs = op.get("seqs") or []
    for name, context in seqs:  # unknown or invalid names fail here, before any point is queued
        run._sequence(name, context)
    for k, values, steps, has_step, epochs, times in stretches:
        name, context = seqs[k]
        _replica.append(run, name, context, values, steps, has_step, epochs, times)
