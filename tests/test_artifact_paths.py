"""Artifacts and paths (issue 20, item 10): log_artifact is all or nothing, delete_run
finds artifacts/<id> whatever the id's spelling."""

import errno
import shutil

import pytest

from runstore import Run
from runstore.errors import InvalidValueError, StorageFullError


def _leftovers(run):
    return sorted(p.name for p in run.artifacts_dir.rglob(".*"))


def test_full_disk_leaves_no_temporary(repo, tmp_path, monkeypatch):
    run = Run(repo=repo)
    (tmp_path / "model.pt").write_bytes(b"w" * 1000)
    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a")
    (folder / "sub" / "b.bin").write_bytes(b"b")

    def full(src, dst, **kw):  # write half the file, then the disk is full
        with open(dst, "wb") as f:
            f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(shutil, "copyfile", full)  # under copy2, which copytree calls
    with pytest.raises(StorageFullError, match="model.pt.*full.*nothing was recorded"):
        run.log_artifact(tmp_path / "model.pt")
    with pytest.raises(StorageFullError, match="ckpt"):  # copytree gathers it into shutil.Error
        run.log_artifact(folder)
    assert _leftovers(run) == [] and list(run.artifacts_dir.iterdir()) == []
    assert repo.get_run(run.id).artifacts == []
    monkeypatch.undo()
    run.log_artifact(folder)  # space freed: it works, and the record says so
    assert (run.artifacts_dir / "ckpt" / "sub" / "b.bin").read_bytes() == b"b"
    run.close()


def test_file_replaces_folder_and_back(repo, tmp_path):
    run = Run(repo=repo)
    folder = tmp_path / "x" / "best"
    folder.mkdir(parents=True)
    (folder / "w.bin").write_bytes(b"folder")
    (tmp_path / "best").write_bytes(b"file")
    run.log_artifact(folder)
    run.log_artifact(tmp_path / "best")  # today: IsADirectoryError and a .best.tmp-<pid> left
    assert (run.artifacts_dir / "best").read_bytes() == b"file"
    run.log_artifact(folder)  # a folder where a file was
    assert (run.artifacts_dir / "best" / "w.bin").read_bytes() == b"folder"
    run.log_artifact(tmp_path / "best", link=True)
    assert (run.artifacts_dir / "best").is_symlink()
    assert _leftovers(run) == []
    assert [a["name"] for a in repo.get_run(run.id).artifacts] == ["best"]
    run.close()


def test_symlink_loop_refused_before_copying(repo, tmp_path, monkeypatch):
    run = Run(repo=repo)
    folder = tmp_path / "data"
    (folder / "deep").mkdir(parents=True)
    (folder / "big.bin").write_bytes(b"x" * 100_000)
    (folder / "deep" / "up").symlink_to(folder)  # deep/up/deep/up/... for ever
    copied = []
    real_copyfile = shutil.copyfile
    monkeypatch.setattr(shutil, "copyfile", lambda *a, **k: copied.append(a) or real_copyfile(*a, **k))
    with pytest.raises(InvalidValueError, match=r"deep/up -> .*loop"):
        run.log_artifact(folder)
    assert copied == [] and _leftovers(run) == [] and repo.get_run(run.id).artifacts == []
    (folder / "deep" / "up").unlink()
    (folder / "deep" / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(InvalidValueError, match="deep/gone"):
        run.log_artifact(folder)
    (folder / "deep" / "gone").unlink()
    # Links are followed (as MLflow's log_artifacts): the copy holds the files.
    (folder / "deep" / "side").symlink_to(tmp_path / "other", target_is_directory=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "f.txt").write_text("kept")
    run.log_artifact(folder)
    copy = run.artifacts_dir / "data" / "deep" / "side"
    assert not copy.is_symlink() and (copy / "f.txt").read_text() == "kept"
    with pytest.raises(InvalidValueError, match="copy into itself"):
        run.log_artifact(repo.path.parent)  # the folder that holds the repository
    run.close()


@pytest.mark.parametrize("spell", [str.upper, lambda i: f"  {i}\n"])
def test_delete_run_canonical_id_removes_artifacts(repo, tmp_path, spell):
    run = Run(repo=repo)
    (tmp_path / "f").write_text("x")
    run.log_artifact(tmp_path / "f")
    folder = run.artifacts_dir
    run.close()
    repo.delete_run(spell(run.id))
    assert not folder.exists() and run.id not in repo
    assert repo.check() == []


def test_server_client_stages_the_same_way(tmp_path, monkeypatch):
    from runstore.server import _artifacts

    folder = tmp_path / "data"
    (folder / "deep").mkdir(parents=True)
    (folder / "deep" / "up").symlink_to(folder)
    staging = tmp_path / "spool" / "staged" / "w-1"
    with pytest.raises(InvalidValueError, match="loop"):
        _artifacts.stage(folder, staging)
    (folder / "deep" / "up").unlink()
    (folder / "deep" / "f.bin").write_bytes(b"f")

    def full(src, dst, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(shutil, "copyfile", full)
    for src in (folder, folder / "deep" / "f.bin"):
        with pytest.raises(StorageFullError):
            _artifacts.stage(src, staging)
        assert list(staging.parent.iterdir()) == []
    monkeypatch.undo()
    assert [(rel, size) for rel, _, size in _artifacts.stage(folder, staging)] == [("deep/f.bin", 1)]
