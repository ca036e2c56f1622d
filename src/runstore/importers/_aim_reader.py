"""Reads an Aim repository with the ``aim`` SDK and streams its runs to stdout.

runstore.importers runs this file in a subprocess, under the interpreter that has
``aim`` (the current one, or one given with ``--python``: aim has no wheels for
the newest Pythons). It imports only aim, NumPy and the standard library, never
runstore, so any environment with aim can run it.

Aim writes into a repository while reading it (RocksDB log recovery, lock files,
index repair), so the repository's ``.aim`` folder is copied to a temporary
directory and the copy is read: the source is never written. Aim's own union
view of the index and every run's chunk is used, so runs the index has not
caught up with (no ``aim up`` since they ran) are read too.

Output, for each run: one JSON line (the run's attributes and its sequences'
names, contexts and lengths), then for each sequence its steps (int64), values,
epochs and timestamps (float64) as raw little-endian bytes. A final JSON line
``{"end": ...}`` carries the counts of what was not readable.
"""

import json
import math
import os
import shutil
import sys
import tempfile

import aim  # noqa: F401  first: an interpreter without aim fails here, and the importer says so
import numpy as np  # aim depends on it

OBJECT_TYPES = {"images": "aim.image", "texts": "aim.text", "distributions": "aim.distribution",
                "figures": "aim.figure", "audios": "aim.audio"}
# the kinds brought along (as runstore Image/Text/Distribution), with aim's getter
READABLE = {"images": "get_image_sequence", "texts": "get_text_sequence",
            "distributions": "get_distribution_sequence"}


def plain(value, depth=0):
    """Aim attributes as JSON: dicts, lists, numbers, strings; NaN/inf as strings tagged so."""
    if depth > 100:
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, dict):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    if hasattr(value, "item"):
        return plain(value.item(), depth + 1)
    return repr(value)


def union_view(repo):
    # Repo.request_tree('meta') reads only the index when one exists; Aim's
    # RocksUnionContainer (index + every run's chunk) is what `aim up` shows.
    try:
        from aim.sdk.repo import ContainerConfig
        from aim.storage.union import RocksUnionContainer

        union = RocksUnionContainer(os.path.join(repo.path, "meta"), read_only=True)
        repo.persistent_pool[ContainerConfig("meta", None, True)] = union  # the pool itself holds weak refs
        repo.container_pool[ContainerConfig("meta", None, True)] = union
    except Exception as exc:  # an Aim without these internals: runs the index knows are still read
        print(json.dumps({"warning": f"reading only indexed runs ({type(exc).__name__}: {exc})"}), flush=True)


def main(path):
    from aim import Repo
    from aim.sdk.run import Run

    src = os.path.join(path, ".aim")
    out = sys.stdout.buffer
    with tempfile.TemporaryDirectory(prefix="runstore-aim-") as tmp:
        shutil.copytree(src, os.path.join(tmp, ".aim"), symlinks=True,
                        ignore=shutil.ignore_patterns("LOCK", "*.lock", "locks"))
        repo = Repo(tmp)
        union_view(repo)
        bad = []
        runs = []
        for run_hash in sorted(repo.list_all_runs()):
            try:
                run = Run(run_hash, repo=repo, read_only=True)
                runs.append((run.creation_time or 0.0, run_hash, run))
            except Exception as exc:
                bad.append(f"run {run_hash}: {type(exc).__name__}: {exc}")
        out.write((json.dumps({"runs": len(runs)}) + "\n").encode())
        out.flush()
        for _, run_hash, run in sorted(runs, key=lambda t: (t[0], t[1])):
            try:
                write_run(out, run_hash, run)
            except Exception as exc:
                bad.append(f"run {run_hash}: {type(exc).__name__}: {exc}")
                out.write((json.dumps({"hash": run_hash, "error": f"{type(exc).__name__}: {exc}"}) + "\n").encode())
        out.write((json.dumps({"end": True, "problems": bad}) + "\n").encode())
        out.flush()


def write_run(out, run_hash, run):
    try:
        params = run[...]
    except KeyError:  # a run with no attributes at all
        params = {}
    series = []
    arrays = []
    # run.metrics() hides the metrics of archived runs; asking by name does not
    for name, context, _ in run.iter_sequence_info_by_type(("float", "int")):
        metric = run.get_metric(name, context)
        if metric is None:
            continue
        steps, (values, epochs, stamps) = metric.data.numpy()
        series.append({"name": metric.name, "context": plain(metric.context.to_dict()), "n": len(steps)})
        arrays.append((np.asarray(steps, "<i8"), np.asarray(values, "<f8"), np.asarray(epochs, "<f8"),
                       np.asarray(stamps, "<f8")))
    objects = {}
    blobs = []
    object_series = []
    for kind, dtype in OBJECT_TYPES.items():
        for name, context, _ in run.iter_sequence_info_by_type(dtype):
            if kind not in READABLE:
                objects.setdefault(kind, []).append(name)
                continue
            seq = getattr(run, READABLE[kind])(name, context)
            steps, (values, epochs, stamps) = seq.data.items_list()
            entry = {"kind": kind, "name": name, "context": plain(context.to_dict()), "steps": [], "epochs": [],
                     "timestamps": [], "payloads": []}
            for step, value, epoch, stamp in zip(steps, values, epochs, stamps):
                for item in value if isinstance(value, list) else [value]:  # several images at one step
                    entry["steps"].append(int(step))
                    entry["epochs"].append(epoch if epoch is not None and epoch == epoch else None)
                    entry["timestamps"].append(stamp)
                    if kind == "texts":
                        entry["payloads"].append(str(item.data))
                    elif kind == "distributions":
                        counts, edges = item.to_np_histogram()
                        entry["payloads"].append([np.asarray(counts, float).tolist(), np.asarray(edges, float).tolist()])
                    else:
                        data = item.storage["data"]
                        data = bytes(data.load() if hasattr(data, "load") else data)
                        entry["payloads"].append(len(data))
                        blobs.append(data)
            object_series.append(entry)
    header = {
        "hash": run_hash,
        "name": run.name,
        "experiment": run.experiment,
        "description": run.description,
        "archived": bool(run.archived),
        "created_at": run.creation_time,
        "ended_at": run.end_time,
        "tags": [getattr(t, "name", t) for t in run.tags],
        "params": plain(params),
        "series": series,
        "objects": objects,
        "object_series": object_series,
    }
    out.write((json.dumps(header) + "\n").encode())
    for cols in arrays:
        for col in cols:
            out.write(col.tobytes())
    for blob in blobs:  # image bytes, in the order of object_series' payload sizes
        out.write(blob)
    out.flush()


if __name__ == "__main__":
    main(sys.argv[1])
