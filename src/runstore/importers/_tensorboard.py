"""Import a TensorBoard log directory (event files written by tensorboardX,
``torch.utils.tensorboard``, TensorFlow or Keras), without TensorFlow.

What maps to what (docs/import.md has the table):

* every directory holding ``events.out.tfevents.*`` files is a run (its path
  relative to the log directory is the run name and the source id); its event
  files are read in wall-time order, so a restarted job's points come after the
  first job's (appended, never merged or dropped);
* a sub-directory written by ``add_hparams`` (its events hold the hparams
  plugin's session info) is merged into its parent run: the hparams become the
  param ``hparams`` and its metric scalars sequences of the parent;
* scalars (``simple_value`` and TF2 tensor summaries) become sequences with
  their original step and wall time; ``train/loss``-style tags become ``loss``
  with context ``{"subset": "train"}`` unless ``contexts=False``;
* histograms, images and text become Distribution, Image and Text sequences
  with their steps and wall times; other plugins' values are counted and reported.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
import numpy as np

from ..errors import ImportSourceError
from . import _tfevents
from ._common import ObjectSeries, Series, SourceRun, nested_params

_PATTERN = "events.out.tfevents."
# SessionEndInfo.status (hparams plugin): STATUS_UNKNOWN, SUCCESS, FAILURE, RUNNING
_END_STATUS = {1: "finished", 2: "failed", 3: "running"}


def find_runs(logdir: str | os.PathLike) -> tuple[Path, dict[Path, list[Path]]]:
    """The log directory (resolved) and, for each directory with event files, its files."""
    root = Path(logdir).expanduser()
    if not root.exists():
        raise ImportSourceError(f"{root} does not exist: give the TensorBoard log directory (the --logdir "
                                "you passed to tensorboard)")
    if root.is_file():
        if _PATTERN not in root.name:
            raise ImportSourceError(f"{root} is not a TensorBoard event file (their names start with {_PATTERN}); "
                                    "give the log directory")
        return root.parent.resolve(), {root.parent.resolve(): [root.resolve()]}
    root = root.resolve()
    found: dict[Path, list[Path]] = {}
    try:
        for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
            dirnames.sort()
            files = sorted(Path(dirpath) / f for f in filenames if _PATTERN in f)
            if files:
                found[Path(dirpath)] = files
    except OSError as exc:
        raise ImportSourceError(f"cannot read {exc.filename or root}: {exc.strerror or exc}") from None
    if not found:
        raise ImportSourceError(f"no TensorBoard event files ({_PATTERN}*) under {root}; "
                                "is it the directory given to SummaryWriter / --logdir?")
    return root, found


def _raise(exc: OSError) -> None:
    raise exc


def read_runs(logdir: str | os.PathLike, *, experiment: str | None = None,
              verify: bool = True) -> tuple[Path, list[SourceRun]]:
    """The runs of a log directory, each reading its files only when written."""
    root, dirs = find_runs(logdir)
    # add_hparams writes to <run dir>/<time.time()>: a directory with event files
    # whose parent also has them is read now to see whether it holds hparams.
    merged: dict[Path, list[tuple[Path, list[_tfevents.EventFile]]]] = {}
    early: dict[Path, list[_tfevents.EventFile]] = {}
    for d, files in dirs.items():
        if d != root and d.parent in dirs:
            events = [_read(f, verify) for f in files]
            early[d] = events
            if any(e.hparams or e.hparams_end for e in events):
                merged.setdefault(d.parent, []).append((d, events))
    hp_dirs = {d for kids in merged.values() for d, _ in kids}
    runs = []
    for d, files in dirs.items():
        if d in hp_dirs:
            continue
        rel = d.relative_to(root).as_posix()
        all_files = list(files) + [f for kid, _ in merged.get(d, []) for f in dirs[kid]]
        loader = _Loader(files, early.get(d), merged.get(d, []), verify)
        run = SourceRun(source_id=rel, fingerprint=_fingerprint(all_files), name=rel if rel != "." else root.name,
                        experiment=experiment or root.name, series=loader)
        loader.run = run
        runs.append(run)
    return root, runs


def _fingerprint(files: list[Path]) -> str:
    h = hashlib.sha1()
    for f in sorted(files):
        st = f.stat()
        h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def _read(path: Path, verify: bool) -> _tfevents.EventFile:
    try:
        return _tfevents.read(path, verify)
    except OSError as exc:
        raise ImportSourceError(f"cannot read {path}: {exc.strerror or exc}") from None


class _Loader:
    """Reads a run's files when called (so only one run's points are in memory),
    and fills in the SourceRun fields that need the events."""

    def __init__(self, files: list[Path], early: list | None, kids: list, verify: bool) -> None:
        self.files, self.early, self.kids, self.verify = files, early, kids, verify
        self.run: SourceRun | None = None

    def __call__(self) -> list[Series]:
        run = self.run
        events = self.early or [_read(f, self.verify) for f in self.files]
        events.sort(key=lambda e: (e.first_wall if e.first_wall is not None else float("inf"), e.path.name))
        kid_events = [e for _, evs in self.kids for e in evs]
        walls = [w for e in events + kid_events for w in (e.first_wall, e.last_wall) if w is not None]
        if walls and run is not None:
            run.created_at = min(walls)
            run.ended_at = max(walls)
        series: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        objects: dict[tuple[str, str], list] = {}  # (kind, tag) -> [(step, wall, payload)] in file order
        other: dict[str, int] = {}
        hparams: dict = {}
        problems: list[str] = []
        for e in events + kid_events:
            for tag, cols in e.scalars.items():
                series.setdefault(tag, []).append(cols)
            for kind, table in (("distribution", e.histograms), ("image", e.images), ("text", e.texts)):
                for tag, points in table.items():
                    objects.setdefault((kind, tag), []).extend(points)
            for plugin, count in e.other.items():
                other[plugin] = other.get(plugin, 0) + count
            for key, value in e.hparams.items():
                if key in hparams and hparams[key] != value:
                    problems.append(f"hparam {key!r} is {hparams[key]!r} in one add_hparams call and {value!r} "
                                    "in another; the first is kept")
                    continue
                hparams[key] = value
            if e.hparams_end and run is not None:
                run.status = _END_STATUS.get(e.hparams_end[0], run.status)
                if e.hparams_end[1]:
                    run.ended_at = max(run.ended_at or 0.0, e.hparams_end[1])
            problems.extend(e.problems)
        if run is not None:
            if hparams:
                skipped: list[str] = []
                run.params["hparams"] = nested_params({k: _int_if_whole(v) for k, v in hparams.items()}, skipped)
                problems.extend(skipped)
            for (kind, tag), points in objects.items():
                payloads = [_payload(kind, p) for _, _, p in points]
                keep = [i for i, p in enumerate(payloads) if p is not None]
                if len(keep) < len(points):
                    problems.append(f"{len(points) - len(keep)} {kind} value(s) of tag {tag!r} could not be read")
                name = tag[: -len("/text_summary")] if kind == "text" and tag.endswith("/text_summary") else tag
                run.objects.append(ObjectSeries(name, {}, kind, [points[i][0] for i in keep],
                                                [points[i][1] for i in keep], [payloads[i] for i in keep]))
            for plugin, n in sorted(other.items()):
                problems.append(f"{n} value{'s' if n != 1 else ''} of the TensorBoard plugin {plugin!r}: not imported")
            run.skipped.extend(problems)
        out = []
        for tag, parts in series.items():
            steps = np.concatenate([p[0] for p in parts])
            walls_ = np.concatenate([p[1] for p in parts])
            values = np.concatenate([p[2] for p in parts])
            out.append(Series(tag, {}, steps, values, walls_))
        return out


def _int_if_whole(value: object) -> object:
    # google.protobuf.Value has only doubles: an hparam logged as 32 comes back 32.0
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    return value


def _payload(kind: str, value: object) -> object:
    """What runstore's object constructors take, from a decoded TensorBoard value."""
    if kind == "text":
        return value if isinstance(value, str) else "\n".join(map(str, value))  # type: ignore[arg-type]
    if kind == "image":
        return value.get("encoded") or None  # type: ignore[union-attr]
    return _histogram(value)  # type: ignore[arg-type]


def _histogram(h: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """(counts, bin edges) from a HistogramProto (bucket i holds the values up to
    bucket_limit[i]; the first bucket starts at ``min``) or a TF2 [k, 3] tensor of
    (left, right, count). Degenerate buckets (a constant tensor) get a tiny width,
    and the +-1.797e308 limits TensorFlow puts at the ends become min / max."""
    if "buckets" in h:
        b = h["buckets"]
        if not len(b):
            return None
        counts = b[:, 2].astype(np.float64)
        edges = np.append(b[:, 0], b[-1, 1]).astype(np.float64)
    else:
        counts = np.asarray(h["bucket"], np.float64)
        limits = np.asarray(h["bucket_limit"], np.float64)
        if not len(counts) or len(counts) != len(limits):
            return None
        lo, hi = float(h["min"]), float(h["max"])
        first = min(lo, limits[0]) if len(limits) < 2 else min(lo, limits[0] - (limits[1] - limits[0]))
        edges = np.concatenate(([first], limits))
        if edges[-1] > 1e300:  # TensorFlow's last bucket ends at DBL_MAX
            edges[-1] = hi
    edges[edges < -1e300] = edges[np.isfinite(edges) & (np.abs(edges) <= 1e300)].min(initial=0.0)
    edges[edges > 1e300] = edges[np.isfinite(edges) & (np.abs(edges) <= 1e300)].max(initial=0.0)
    for i in range(1, len(edges)):  # strictly increasing, as Distribution asks
        if edges[i] <= edges[i - 1]:
            edges[i] = np.nextafter(edges[i - 1], np.inf) if edges[i - 1] != 0 else 1e-12
    return np.clip(counts, 0, None), edges
