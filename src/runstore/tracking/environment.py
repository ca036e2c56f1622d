"""Environment capture: what a run needs to be reproduced, recorded once per process.

``Run(capture_env=...)`` stores the result in the run record (the attribute ``env``),
written by the transaction that creates the run, so creating a run costs no extra
commit. It is not a param: params stay what the user logged (``runstore diff`` and
tables compare hyperparameters, not Python builds), yet queries reach it:

    run.env.git.commit == "3f1c..."      (a query)
    run.env["python"]["version"]         (Python)

Pieces (each can be turned off: ``capture_env={"git": False}``):

* ``git``: commit, branch, dirty flag (tracked files changed) and the ``origin``
  remote of the working directory's repository (credentials removed from the URL);
* ``command``: ``sys.argv`` (values of options named like a token, password, secret or
  key are masked);
* ``python``: version, implementation, executable;
* ``packages``: versions of the packages that matter for ML runs that are installed
  (``capture_env={"packages": "all"}`` records every installed distribution);
* ``host``: hostname, user, platform, CPU count;
* ``cuda``: torch's CUDA version when torch is already imported, NVML's driver version
  and GPU names when nvidia-ml-py finds a driver.

Environment variables are never recorded (they hold secrets). Git and package versions
do not change under a running script, so each piece is computed once per process
(git once per working directory) and shared by every run the process creates.
``RUNSTORE_CAPTURE_ENV=0`` turns capture off by default.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from typing import Any, Mapping

from ..errors import ConfigError
from . import lease as _lease

PIECES = ("git", "command", "python", "packages", "host", "cuda")
PACKAGES = ("numpy", "torch", "torchvision", "lightning", "pytorch-lightning", "transformers", "accelerate",
            "datasets", "tokenizers", "keras", "tensorflow", "jax", "flax", "scikit-learn", "scipy", "xgboost",
            "xgboost-cpu", "lightgbm", "catboost", "optuna", "ray", "pandas", "polars", "hydra-core",
            "omegaconf", "runstore")
_SECRET = re.compile(r"(token|password|passwd|secret|api[-_]?key|credential)", re.I)
_cache: dict[Any, Any] = {}
_trees: dict[Any, dict] = {}  # (pieces chosen, cwd for git) -> the tree capture() gives


def options(arg: Any) -> dict[str, Any] | None:
    """The pieces ``Run(capture_env=arg)`` asks for ({piece: True/False/"all"}), or
    None for no capture. Checked before the run is created."""
    if arg is None:
        if os.environ.get("RUNSTORE_CAPTURE_ENV", "1").strip().lower() in ("0", "false", "no", "off"):
            return None
        arg = True
    if arg is False:
        return None
    chosen: dict[str, Any] = {piece: True for piece in PIECES}
    if arg is True:
        return chosen
    if isinstance(arg, Mapping):
        unknown = [k for k in arg if k not in PIECES]
        if unknown:
            raise ConfigError(f"capture_env has no piece {unknown[0]!r}; the pieces are {', '.join(PIECES)}")
        for key, value in arg.items():
            if key == "packages" and value == "all":
                chosen[key] = "all"
            elif isinstance(value, bool):
                chosen[key] = value
            else:
                allowed = 'True, False or "all"' if key == "packages" else "True or False"
                raise ConfigError(f"capture_env[{key!r}] must be {allowed}, got {value!r}")
        return chosen
    raise ConfigError(f"capture_env must be True, False or a dict piece -> bool, got {arg!r}")


def capture(chosen: dict[str, Any] | None) -> dict[str, Any]:
    """The ``env`` param tree for the pieces chosen. Shared by every run of the process
    that asks for the same pieces (it goes into their records, which are only packed):
    never edit it; ``run.env`` hands out copies. Copying it per run was ~10 µs of a
    short run's creation (issue 22, target 3)."""
    if not chosen:
        return {}
    key = (tuple(chosen.items()), os.getcwd() if chosen.get("git") else None)
    out = _trees.get(key)
    if out is None:
        out = {}
        for piece in PIECES:
            setting = chosen.get(piece)
            if not setting:
                continue
            part = (piece, setting, key[1] if piece == "git" else None)
            if part not in _cache:
                _cache[part] = _READERS[piece](setting)
            if _cache[part]:
                out[piece] = _cache[part]
        _trees[key] = out
    return out


def _git(_: Any) -> dict[str, Any]:
    import subprocess  # only when the git piece is captured

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):  # no git on this machine
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {}
    info: dict[str, Any] = {"commit": commit, "branch": git("rev-parse", "--abbrev-ref", "HEAD")}
    status = git("status", "--porcelain", "--untracked-files=no")
    info["dirty"] = bool(status) if status is not None else None
    remote = git("remote", "get-url", "origin")
    if remote:
        info["remote"] = re.sub(r"(?<=://)[^/@]*@", "", remote)  # https://user:token@host -> https://host
    info["root"] = git("rev-parse", "--show-toplevel")
    return {k: v for k, v in info.items() if v is not None}


def _command(_: Any) -> list[str]:
    argv, masked, hide_next = list(sys.argv), [], False
    for arg in argv:
        if hide_next:
            masked.append("***")
            hide_next = False
        elif arg.startswith("-") and _SECRET.search(arg.split("=", 1)[0]):
            if "=" in arg:
                masked.append(arg.split("=", 1)[0] + "=***")
            else:
                masked.append(arg)
                hide_next = True
        elif "=" in arg and _SECRET.search(arg.split("=", 1)[0]):  # hydra-style key=value
            masked.append(arg.split("=", 1)[0] + "=***")
        else:
            masked.append(arg)
    return masked


def _python(_: Any) -> dict[str, Any]:
    return {"version": platform.python_version(), "implementation": platform.python_implementation(),
            "executable": sys.executable}


def _packages(setting: Any) -> dict[str, str]:
    from importlib import metadata

    if setting == "all":
        found = {}
        for dist in metadata.distributions():
            name = dist.metadata.get("Name")
            if name:
                found[_normal(name)] = dist.version
        return dict(sorted(found.items()))
    found = {}
    for name in PACKAGES:
        try:
            found[_normal(name)] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _normal(name: str) -> str:
    # the query language walks '.' and cannot spell '-': pytorch-lightning -> pytorch_lightning
    return re.sub(r"[-_.]+", "_", name).lower()


def _host(_: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"hostname": _lease.hostname(), "platform": "-".join(platform.uname()[i] for i in (0, 2, 4)),
                            "cpu_count": os.cpu_count()}
    try:
        import getpass

        info["user"] = getpass.getuser()
    except Exception:  # no user name in some containers
        pass
    return info


def _cuda(_: Any) -> dict[str, Any]:
    info: dict[str, Any] = {}
    torch = sys.modules.get("torch")  # never import torch for this: it takes seconds
    if torch is not None and getattr(getattr(torch, "version", None), "cuda", None):
        info["torch_cuda"] = torch.version.cuda
    if not nvidia_driver_possible():
        return info
    try:
        import pynvml
    except ImportError:
        return info
    try:
        pynvml.nvmlInit()
        info["driver"] = _text(pynvml.nvmlSystemGetDriverVersion())
        info["gpus"] = [_text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
                        for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # NVMLError: no driver or no GPU
        pass
    return info


def nvidia_driver_possible() -> bool:
    """False when this machine surely has no NVIDIA driver (Linux without
    /proc/driver/nvidia): then importing NVML's bindings (~20 ms) is skipped."""
    return not sys.platform.startswith("linux") or os.path.exists("/proc/driver/nvidia")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_READERS = {"git": _git, "command": _command, "python": _python, "packages": _packages, "host": _host,
            "cuda": _cuda}
