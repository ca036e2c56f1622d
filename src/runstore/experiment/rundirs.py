"""Hydra output folders that ``@runstore.main`` tracked, and the runs behind them.

Each job of ``@runstore.main`` writes ``runstore.json`` into its Hydra output
folder (``outputs/<date>/<time>/`` or ``multirun/<date>/<time>/<job>/``): the
repository, the run id and the experiment. HydraFlow's readers work from those
folders:

>>> runs = runstore.Run.load(runstore.iter_run_dirs("multirun"))       # doctest: +SKIP
>>> run = runstore.Run.load("outputs/2026-11-23/08-35-03")             # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import RunNotFoundError

__all__ = ["MARKER", "iter_run_dirs", "load", "write_marker"]

#: The file a tracked Hydra output folder holds.
MARKER = "runstore.json"

ExperimentNames = str | Iterable[str] | Callable[[str], bool] | None


def write_marker(output_dir: Path, run: Any, experiment: str) -> None:
    repo = run.repo
    location = str(getattr(repo, "url", None) or Path(repo.path).resolve())
    data = {"repo": location, "run_id": run.id, "experiment": experiment}
    tmp = output_dir / f".{MARKER}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, output_dir / MARKER)


def iter_run_dirs(root: str | os.PathLike[str], experiment_names: ExperimentNames = None) -> Iterator[Path]:
    """Every folder under ``root`` (itself included) that holds a tracked job, sorted.

    ``experiment_names`` keeps only some experiments: a glob pattern
    (``"transformer_*"``), a list of names (each may be a pattern), or a function
    ``name -> bool``; None keeps all.
    """
    keep = _name_filter(experiment_names)
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != ".hydra")
        if MARKER in files:
            path = Path(folder)
            if keep is None or keep(_read(path)["experiment"]):
                found.append(path)
    yield from sorted(found)


def load(path_or_paths: Any) -> Any:
    """The run a Hydra output folder recorded; a RunCollection for several folders."""
    if isinstance(path_or_paths, (str, os.PathLike)):
        return _load_one(Path(path_or_paths))
    from ..analysis.collections import RunCollection

    return RunCollection([_load_one(Path(p)) for p in path_or_paths])


def _load_one(path: Path) -> Any:
    from .. import Repo

    info = _read(path)
    repo = _repos.get(info["repo"])
    if repo is None:  # one Repo per repository for a collection of many folders
        repo = _repos[info["repo"]] = Repo(info["repo"], readonly=True)
    try:
        return repo.get_run(info["run_id"])
    except RunNotFoundError:
        raise RunNotFoundError(
            f"{path / MARKER} names run {info['run_id']} in {info['repo']}, which no longer has it "
            "(deleted with runstore rm?)"
        ) from None


_repos: dict[str, Any] = {}


def _read(path: Path) -> dict[str, Any]:
    marker = path / MARKER
    try:
        data = json.loads(marker.read_text())
    except FileNotFoundError:
        raise RunNotFoundError(
            f"{path} is not a folder that runstore.main tracked (no {MARKER}); "
            "pass a Hydra output folder such as outputs/<date>/<time> or multirun/<date>/<time>/<job>"
        ) from None
    except (OSError, ValueError) as exc:
        raise RunNotFoundError(f"{marker} cannot be read: {exc}") from None
    if not isinstance(data, dict) or not {"repo", "run_id", "experiment"} <= set(data):
        raise RunNotFoundError(f"{marker} is not a runstore marker (expected repo, run_id, experiment)")
    return data


def _name_filter(names: ExperimentNames) -> Callable[[str], bool] | None:
    if names is None:
        return None
    if callable(names):
        return names
    if isinstance(names, str):
        pattern = names
        return lambda name: fnmatch.fnmatchcase(name, pattern)
    patterns = list(names)
    return lambda name: any(fnmatch.fnmatchcase(name, p) for p in patterns)
