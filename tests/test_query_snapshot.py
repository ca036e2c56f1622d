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


@pytest.mark.parametrize("old", [1, 2])
def test_an_old_format_half_is_replaced_not_reported(tmp_path, old):
    repo = _make(tmp_path / "r")
    expected = _answers(repo)
    snapshot.wait()
    for part in (tmp_path / "r" / snapshot.DIRNAME).iterdir():
        meta = snapshot.msgpack.unpackb((part / "meta.msgpack").read_bytes(), raw=False, strict_map_key=False)
        meta["format"] = old
        if old == 2 and part.name.startswith("seqs-"):  # format 2 kept the run ids as a list of strings
            meta["run_keys"] = [r.id for r in repo.query("")]
            del meta["arrays"]["run_keys.raw"]
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


# Ids whose 12 bytes hold zeros (leading, inside, trailing): NumPy "S12" values lose
# trailing zero bytes when turned into bytes, so the joins must never do that.
_ZERO_IDS = ["01a206f6c373220633211000", "01a206f6c373220633210000", "0000000000000000000000aa",
             "00ff00000000000000000000", "00ff00000000000000000001", "7f0000000000000000000000"]


def _replica_runs(repo: Repo, ids: list, seq_of=lambda i: True) -> None:
    """Runs with the given ids (the write path of the server and of merge)."""
    import time

    import numpy as np

    from runstore.tracking import replica

    changes = []
    for i, rid in enumerate(ids):
        run = replica.writer(repo, rid)
        if seq_of(i):
            replica.append(run, "loss", {"subset": "train"}, np.array([float(i), i / 2]), np.arange(2), None,
                           np.zeros(2, np.int64), np.full(2, time.time()))
        record = replica.new_record(name=f"z{i}", experiment="e")
        changes.append(replica.Change(run, create=(record, {"i": i})))
    replica.commit(repo, changes)


def _zero_answers(repo: Repo) -> tuple:
    return (
        [(r.id, r.name) for r in repo.query("run.i >= 0")],
        [(s.run.id, s.name, s.last, s.count) for s in repo.query_sequences("seq.name == 'loss'")],
        sorted(r.id for r in repo.query("seq.last >= 1 or run.i == 2")),
        sorted(r.id for r in repo.query("run.id == '00ff00000000000000000000' or run.id > '7'")),
        [r.id for r in repo.query("not seq.name == 'loss'")],  # runs without sequences (virtual rows)
    )


def test_run_ids_with_zero_bytes_map_join_and_refresh_like_a_scan(tmp_path, monkeypatch):
    from runstore.query.tables import cache_for

    path = tmp_path / "r"
    repo = Repo(path)
    _replica_runs(repo, _ZERO_IDS, seq_of=lambda i: i % 3 != 1)

    def scan() -> tuple:
        with monkeypatch.context() as m:
            m.setenv("RUNSTORE_QUERY_SNAPSHOT", "0")
            return _zero_answers(_fresh(path))

    expected = scan()
    # The scan's answers, from what was written (run i: last point i / 2, none when i % 3 == 1).
    with_seq = [i for i in range(len(_ZERO_IDS)) if i % 3 != 1]
    assert sorted(expected[0]) == sorted((rid, f"z{i}") for i, rid in enumerate(_ZERO_IDS))
    assert sorted(expected[1]) == sorted((_ZERO_IDS[i], "loss", i / 2, 2) for i in with_seq)
    assert expected[2] == sorted(_ZERO_IDS[i] for i in range(len(_ZERO_IDS)) if i == 2 or (i in with_seq and i >= 2))
    assert sorted(expected[4]) == sorted(_ZERO_IDS[i] for i in range(len(_ZERO_IDS)) if i not in with_seq)
    assert _zero_answers(_fresh(path)) == expected  # builds and writes both halves
    snapshot.wait()
    again = _fresh(path)
    runs, seqs = cache_for(again).tables(True)
    assert runs.snapshotted, (runs.version, sorted(p.name for p in (path / snapshot.DIRNAME).iterdir()))
    assert runs._ids is None and seqs.base._run_keys is None  # both joined on the mapped 12-byte keys
    assert _zero_answers(again) == expected
    # New runs sorting between the old ones (zeros again), and a point on an old run:
    # the persisted seqs half is patched on the raw keys, never rescanned.
    _replica_runs(repo, ["00ff00000000000000000000"[:-2] + "02", "0000000000000000000000a9",
                         "01a206f6c373220633210001"])
    with Run(repo=repo, run_id=_ZERO_IDS[0]) as run:
        run.track(5.0, name="loss", context={"subset": "train"})
    expected = scan()
    with monkeypatch.context() as m:
        m.setattr(Repo, "_iter_sequences", lambda self: (_ for _ in ()).throw(AssertionError("full scan")))
        assert _zero_answers(_fresh(path)) == expected
    snapshot.wait()
    assert _zero_answers(_fresh(path)) == expected  # the refreshed half, as persisted
    assert Repo(path).check() == []


def test_rows_of_joins_like_a_dict(tmp_path):
    """The vectorised join gives what ``{id: row}`` lookups gave: sorted or not,
    duplicates (the last row wins), absent keys (-1), keys full of zero bytes."""
    import random

    import numpy as np

    from runstore.query import runkeys

    rnd = random.Random(7)
    pool = ["".join(rnd.choice("0000000f") for _ in range(24)) for _ in range(40)]
    for _ in range(30):
        table = [rnd.choice(pool) for _ in range(rnd.randrange(0, 25))]
        if rnd.random() < 0.5:
            table = sorted(set(table))
        keys = sorted(set(rnd.choice(pool) for _ in range(rnd.randrange(0, 25))))
        lookup = {rid: row for row, rid in enumerate(table)}
        got = runkeys.rows_of(runkeys.as_keys(runkeys.encode_ids(keys)), runkeys.as_keys(runkeys.encode_ids(table)))
        assert got.tolist() == [lookup.get(k, -1) for k in keys]
        assert runkeys.decode_ids(runkeys.encode_ids(table)) == table
    for bad in (["ABCDEF012345678901234567"], ["0123456789abcdef0123456"], ["0123456789abcdef 1234567"]):
        with pytest.raises(ValueError):
            runkeys.encode_ids(bad)
    assert np.array_equal(runkeys.encode_ids([]), np.empty(0, np.uint8))


def test_storage_keys_are_not_summary_extras(tmp_path):
    """"sorted_steps" (in every record the writer keeps) is the storage's: not a
    per-sequence extra (a dict per summary), not in a summary; an object
    sequence's type still is."""
    from runstore import Text
    from runstore.query.tables import cache_for

    repo = _make(tmp_path / "r", 3)
    with Run(repo=repo, experiment="e") as run:
        run.track(Text("hello"), name="notes")
    base = cache_for(repo).tables(True)[1].base
    assert [sorted(v) for v in base.extras.values()] == [["type"]]
    assert all("sorted_steps" not in base.summary(i) for i in range(base.n))
    assert [s.name for s in repo.query_sequences("seq.type == 'text'")] == ["notes"]
    assert len(repo.query_sequences("seq.type == 'float'")) == 3
