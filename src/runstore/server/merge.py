"""``runstore merge SRC... --into DEST``: join repositories written apart.

The zero-infrastructure path for clusters without a reachable server: each node
writes its own repository (a local disk, never NFS), and the repositories are
merged afterwards.  Runs are independent and their ids carry randomness, so
they never collide by accident: a run absent from DEST is copied whole (record,
params, every point with its step, epoch and timestamp, artifacts); a run
already there with the same contents is skipped (merging twice is harmless); a
run there with *different* contents is reported as a conflict and DEST's copy
is kept.

Reading uses the public API (read-only repositories, run views, sequences'
NumPy arrays); writing uses the tracking layer's replica hooks, the same ones
the server writes through, so a copied run is stored with its own record and
the points' original timestamps.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..tracking import replica as _replica
from ..tracking.repo import Repo

# Record fields that say where and how a copy was written, not what the run is.
_VOLATILE = ("writers", "server_clock", "artifacts")


@dataclass
class MergeReport:
    copied: int = 0
    points: int = 0
    artifacts: int = 0
    same: int = 0
    conflicts: list[str] = field(default_factory=list)


def _fingerprint(repo: Repo, run_id: str) -> tuple:
    found = _replica.stored(repo, run_id)
    if found is None:
        return ()
    record, params = found
    record = {k: v for k, v in record.items() if k not in _VOLATILE}
    arts = sorted((a["name"], a.get("size")) for a in found[0].get("artifacts") or [])
    seqs = sorted(
        (seq.name, repr(sorted(seq.context.items())), seq.count, seq.first_step, seq.last_step, seq.last,
         seq.min, seq.max)
        for seq in repo.get_run(run_id).metrics()
    )
    return (repr(sorted(record.items())), repr(params), arts, seqs)


def _differences(a: tuple, b: tuple) -> str:
    parts = [what for what, x, y in zip(("attributes", "params", "artifacts", "sequences"), a, b) if x != y]
    return ", ".join(parts) or "contents"


def merge(sources: list[str | os.PathLike], dest: str | os.PathLike,
          echo: Callable[[str], None] | None = None) -> MergeReport:
    """Copy every run of ``sources`` that ``dest`` lacks (see the module docstring)."""
    target = Repo(dest)
    report = MergeReport()
    for source in sources:
        src = Repo(source, create=False, readonly=True)
        if Path(src.path).resolve() == Path(target.path).resolve():
            raise ValueError(f"{source} is the destination itself; name other repositories to merge from")
        for view in src.runs():
            run_id = view.id
            if run_id in target:
                mine, theirs = _fingerprint(target, run_id), _fingerprint(src, run_id)
                if mine == theirs:
                    report.same += 1
                else:
                    report.conflicts.append(
                        f"run {run_id} ({view.name or 'unnamed'}) is in {src.path} and {target.path} with "
                        f"different {_differences(mine, theirs)}; kept {target.path}'s copy")
                continue
            report.points += _copy_run(src, target, run_id)
            report.artifacts += _copy_artifacts(src, target, run_id)
            report.copied += 1
            if echo is not None:
                echo(f"copied run {run_id} ({view.name or 'unnamed'}) from {src.path}")
    return report


def _copy_run(src: Repo, dest: Repo, run_id: str) -> int:
    record, params = _replica.stored(src, run_id)
    record = dict(record)
    record.pop("writers", None)  # numbers of the source's writers mean nothing here
    arts = []
    for art in record.get("artifacts") or []:
        art = dict(art)
        art["path"] = str(Path(dest.path) / "artifacts" / run_id / art["name"])
        arts.append(art)
    record["artifacts"] = arts
    writer = _replica.writer(dest, run_id)
    points = 0
    for seq in src.get_run(run_id).metrics():
        if not seq.count:
            continue
        cols = seq.numpy()
        _replica.append(writer, seq.name, seq.context, cols["values"], cols["steps"], None, cols["epochs"],
                        cols["timestamps"])
        points += len(cols["values"])
    # One transaction: the run appears with all its points or not at all.
    _replica.commit(dest, [_replica.Change(writer, create=(record, params))])
    return points


def _copy_artifacts(src: Repo, dest: Repo, run_id: str) -> int:
    folder = Path(src.path) / "artifacts" / run_id
    if not folder.is_dir():
        return 0
    target = Path(dest.path) / "artifacts" / run_id
    shutil.copytree(folder, target, dirs_exist_ok=True)
    return sum(1 for _ in folder.iterdir())


def describe(report: MergeReport, dest: Any) -> list[str]:
    lines = [f"merged {report.copied} run(s) ({report.points:,} points, {report.artifacts} artifact(s)) into {dest}"]
    if report.same:
        lines.append(f"{report.same} run(s) were there already with the same contents")
    return lines
