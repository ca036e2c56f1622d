"""What every importer shares: the neutral shape of a run read from another
tracker, writing it through the public API, idempotence and the summary.

An importer (one module per source) only *reads*: it yields ``SourceRun``
objects. ``write_runs`` turns them into runstore runs:

* each imported run records where it came from in the param ``imported_from``
  (``tool``, ``source``, ``id``, ``fingerprint``), so a second import finds it:
  unchanged runs are skipped, changed ones (the fingerprint moved: a run that
  kept training) are imported again and the old copy deleted *after* the new
  one is complete; ``force=True`` re-imports everything;
* original times are kept: ``Run(created_at=...)``, ``track_many(timestamps=...)``,
  ``close(status, ended_at=...)`` (small hooks in the tracking layer for this);
* nothing is written into the source, and problems (a truncated record, a
  value kind runstore cannot store yet) are collected and reported, not raised,
  unless nothing at all could be read.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .. import Repo, Run
from ..errors import InvalidParamError, RunstoreError

# Metric-name prefixes that name a data subset, as the integrations map them:
# "train/loss", "val_loss" and "eval-loss" become "loss" with context
# {"subset": ...}, so imported curves line up with ones runstore tracked itself.
DEFAULT_PREFIXES: dict[str, str] = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "eval": "val",
    "test": "test",
}

Progress = Callable[[int, int, str], None]  # (runs done, runs in all, what is being read)


def split_prefix(name: str, prefixes: Mapping[str, str] | None = DEFAULT_PREFIXES) -> tuple[str, dict]:
    """``"val/loss"`` -> ``("loss", {"subset": "val"})``; other names unchanged, no context."""
    if prefixes:
        for sep in ("/", "_", "-"):
            head, found, rest = name.partition(sep)
            if found and rest and head.lower() in prefixes:
                return rest, {"subset": prefixes[head.lower()]}
    return name, {}


def prefix_map(contexts: bool | Mapping[str, str]) -> Mapping[str, str] | None:
    if contexts is True:
        return DEFAULT_PREFIXES
    if not contexts:
        return None
    return {str(k).lower(): str(v) for k, v in contexts.items()}


@dataclass
class Series:
    """One numeric sequence: original steps, values, wall-clock timestamps (s), epochs."""

    name: str
    context: dict
    steps: np.ndarray
    values: np.ndarray
    timestamps: np.ndarray
    epochs: np.ndarray | None = None


@dataclass
class ObjectSeries:
    """One object sequence: ``kind`` is image, text or distribution; ``payloads`` are
    encoded image bytes, strings, or (counts, bin edges) pairs."""

    name: str
    context: dict
    kind: str
    steps: list
    timestamps: list
    payloads: list
    epochs: list | None = None


@dataclass
class SourceRun:
    """A run as read from another tracker, before it is written."""

    source_id: str
    fingerprint: str
    name: str | None = None
    experiment: str | None = None
    created_at: float | None = None
    ended_at: float | None = None
    status: str = "finished"
    description: str | None = None
    params: dict = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    parent_id: str | None = None  # the source id of the parent run
    series: list[Series] | Callable[[], list[Series]] = field(default_factory=list)
    artifacts: list[Path] = field(default_factory=list)
    archived: bool = False
    objects: list[ObjectSeries] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what could not be brought along, and why


class ImportResult(list):
    """The runs imported (a list of :class:`runstore.Run`), plus what happened:
    ``unchanged`` (runs already imported and skipped), ``points``, ``skipped``
    (sentences: what was not imported and why) and :meth:`summary`."""

    def __init__(self, tool: str, source: str) -> None:
        super().__init__()
        self.tool = tool
        self.source = source
        self.unchanged: list[Run] = []
        self.replaced = 0
        self.points = 0
        self.objects = 0
        self.skipped: list[str] = []
        self.seconds = 0.0

    def summary(self) -> str:
        rate = f" ({self.points / self.seconds:,.0f} points/s)" if self.seconds > 0 and self.points else ""
        lines = [f"Imported {len(self)} run{'s' if len(self) != 1 else ''} from {self.tool} {self.source}: "
                 f"{self.points:,} points{f' and {self.objects:,} objects' if self.objects else ''} in "
                 f"{self.seconds:.1f} s{rate}"]
        if self.replaced:
            lines.append(f"{self.replaced} changed since the last import: imported again, old copies removed")
        if self.unchanged:
            lines.append(f"{len(self.unchanged)} already imported and unchanged: skipped (--force imports them again)")
        if self.skipped:
            lines.append(f"Not imported ({len(self.skipped)}):")
            lines.extend(f"  - {s}" for s in self.skipped)
        return "\n".join(lines)


def existing_imports(repo: Repo, tool: str) -> dict[tuple[str, str], Run]:
    """(source, id) -> the run imported from there earlier."""
    found: dict[tuple[str, str], Run] = {}
    for run in repo.query(f"run.imported_from.tool == '{tool}'"):
        origin = run.params.get("imported_from") or {}
        found[(str(origin.get("source")), str(origin.get("id")))] = run
    return found


def nested_params(flat: Mapping[str, Any], skipped: list[str]) -> dict:
    """Dotted keys as nested dicts (``"optimizer.lr"`` -> ``{"optimizer": {"lr": ...}}``),
    as runstore's own ``log_params`` stores them. A key that collides with another
    (``"a"`` and ``"a.b"``) keeps its dots as ``_`` and is reported."""
    out: dict = {}
    for key in sorted(flat, key=lambda k: (k.count("."), k)):
        value = flat[key]
        parts = [p for p in str(key).split(".")]
        if any(not p for p in parts):
            parts = [str(key).replace(".", "_")]
        node = out
        ok = True
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                ok = False
                break
            node = nxt
        if ok and parts[-1] not in node:
            node[parts[-1]] = value
            continue
        alt = str(key).replace(".", "_")
        while alt in out:
            alt += "_"
        out[alt] = value
        skipped.append(f"param {key!r} collides with another param's path; stored as {alt!r}")
    return out


_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?|-?\.[0-9]+([eE][-+]?[0-9]+)?")


def typed(value: str) -> Any:
    """A param string typed back where it reads as a bool, an int or a finite float
    (MLflow stores every param as text). Anything else stays text, including
    "007" (an id, not seven), " 2", "nan" and "inf"."""
    if value in ("True", "true"):
        return True
    if value in ("False", "false"):
        return False
    if value in ("None", "null"):
        return None
    if not _NUMBER.fullmatch(value):
        return value
    if value.lstrip("-").isdigit():
        number = int(value)
        return number if -(1 << 63) <= number < (1 << 63) else value
    number_f = float(value)
    return number_f if math.isfinite(number_f) else value


def write_runs(repo: Repo, tool: str, source: str, runs: Iterable[SourceRun], total: int, *,
               experiment: str | None = None, force: bool = False, progress: Progress | None = None,
               contexts: bool | Mapping[str, str] = True, notes: Iterable[str] = ()) -> ImportResult:
    """Write the runs an importer read; see the module docstring."""
    started = time.perf_counter()
    result = ImportResult(tool, source)
    result.skipped.extend(notes)
    before = existing_imports(repo, tool)
    ids: dict[str, str] = {key[1]: run.id for key, run in before.items() if key[0] == source}
    parents: list[tuple[str, str]] = []  # (runstore id, parent source id)
    done = 0
    for src in runs:
        done += 1
        if progress is not None:
            progress(done, total, src.name or src.source_id)
        old = before.get((source, src.source_id))
        if old is not None and not force and old.params["imported_from"].get("fingerprint") == src.fingerprint:
            result.unchanged.append(old)
            if src.parent_id is not None:
                parents.append((old.id, src.parent_id))
            continue
        run = _write_one(repo, tool, source, src, experiment, result, contexts, ids.get(src.parent_id or ""))
        if old is not None:
            repo.delete_run(old.id)
            result.replaced += 1
        ids[src.source_id] = run.id
        if src.parent_id is not None:
            parents.append((run.id, src.parent_id))
        result.append(run)
    # Parents imported after their children, or copies replaced since: point each
    # child at the current copy of its parent.
    mine = {run.id: run for run in result}
    for run_id, parent in parents:
        target = ids.get(parent)
        if target is None:
            result.skipped.append(f"run {run_id}: its parent {parent} is not in the source; no parent set")
            continue
        view = mine.get(run_id) or repo.get_run(run_id)
        if view.refresh().parent != target:
            view.parent = target
    result.seconds = time.perf_counter() - started
    return result


def _write_one(repo: Repo, tool: str, source: str, src: SourceRun, experiment: str | None,
               result: ImportResult, contexts: bool | Mapping[str, str], parent: str | None) -> Run:
    series = src.series() if callable(src.series) else src.series
    prefixes = prefix_map(contexts)
    run = Run(repo=repo, experiment=experiment or src.experiment, name=src.name, tags=src.tags,
              description=src.description, created_at=src.created_at, parent=parent)
    try:
        params = dict(src.params)
        params["imported_from"] = {"tool": tool, "source": source, "id": src.source_id,
                                   "fingerprint": src.fingerprint, "imported_at": time.time()}
        try:
            run.update_params(params)
        except InvalidParamError as exc:
            result.skipped.append(f"{src.source_id}: params could not be stored ({exc}); kept as text")
            run.update_params({"imported_from": params.pop("imported_from"),
                               **{k: repr(v) for k, v in params.items()}})
        for s in series:
            name, ctx = (s.name, s.context)
            if prefixes is not None and not ctx:
                name, ctx = split_prefix(name, prefixes)
            run.track_many(s.values, name, steps=s.steps, epochs=s.epochs, context=ctx or None,
                           timestamps=s.timestamps)
            result.points += len(s.values)
        for obj in src.objects:
            name, ctx = (obj.name, obj.context)
            if prefixes is not None and not ctx:
                name, ctx = split_prefix(name, prefixes)
            try:
                values = [_object(obj.kind, p) for p in obj.payloads]
                run.track_objects(values, name, steps=obj.steps, epochs=obj.epochs, context=ctx or None,
                                  timestamps=obj.timestamps)
            except RunstoreError as exc:
                result.skipped.append(f"{src.name or src.source_id}: {obj.kind} sequence {obj.name!r} not imported "
                                      f"({exc})")
                continue
            result.objects += len(values)
        for path in src.artifacts:
            try:
                run.log_artifact(path)
            except (OSError, ValueError) as exc:
                result.skipped.append(f"{src.source_id}: artifact {path} not copied ({exc})")
        result.skipped.extend(f"{src.name or src.source_id}: {s}" for s in src.skipped)
        if src.archived:
            run.archived = True
        ended = src.ended_at
        if ended is None and src.status != "running":  # no end time recorded: the last point's time
            ended = max([float(s.timestamps.max()) for s in series if len(s.timestamps)] or [src.created_at or 0.0])
        run.close(src.status, ended_at=ended)
    except BaseException:
        # A run half written is worse than none: the next import would skip it.
        run.close("failed")
        repo.delete_run(run.id)
        raise
    return run


def _object(kind: str, payload: Any) -> Any:
    """A runstore object value from what an importer read."""
    from .. import Distribution, Image, Text

    if kind == "image":
        return Image(payload)
    if kind == "text":
        return Text(payload)
    counts, edges = payload
    return Distribution.from_histogram(counts, edges)
