"""Copying artifacts into a repository: all or nothing, never a temporary left behind.

``Run.log_artifact`` copies a file or a folder to a hidden temporary name beside its
destination (``.<name>.tmp-<pid>-<random>``) and renames it into place, so a reader
never sees half an artifact. Whatever goes wrong on the way (a full disk, a
destination that is a folder where the new artifact is a file, an interrupt), the
temporary is removed before the error reaches the caller and the run's record is
not touched.

Symbolic links inside a logged folder are *followed*, as MLflow's ``log_artifacts``
does (``shutil.copytree`` with its default ``symlinks=False``): the repository keeps
the files the user saw, not links that may dangle later. A link that points at one
of its own parent folders would make that copy endless, so :func:`check_source`
walks the folder first -- cheap: it reads directories, not files -- and refuses a
loop, a dangling link, and a folder that contains the repository itself, before a
byte is copied. The server client (``runstore.server``) stages its copies with the
same two functions.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from ..errors import InvalidValueError, StorageFullError


def named_source(path: str | os.PathLike, name: str | None) -> tuple[Path, str]:
    """The file (or folder) to log and its artifact name (its own name when ``name`` is
    None), checked before anything is copied or shipped: a local run and a server's
    remote run take the same arguments."""
    src = Path(path)
    if not src.exists():
        raise FileNotFoundError(f"cannot log artifact {src}: no such file or folder")
    name = name or src.name
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"artifact name {name!r} must be a plain file name")
    return src, name


def check_source(src: Path, dest: Path | None = None) -> None:
    """Refuse a folder that cannot be copied to the end (raises InvalidValueError).

    Follows symbolic links the way the copy will, remembering the real folders on
    the way down from ``src``: a link to one of them is a loop. ``dest`` (the
    repository, or a staging folder) must not be inside ``src`` either."""
    if not src.is_dir():
        return
    root = src.resolve()
    if dest is not None and Path(dest).resolve().is_relative_to(root):
        raise InvalidValueError(
            f"cannot log artifact {src}: the folder holds {dest}, where it would be copied "
            "(a copy into itself never ends); log a subfolder, or keep the repository elsewhere"
        )
    stack: list[tuple[Path, tuple[tuple[int, int], ...]]] = [(src, (_ident(src),))]
    while stack:
        folder, ancestors = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                path = Path(entry.path)
                if not entry.is_symlink():
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((path, ancestors + (_ident(path),)))
                    continue
                try:
                    st = os.stat(path)  # follows the link (ELOOP for a link to itself)
                except OSError as e:
                    raise InvalidValueError(
                        f"cannot log artifact {src}: the symbolic link {path} -> {os.readlink(path)} "
                        f"cannot be followed ({e.strerror}); remove or fix the link, nothing was copied"
                    ) from None
                if not entry.is_dir():
                    continue
                ident = (st.st_dev, st.st_ino)
                if ident in ancestors:
                    raise InvalidValueError(
                        f"cannot log artifact {src}: the symbolic link {path} -> {os.readlink(path)} "
                        "points at a folder that contains it (a loop; the copy would never end); "
                        "remove the link or log a folder without it, nothing was copied"
                    )
                stack.append((path, ancestors + (ident,)))


def _ident(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def temporary(dest: Path, kind: str = "tmp") -> Path:
    """A fresh hidden name beside ``dest`` (pid and a random part: threads and
    processes logging the same name never share one)."""
    return dest.with_name(f".{dest.name}.{kind}-{os.getpid()}-{os.urandom(4).hex()}")


def remove(path: Path) -> None:
    """Remove a file, link or folder at ``path`` if there is one (never follows a link)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def copy(src: Path, dest: Path, *, link: bool = False, what: str = "artifact") -> int:
    """Copy ``src`` (a file or folder) to ``dest`` atomically; the bytes copied.

    ``link=True`` puts a symbolic link to ``src`` at ``dest`` instead. An existing
    ``dest`` (a file or a whole folder) is replaced; on any error nothing new is left
    and an existing ``dest`` is kept. A full disk raises StorageFullError."""
    tmp = temporary(dest)
    try:
        if link:
            os.symlink(src.resolve(), tmp)
            size = src.stat().st_size if src.is_file() else _tree_size(src)
        elif src.is_dir():
            shutil.copytree(src, tmp)
            size = _tree_size(tmp)
        else:
            shutil.copy2(src, tmp)
            size = tmp.stat().st_size
        _replace(tmp, dest)
    except BaseException as e:
        remove(tmp)
        if _disk_full(e):
            raise StorageFullError(
                f"cannot log {what} {src}: the disk holding {dest.parent} is full; nothing was "
                "recorded and no partial copy was left; free some space and log it again"
            ) from e
        raise
    return size


def _replace(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` over ``dest``. A folder at ``dest`` (or a file where a folder
    goes) cannot be renamed over, so it is first renamed aside -- one rename each way,
    put back if the second fails -- and deleted once the new one is in place."""
    if not os.path.lexists(dest) or not (_real_dir(dest) or _real_dir(tmp)):
        os.replace(tmp, dest)
        return
    aside = temporary(dest, "old")
    os.replace(dest, aside)
    try:
        os.replace(tmp, dest)
    except BaseException:
        os.replace(aside, dest)
        raise
    remove(aside)


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _tree_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _disk_full(e: BaseException) -> bool:
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(e, shutil.Error):  # copytree gathers per-file errors: (src, dst, why)
        return any("No space left" in str(why) or "quota" in str(why).lower() for *_, why in e.args[0])
    return False
