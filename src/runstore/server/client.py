"""A repository behind ``runstore server``: ``Repo("grpc://host:8815", token=...)``.

:class:`RemoteRepo` is what ``Repo(url)`` returns for a ``grpc://`` or
``grpc+tls://`` URL (or ``$RUNSTORE_REPO`` holding one, with ``$RUNSTORE_TOKEN``);
``Run(repo=that)`` is a :class:`RemoteRun`.

A RemoteRun *is* a :class:`runstore.Run`: ``track``, ``track_many``,
``log_metrics`` and ``run.sequence(...).append`` are the tracking layer's own
code, writing into the same in-memory buffers, so tracking costs what it
costs locally.  What differs is where buffered data goes: instead of an LMDB
transaction, the run's flush hands its points, as one op, to the process's
:class:`~runstore.server._shipper.Shipper`, and record changes (params, tags,
name, status...) become ops too.  Ops carry the run's writer id and a number,
so the server applies each exactly once however often it is sent.
"""

from __future__ import annotations

import atexit
import copy
import os
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Iterable

from ..tracking import artifacts as _tracking_artifacts, replica as _replica, values as _values
from ..tracking.console import NAME as _CONSOLE
from ..errors import (InvalidParamError, RepositoryError, RunClosedError, RunNotFoundError, RunstoreError,
                      SequenceNotFoundError)
from ..tracking.repo import Repo
from ..tracking.run import Run
from ..tracking.sequence import _ClosedBuffer
from . import _protocol as P
from ._link import ForkedChild, Link, TokenRefused, Unreachable
from ._shipper import Shipper
from ._spool import DEFAULT_LIMIT as DEFAULT_SPOOL_LIMIT
from ._spool import Spool

__all__ = ["RemoteRepo", "RemoteRun"]

DEFAULT_CLOSE_TIMEOUT = 30.0


class RemoteRepo(Repo):
    """A repository served by ``runstore server`` (see the module docstring).

    ``token``: the server's token (default ``$RUNSTORE_TOKEN``); ``tls_ca``: a PEM
    file of the certificate authority (or the self-signed certificate) to trust
    for ``grpc+tls://``; ``close_timeout``: how long ``run.close()`` waits for the
    server's acknowledgements; ``spool_dir`` / ``spool_limit``: where ops wait on
    disk while the server cannot be reached (default
    ``~/.cache/runstore/spool/<host>_<port>/``, 1 GiB).

    A refused token raises ``RepositoryError("the server refused the token")``
    here when the server is reachable; when it is not, a warning says so and runs
    keep their data until it is.
    """

    def __init__(self, path: Any = None, *, token: str | None = None, flush_interval: float = 1.0,
                 create: bool | None = None, readonly: bool = False, map_size: int | None = None,
                 tls_ca: str | os.PathLike | bytes | None = None,
                 close_timeout: float = DEFAULT_CLOSE_TIMEOUT, timeout: float = 10.0,
                 spool_dir: str | os.PathLike | None = None, spool_limit: int = DEFAULT_SPOOL_LIMIT) -> None:
        url = path if path is not None else os.environ.get("RUNSTORE_REPO")
        self.address = P.Address(str(url))
        self.url = self.address.url
        self.path = self.url  # type: ignore[assignment]  # what repr, equality and messages show
        self.flush_interval = float(flush_interval)
        if self.flush_interval <= 0:
            raise ValueError("flush_interval must be a positive number of seconds")
        self.readonly = bool(readonly)
        self.close_timeout = float(close_timeout)
        ca = tls_ca
        if isinstance(ca, (str, os.PathLike)):
            ca = Path(ca).read_bytes()
        self._link = Link(self.address, P.read_token(token), ca, timeout=timeout)
        spool = Path(spool_dir) if spool_dir is not None else Path(P.default_spool_root()) / self.address.spool_name
        self.spool_dir = spool
        self._shipper = Shipper(self._link, Spool(spool, self.url, spool_limit))
        self.server_repo: str | None = None
        try:
            hello = self._link.action("hello")
            self.server_repo = hello.get("repo")
        except TokenRefused as exc:
            raise RepositoryError(str(exc)) from None
        except ForkedChild:
            pass  # no gRPC in a forked child: its ops are sent by `runstore sync` (_shipper)
        except Unreachable as exc:
            warnings.warn(
                f"runstore: the server {self.url} cannot be reached ({exc}); runs keep their data "
                "and send it when the server is back",
                RuntimeWarning, stacklevel=3,
            )

    _run_class = property(lambda self: RemoteRun)

    @property
    def _env(self) -> Any:
        raise RepositoryError(
            f"{self.url} is a remote repository: this operation needs a local one "
            "(run it on the server's host, against the directory it serves)"
        )

    def __repr__(self) -> str:
        return f"Repo({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteRepo) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __reduce__(self) -> Any:
        raise TypeError("a remote Repo is not picklable; pass its URL to the other process")

    # -- runs ----------------------------------------------------------------------
    def get_run(self, run: str) -> Run:
        """A view of a run stored on the server (record and params as of now)."""
        answer = self._call("get_run", {"run": run})
        if "error" in answer:
            raise RunNotFoundError(answer["error"])
        # The server resolved a handle or prefix: the view carries the full id.
        return RemoteRun._remote_view(self, answer.get("id", run), answer["record"], answer["params"])

    # -- queries (evaluated on the server; see _reads) ------------------------------------
    def query(self, query: str | None = None) -> Any:
        """Runs matching ``query``, evaluated on the server, as a RunCollection."""
        _compile(query)  # a syntax error is raised here, before any network
        return self._mirror().runs(query)

    def query_sequences(self, query: str | None = None) -> Any:
        """Sequences matching ``query``, evaluated on the server, as a SequenceCollection.
        Points this process tracked are sent first (read your own writes, as locally)."""
        _compile(query)
        for run in list(_live.values()):
            if run.repo is self:
                run.flush()
        return self._mirror().sequences(query)

    def _mirror(self) -> Any:
        from ._reads import Mirror

        if self.__dict__.get("_mirror_obj") is None:
            self._mirror_obj = Mirror(self)
        return self._mirror_obj

    def runs(self) -> list[Run]:
        return list(self.query(None))

    # -- the reads of run views (Run.sequences(), run.sequence(...).values, slices) ---------
    # served from the mirror of the server's sequence summaries, refreshed first.
    def _versions(self) -> tuple[int, int]:
        return self._mirror().refresh()

    def _run_sequences(self, run_id: str) -> list[tuple[int, dict]]:
        mirror = self._mirror()
        mirror.refresh()
        return mirror._run_sequences(run_id)

    def _run_sequence_names(self, run_id: str) -> list[tuple[str, dict]]:
        return [(s["name"], s["context"]) for _, s in self._run_sequences(run_id)]

    def _read_sequences(self, keys: list[tuple[str, int]]) -> list[tuple]:
        return self._mirror()._read_sequences(keys)

    def _read_columns(self, keys: list[tuple[str, int]]) -> tuple:
        """Many sequences' points as four flat columns and offsets (``Repo._read_columns``)."""
        return self._mirror()._read_columns(keys)

    def _read_part(self, run_id: str, seq_id: int, work: Any) -> Any:
        return self._mirror()._read_part(run_id, seq_id, work)

    def __iter__(self) -> Any:
        return iter(self.runs())

    def __len__(self) -> int:
        return len(self.query(None))

    def __contains__(self, run_id: object) -> bool:
        if not isinstance(run_id, str):
            return False
        try:
            self.get_run(run_id)
        except RunNotFoundError:
            return False
        return True

    def _get(self, ticket: dict) -> Any:
        try:
            return self._link.get(ticket)
        except Unreachable as exc:
            raise RepositoryError(f"the server {self.url} cannot be reached ({exc}); try again later") from None

    def _call(self, kind: str, body: Any) -> Any:
        try:
            return self._link.action(kind, body)
        except Unreachable as exc:
            raise RepositoryError(f"the server {self.url} cannot be reached ({exc}); try again later") from None

    def close(self) -> None:
        """Close this process's connection (live runs are closed first)."""
        for run in list(self._shipper._runs.values()):
            if run._writable:
                run.close()
        self._link.close()


class RemoteRun(Run):
    """A run tracked through a server (see the module docstring)."""

    _shares_rows = False  # its points are shipped from each sequence's buffer (_package)

    _object_values = False  # images, text, ... (issue 13) are not shipped yet: refused at track()

    # The same signature as Run.__init__ (tests/test_server_run_options.py compares
    # them): every Run(...) keyword works with a grpc:// repository too.
    def __init__(
        self,
        repo: Any = None,
        run_id: str | None = None,
        *,
        experiment: str | None = None,
        name: str | None = None,
        tags: Iterable[str] | None = None,
        description: str | None = None,
        parent: Any = None,
        flush_interval: float | None = None,
        run_hash: str | None = None,
        created_at: float | None = None,
        force: bool = False,
        system_metrics: bool | float | None = None,
        capture_env: bool | dict | None = None,
        capture_output: bool = False,
    ) -> None:
        """As :class:`runstore.Run`. The environment (``capture_env``) is captured here
        and sent in the run's create op; system metrics are sampled by the process's
        sampler thread into this run's buffers and shipped with its points;
        ``capture_output``'s ``console.log`` is written beside the spool and uploaded
        as an artifact when the run closes. ``force`` is accepted for the same code to
        run anywhere; a remote run holds no writer lease to take over (the server
        applies each writer's ops in order)."""
        # checked before anything is buffered or sent: a bad option creates no run
        metrics_interval, env_pieces = _replica.start_options(created_at, system_metrics, capture_env)
        if run_hash is not None:
            if run_id is not None and run_id != run_hash:
                raise InvalidParamError(
                    f"pass run_id or run_hash (Aim's name for it), not both: {run_id!r} / {run_hash!r}")
            run_id = run_hash
        if created_at is not None and run_id is not None:
            raise InvalidParamError("created_at is for new runs; a resumed run keeps the time it was created")
        self.repo = repo if isinstance(repo, RemoteRepo) else Repo(repo)
        if not isinstance(self.repo, RemoteRepo):
            raise RepositoryError(f"{repo!r} is not a server address")
        self._init_state(writable=True)
        self._init_remote()
        self._flush_interval = float(flush_interval if flush_interval is not None else self.repo.flush_interval)
        if run_id is None:
            record = _replica.new_record(name=name, experiment=experiment, tags=tags, description=description,
                                         parent=parent, created_at=created_at, env_pieces=env_pieces)
            self._id = _replica.new_run_id(created_at)
            self._record, self._params = record, {}
            self._enqueue({"create": [record, {}]})
        else:
            self._id = run_id
            changes = _replica.resume_changes(name=name, experiment=experiment, description=description)
            op: dict = {"set": changes}
            if tags is not None:
                op["tags+"] = _replica.tags_of(tags)
            if parent is not None:
                op["set"]["parent"] = _replica.parent_of(parent)
            try:
                view = self.repo.get_run(run_id)
                self._record, self._params = view._record, view._params
                self._record.update(op["set"])
            except RepositoryError:  # unreachable: resume blind; the server checks the run exists
                self._record = self._params = None
            self._enqueue(op)
        self._next_flush = time.monotonic() + self._flush_interval
        _live[id(self)] = self
        self._start_watchers(metrics_interval, capture_output)

    def _console_target(self) -> tuple[Path, bool]:
        # No artifacts folder here: the lines go to a file beside the spool, uploaded
        # through the server's artifact path (chunk ops) when the run closes.
        folder = Path(self.repo.spool_dir) / "console"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{self._id}-{self._writer}.log", False

    def _init_remote(self) -> None:
        self._writer = os.urandom(8).hex()
        self._next_n = 1
        self._outbox: deque = deque()
        self._stuck: str | None = None

    @classmethod
    def _remote_view(cls, repo: RemoteRepo, run_id: str, record: dict, params: dict) -> "RemoteRun":
        self = object.__new__(cls)
        self.repo = repo
        self._id = run_id
        self._init_state(writable=False)
        self._init_remote()
        self._record, self._params = record, params
        return self

    # -- ops ---------------------------------------------------------------------------
    def _enqueue(self, fields: dict, points: list | None = None) -> None:
        """Queue one op (numbered in the order ops are made) and wake the shipper for
        record ops (points wait for the flush interval)."""
        with self._lock:
            op = {"w": self._writer, "n": self._next_n, "run": self._id, **fields}
            self._next_n += 1
            self._outbox.append([op, points, None])  # [op, points, spool file]
        shipper = self.repo._shipper
        shipper.add(self)
        if points is None:
            shipper.wake()

    def _package(self, also: dict | None = None) -> None:
        """Move every buffered point into one points op (called by the shipper and by flush);
        ``also``: record changes made by the same op (close: one round trip, not two)."""
        with self._lock:
            self._next_flush = time.monotonic() + self._flush_interval
            parts, seqs = [], []
            with self._buf_lock:  # track_many queues under it (it does not wait for _lock)
                for seq in self._seq_list:
                    seq._take_buffer()
                    if seq._pending:
                        parts.append((len(seqs), seq._pending))
                        seqs.append([seq.name, seq.context])
                        seq._pending = []
            if parts:
                self._enqueue({"seqs": seqs, **(also or {})}, parts)
            elif also:
                self._enqueue(also)

    # -- flushing and closing --------------------------------------------------------
    def flush(self, timeout: float | None = None) -> None:
        """Send everything tracked so far and wait (at most ``timeout`` seconds, default
        the repository's ``close_timeout``) for the server to acknowledge it.

        When the server cannot be reached the data stays queued and is sent when it
        is back; a refused token or an op the server will not take raises."""
        if self._writable:
            self._package()
        self.repo._shipper.wake()
        self.repo._shipper.wait_sent(self, self.repo.close_timeout if timeout is None else timeout)
        self._raise_problems()

    def _flush(self, also: Any = None) -> Any:
        self.flush()

    def _raise_problems(self) -> None:
        shipper = self.repo._shipper
        if shipper.refused is not None:
            raise RepositoryError(f"{shipper.refused}; run {self._id}'s data is kept in memory")
        if self._stuck is not None:
            raise RunstoreError(f"run {self._id}: the server refused an op ({self._stuck}); its data is kept")

    def close(self, status: str = "finished") -> None:
        """Send the rest, mark the run ``status``, and wait (at most the repository's
        ``close_timeout``) for the server's acknowledgements. Idempotent."""
        status = _replica.status_of(status)
        if not self._writable:
            return
        console = self._stop_watchers()
        if console is not None:  # uploaded as local runs keep it: the artifact console.log
            try:
                self.log_artifact(console.path, kind="console", name=_CONSOLE)
            finally:
                console.path.unlink(missing_ok=True)
        with self._lock:
            if not self._writable:
                return
            ended = time.time()
            # The last points and the status travel as one op: committed together.
            self._package({"set": {"status": status, "ended_at": ended}})
            if self._record is not None:
                self._record.update(status=status, ended_at=ended)
            self._writable = False
            for seq in self._seq_list:
                seq._buf = _ClosedBuffer(self._id)
        _live.pop(id(self), None)
        shipper = self.repo._shipper
        shipper.wake()
        if not shipper.wait_sent(self, self.repo.close_timeout, while_offline=True):
            left = shipper.spool_now([self])
            where = shipper.spool.directory
            why = shipper.offline or ("the server refused the token" if shipper.refused else "no answer in time")
            kept = (f"they are in the spool {where}: this process sends them while it runs, or "
                    f"`runstore sync --spool {where}`" if left == 0 else "they stay in this process's memory")
            self._raise_problems()
            warnings.warn(
                f"runstore: run {self._id} closed before the server {self.repo.url} acknowledged "
                f"{len(self._outbox)} op(s) ({why}); {kept}",
                RuntimeWarning, stacklevel=2,
            )

    # -- the record --------------------------------------------------------------------
    def _rec(self) -> dict:
        if self._record is None:
            view = self.repo.get_run(self._id)
            self._record, self._params = view._record, view._params
        return self._record

    def _modify(self, change: Any) -> None:
        """Apply ``change`` to this object's copy of the record and send the difference
        (tags as additions and removals, so a tag added elsewhere is kept)."""
        with self._lock:
            record = self._rec()
            before = copy.deepcopy(record)
            change(record)
            op: dict = {}
            old_tags, new_tags = before.get("tags") or [], record.get("tags") or []
            added = [t for t in new_tags if t not in old_tags]
            removed = [t for t in old_tags if t not in new_tags]
            if added:
                op["tags+"] = added
            if removed:
                op["tags-"] = removed
            changed = {k: v for k, v in record.items() if k != "tags" and before.get(k, _MISSING) != v}
            if changed:
                op["set"] = changed
            if op:
                self._enqueue(op)
        if op:
            self._settle_view()

    def refresh(self) -> "Run":
        self._record = self._params = None
        return self

    # -- params --------------------------------------------------------------------------
    def _param_tree(self) -> dict:
        if self._params is None:
            self._rec()
        return self._params

    def __setitem__(self, key: str, value: Any) -> None:
        value = _replica.param_value(key, value)
        with self._lock:
            self._param_tree()[key] = value
            self._enqueue({"params": {key: value}})
        self._settle_view()

    def __delitem__(self, key: str) -> None:
        with self._lock:
            params = self._param_tree()
            if key not in params:
                raise KeyError(f"run {self._id} has no top-level param {key!r}")
            del params[key]
            self._enqueue({"params-": [key]})
        self._settle_view()

    def _settle_view(self) -> None:
        """A view (``repo.get_run(id)``) has no flush or close that would send its
        change later: like a local view's write (stored at once), it is sent now and
        waited for (at most ``close_timeout``; unsent ops stay queued and spool at exit)."""
        if not self._writable:
            self.repo._shipper.wait_sent(self, self.repo.close_timeout)
            self._raise_problems()

    # -- artifacts -----------------------------------------------------------------------
    def log_artifact(self, path: str | os.PathLike, kind: str | None = None, name: str | None = None) -> dict:
        """Copy a file (or folder) into the run's artifacts folder on the server.

        The file is copied aside at once (changing it afterwards changes nothing) and
        streamed in 1 MiB chunks by the background thread, exactly once, through
        restarts and the spool (runstore.server._artifacts)."""
        from . import _artifacts

        src, name = _tracking_artifacts.named_source(path, name)
        with self._lock:
            staging = Path(self.repo.spool_dir) / "staged" / f"{self._writer}-{self._next_n:012d}"
            files = _artifacts.stage(src, staging)
            entry = _artifacts.entry(name, kind, files)
            for op in _artifacts.chunk_ops(name, files):
                self._enqueue(op)
            self._enqueue({"artifact": entry, "staged": str(staging)})
            if self._record is not None:
                arts = [a for a in self._record.setdefault("artifacts", []) if a["name"] != name]
                self._record["artifacts"] = arts + [dict(entry)]
        return dict(entry)

    # -- reading points back ------------------------------------------------------------
    def _server_seq_id(self, seq: Any) -> int:
        """The server's id of ``seq``, everything tracked so far acknowledged: a live run
        numbers its sequences itself, the server in the order their first points arrive."""
        if not self._writable:
            seq._require_points()
            return seq._id
        seq_id = self._server_summary(seq)
        if seq_id is not None:
            return seq_id
        raise SequenceNotFoundError(f"run {self._id} has no {_values.describe(seq.name, seq.context)}: nothing "
                                    "was tracked in it yet (the handle can still append)")

    def _server_summary(self, seq: Any) -> int | None:
        """Flush, then take the server's summary of live ``seq`` (the server, not this
        process, commits its points); the server's id of it, None if it has no points."""
        self.flush()
        for seq_id, summary in self.repo._run_sequences(self._id):
            if summary["name"] == seq.name and summary["context"] == seq.context and summary.get("count"):
                summary.pop("name")
                summary.pop("context")
                seq._summary = summary
                return seq_id
        return None

    def _summary_of(self, seq: Any) -> dict:
        if self._writable:
            self._server_summary(seq)
        return seq._summary

    def _points_of(self, seq: Any) -> tuple:
        return self.repo._read_sequence(self._id, self._server_seq_id(seq))

    def _part_of(self, seq: Any, work: Any) -> Any:
        return self.repo._read_part(self._id, self._server_seq_id(seq), work)

    # -- what needs the repository's files ------------------------------------------------
    @property
    def artifacts_dir(self) -> Path:
        raise RepositoryError(f"run {self._id} is stored on {self.repo.url}: it has no local artifacts folder")

    def _closed_error(self) -> Exception:
        return RunClosedError(
            f"run {self.id} is closed or a view; resume it with Run(repo={self.repo.url!r}, "
            f"run_id={self.id!r}) to track more"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteRun) and other._id == self._id and other.repo == self.repo

    def __hash__(self) -> int:
        return hash(self._id)


_MISSING = object()


def _compile(query: Any) -> None:
    from ..query import compile_query

    if query is None or (isinstance(query, str) and not query.strip()):
        return
    if not isinstance(query, str):
        raise TypeError(f"a query must be a string, got {type(query).__name__}")
    compile_query(query)
_live: dict[int, RemoteRun] = {}


def _close_all_at_exit() -> None:
    """At interpreter exit every live remote run is closed (as a local run is), so its
    last points are sent; what the server does not acknowledge in time is reported."""
    for run in list(_live.values()):
        try:
            run.close("finished")
        except Exception as exc:
            print(f"runstore: could not close run {run.id}: {exc}", file=__import__("sys").stderr)


def _after_fork_in_child() -> None:
    _live.clear()


atexit.register(_close_all_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
