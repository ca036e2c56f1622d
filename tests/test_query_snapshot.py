"""The persisted query columns (issue 22): a cache that is used only when it is
exactly current, ignored when damaged, and reported by check()."""

from __future__ import annotations

from pathlib import Path

import pytest

from runstore import Repo, Run
from runstore.query import snapshot


def _make(path: Path, n: int = 6) -> Repo:
    repo = Repo(path)
    for i in range(n):
        with Run(repo=repo, experiment="e", name=f"r{i}", tags=["t"] if i % 2 else []) as run:
            run["hparams"] = {"lr": 0.001 * (i + 1), "model": ["a", "b"][i % 2], "layers": [1, 2, i]}
            run.track_many([float(i), i + 1.0], name="loss", context={"subset": "train"})
    return repo


def _fresh(path: Path) -> Repo:
    """A new Repo object with no column cache, as in a new process (the cache is
    shared by every Repo of a path in one process, so drop it)."""
    return _drop_cache(Repo(path))


def _drop_cache(repo: Repo) -> Repo:
    env = getattr(repo._env, "_env", repo._env)  # unwrap a read-only view
    env.__dict__.pop("_query_cache", None)
    return repo


def _answers(repo: Repo) -> tuple:
    return (
        [r.name for r in repo.query("run.hparams.lr < 0.0035")],
        sorted(repo.query("run.hparams.model == 'b'").to_arrow().column("name").to_pylist()),
        sorted(r.name for r in repo.query("run.hparams.layers[2] >= 4")),
        sorted(repo.query("'t' in run.tags").to_arrow().column("name").to_pylist()),
        len(repo.query("run.hparams.nothing == 1")),
        sorted(s.last for s in repo.query_sequences("seq.name == 'loss' and seq.last > 3")),
    )


def test_snapshot_is_written_and_gives_the_same_answers(tmp_path):
    repo = _make(tmp_path / "r")
    expected = _answers(repo)
    snapshot.wait()
    parts = sorted(p.name.split("-")[0] for p in (tmp_path / "r" / snapshot.DIRNAME).iterdir())
    assert parts == ["runs", "seqs"]
    again = _fresh(tmp_path / "r")
    from runstore.query.tables import cache_for

    runs, seqs = cache_for(again).tables(True)
    assert runs.snapshotted and runs._records is None  # columns mapped, no record decoded
    assert _answers(again) == expected
    assert [r.name for r in again.query("")] == [f"r{i}" for i in range(6)]  # run views: dicts on demand
    assert again.check() == []


def test_a_stale_snapshot_is_not_used(tmp_path):
    repo = _make(tmp_path / "r")
    _answers(repo)
    snapshot.wait()
    with Run(repo=repo, experiment="e", name="late") as run:
        run["hparams"] = {"lr": 0.0001}
        run.track(99.0, name="loss", context={"subset": "train"})
    again = _fresh(tmp_path / "r")
    assert "late" in [r.name for r in again.query("run.hparams.lr < 0.0035")]
    assert 99.0 in [s.last for s in again.query_sequences("seq.name == 'loss'")]
    snapshot.wait()
    # the newer snapshot replaced the older halves
    assert len(list((tmp_path / "r" / snapshot.DIRNAME).iterdir())) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_a_damaged_snapshot_is_ignored_and_reported(tmp_path, damage):
    repo = _make(tmp_path / "r")
    expected = _answers(repo)
    snapshot.wait()
    root = tmp_path / "r" / snapshot.DIRNAME
    for part in root.iterdir():
        arrays, meta = part / "arrays.bin", part / "meta.msgpack"
        if damage == "truncate":
            arrays.write_bytes(arrays.read_bytes()[: arrays.stat().st_size // 2])
        elif damage == "flip":
            raw = bytearray(arrays.read_bytes())
            raw[0] ^= 0xFF  # the first array starts at offset 0 (no padding there)
            arrays.write_bytes(bytes(raw))
        else:
            meta.write_bytes(b"\xc1 not msgpack")
    problems = _fresh(tmp_path / "r").check()
    assert len(problems) == 2 and all("query snapshot" in p and "damaged" in p for p in problems)
    if damage != "flip":  # a flipped bit inside an array is found by check()'s checksums only
        assert _answers(_fresh(tmp_path / "r")) == expected


def test_leftover_temporary_directory_is_harmless(tmp_path):
    repo = _make(tmp_path / "r")
    (tmp_path / "r" / snapshot.DIRNAME).mkdir()
    (tmp_path / "r" / snapshot.DIRNAME / "tmp-1-2-3").mkdir()  # a writer killed mid-write
    expected = _answers(repo)
    assert _answers(_fresh(tmp_path / "r")) == expected
    assert repo.check() == []


def test_snapshot_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNSTORE_QUERY_SNAPSHOT", "0")
    repo = _make(tmp_path / "r")
    _answers(repo)
    snapshot.wait()
    assert not (tmp_path / "r" / snapshot.DIRNAME).exists()


def test_a_readonly_repo_uses_but_never_writes_a_snapshot(tmp_path):
    repo = _make(tmp_path / "r")
    expected = _answers(Repo(tmp_path / "r", readonly=True))
    snapshot.wait()
    assert not (tmp_path / "r" / snapshot.DIRNAME).exists()  # read-only: nothing written
    _answers(_fresh(tmp_path / "r"))
    snapshot.wait()
    ro = _drop_cache(Repo(tmp_path / "r", readonly=True))
    from runstore.query.tables import cache_for

    assert cache_for(ro).runs().snapshotted  # ... but a snapshot another process wrote is used
    assert _answers(ro) == expected


def test_run_ids_ending_in_zero_bytes_survive_the_snapshot(tmp_path):
    # NumPy "S" strings drop trailing zero bytes; ids are 12 raw bytes, some ending in 00.
    from runstore.query.tables import RunTable

    repo = _make(tmp_path / "r", 1)
    ids = ["01a206f6c373220633211000", "01a206f6c373220633210000", "0123456789abcdef01234567"]
    table = RunTable([(i, {"name": i}, {"x": k}) for k, i in enumerate(ids)], 12345, repo)
    snapshot.save_runs(repo, table)
    raw, cols, paths = snapshot.load_runs(repo, 12345)
    assert snapshot.decode_ids(raw) == ids


def test_an_old_format_half_is_replaced_not_reported(tmp_path):
    repo = _make(tmp_path / "r")
    expected = _answers(repo)
    snapshot.wait()
    for part in (tmp_path / "r" / snapshot.DIRNAME).iterdir():
        meta = snapshot.msgpack.unpackb((part / "meta.msgpack").read_bytes(), raw=False, strict_map_key=False)
        meta["format"] = 1
        (part / "meta.msgpack").write_bytes(snapshot.msgpack.packb(meta, use_bin_type=True))
    assert repo.check() == []
    assert _answers(_fresh(tmp_path / "r")) == expected
    snapshot.wait()
    again = _fresh(tmp_path / "r")
    from runstore.query.tables import cache_for

    assert cache_for(again).runs().snapshotted  # rewritten in the current format


def test_check_never_sees_an_older_half_being_deleted(tmp_path, monkeypatch):
    """CI saw check() report "runs-... is damaged (No such file ...)": a query in another
    thread was deleting the older half file by file while check() read it. A half is now
    renamed away (atomically) before it is deleted."""
    repo = _make(tmp_path / "r")
    _answers(repo)
    snapshot.wait()
    seen: list = []
    real_rmtree = snapshot.shutil.rmtree

    def slow_rmtree(path, *args, **kwargs):
        path = Path(path)
        if path.is_dir() and (path / "arrays.bin").exists():
            (path / "arrays.bin").unlink()  # the state a concurrent check() can meet
            seen.append(snapshot.check(repo))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(snapshot.shutil, "rmtree", slow_rmtree)
    with Run(repo=repo, experiment="e", name="late") as run:
        run.track(1.0, name="loss")
    _answers(_fresh(tmp_path / "r"))  # a newer snapshot replaces (deletes) the older halves
    snapshot.wait()
    assert seen and all(problems == [] for problems in seen)
