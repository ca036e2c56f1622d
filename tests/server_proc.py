"""A real ``runstore server`` process for the server tests (and benchmarks).

``ServerProcess(repo_path, *args).start()`` runs ``python -m runstore server
--port 0`` (or the port given) and reads the address it prints; ``kill()`` is
SIGKILL, ``stop()`` SIGTERM (graceful).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

_LINE = re.compile(r"serving .* on (grpc(?:\+tls)?)://(\S+):(\d+)")


class ServerProcess:
    def __init__(self, repo_path, *args: str, port: int = 0, env: dict | None = None) -> None:
        self.repo_path = str(repo_path)
        self.args = list(args)
        self.port = port
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        cmd = [sys.executable, "-m", "runstore", "server", "--repo", self.repo_path, "--port", str(self.port),
               *self.args]
        env = dict(os.environ, **(self.env or {}))
        env.pop("RUNSTORE_REPO", None)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            match = _LINE.search(line)
            if match:
                self.port = int(match.group(3))
                self.url = f"{match.group(1)}://127.0.0.1:{self.port}"
                return self
        err = self.proc.stderr.read() if self.proc.poll() is not None else ""
        self.kill()
        raise RuntimeError(f"the server did not start: {line!r} {err}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self.kill()
