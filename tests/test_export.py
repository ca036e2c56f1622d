"""runstore.export: the library side of `runstore export`."""

import os

import pyarrow.dataset as ds
import pytest

from runstore import Run
from runstore.export import ExportError, export


def test_export_partitioned_by_run_and_experiment(repo, tmp_path):
    for i, exp in enumerate(["a", "a", "b"]):
        with Run(repo=repo, experiment=exp) as run:
            run["hparams"] = {"lr": 0.1 * (i + 1)}
            run.track_many([1.0, 2.0, 3.0], name="loss", context={"subset": "train"})
    result = export(repo, tmp_path / "out", "run.hparams.lr > 0.15")
    assert (result.runs, result.sequences, result.points) == (2, 2, 6)
    table = ds.dataset(tmp_path / "out" / "sequences", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 6 and sorted(set(table["run_id"].to_pylist())) == sorted(r.id for r in repo.runs()[1:])
    assert ds.dataset(tmp_path / "out" / "runs.parquet").to_table().num_rows == 2
    with pytest.raises(ExportError, match="overwrite"):
        export(repo, tmp_path / "out")
    result = export(repo, tmp_path / "out", overwrite=True, partition_by="experiment", format="csv")
    assert result.points == 9
    assert sorted(p.name for p in (tmp_path / "out" / "sequences").iterdir()) == ["experiment=a", "experiment=b"]
    with pytest.raises(ValueError):
        export(repo, tmp_path / "x", format="xlsx")


def test_export_refuses_empty_destination_and_inside_the_repository(repo, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from runstore.cli import cli

    with Run(repo=repo) as run:
        run.track(1.0, name="loss")
    before = sorted(p.relative_to(repo.path) for p in repo.path.rglob("*"))
    (tmp_path / "link").symlink_to(repo.path)  # the repository under another name
    monkeypatch.chdir(tmp_path)
    for dest in ("", "  ", repo.path / "out", tmp_path / "link" / "artifacts" / "x"):
        with pytest.raises(ExportError, match="empty|inside the repository"):
            export(repo, dest)
        result = CliRunner().invoke(cli, ["--repo", str(repo.path), "export", str(dest)])
        assert result.exit_code != 0 and "Error:" in result.output and "Traceback" not in result.output
    # An export into the folder that holds a repository named `sequences` would wipe it.
    seq_repo = tmp_path / "proj" / "sequences"
    from runstore import Repo

    Repo(seq_repo)
    with pytest.raises(ExportError, match="where an export"):
        export(Repo(seq_repo), tmp_path / "proj", overwrite=True)
    assert (seq_repo / "data.mdb").exists()
    assert sorted(p.relative_to(repo.path) for p in repo.path.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "proj", "repo"]


def test_long_experiment_names_get_short_unique_folders(repo, tmp_path):
    import pandas as pd

    names = ["x" * 300 + "-a", "x" * 300 + "-b", "é" * 200, "short"]
    for name in names:
        with Run(repo=repo, experiment=name) as run:
            run.track_many([1.0, 2.0], name="loss")
    export(repo, tmp_path / "out", partition_by="experiment")  # today: OSError ENAMETOOLONG
    folders = sorted(p.name for p in (tmp_path / "out" / "sequences").iterdir())
    assert len(folders) == 4 and "experiment=short" in folders
    assert all(len(f.encode()) <= os.pathconf(tmp_path, "PC_NAME_MAX") for f in folders)
    # Readers discover the shortened names like any other; runs.parquet maps back exactly.
    table = ds.dataset(tmp_path / "out" / "sequences", format="parquet", partitioning="hive").to_table()
    seen = {str(v) for v in table["experiment"].to_pylist()}
    assert len(seen) == 4 and "short" in seen and any(v.startswith("ééé") and "~" in v for v in seen)
    frame = pd.read_parquet(tmp_path / "out" / "sequences")
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")[["run_id", "experiment"]]
    joined = frame.astype({"run_id": str}).merge(runs, on="run_id", suffixes=("_folder", ""))
    assert sorted(set(joined["experiment"])) == sorted(names) and len(joined) == 8


def test_object_folders_stay_inside_and_short(repo, tmp_path):
    import numpy as np
    import pyarrow.parquet as pq

    from runstore import Array

    names = ["..", "n" * 300, "é" * 100 + "a", "é" * 100 + "b"]
    with Run(repo=repo) as run:
        for name in names:
            run.track(Array(np.arange(3)), name=name, step=0, context={"k": "v" * 300})
    export(repo, tmp_path / "out")  # today: OSError ENAMETOOLONG, and ".." climbs out of its run's folder
    index = pq.read_table(tmp_path / "out" / "objects.parquet").to_pylist()
    assert sorted(r["name"] for r in index) == sorted(names) and len({r["path"] for r in index}) == 4
    for row in index:
        path = tmp_path / "out" / row["path"]
        assert path.resolve().is_relative_to(tmp_path / "out" / "objects" / run.id)
        assert np.load(path).tolist() == [0, 1, 2]
        assert all(len(part.encode()) <= 255 for part in path.parts)

