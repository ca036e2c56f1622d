"""runstore.export: the library side of `runstore export`."""

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
