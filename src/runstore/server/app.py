"""``runstore server``: one repository served over Apache Arrow Flight.

The server translates Flight calls into the public API (``Repo``, queries, the
collections' ``to_arrow``) and, for writes, into the tracking layer's replica
hooks (``runstore.tracking.replica``) through :class:`~runstore.server._ingest.Ingest`.
It executes nothing a client sends but ops (data) and the query language.

Calls:

* ``DoAction("hello")``: version and repository; the client's token check.
* ``DoAction("op", msgpack op)``: a record op (create, edit, close), acknowledged
  once committed (see ``_protocol``).
* ``DoPut`` (descriptor path ``points``): a long-lived stream of points batches,
  one acknowledgement per batch.
* ``DoAction("get_run", {"run": id})``: a run's full id, record and params (``id``
  may be a handle or a unique prefix, as everywhere).
* ``DoAction("versions")``: the repository's (runs, sequences) data versions, so
  that a client knows when its mirror of the summaries is stale.
* ``DoGet`` with a msgpack ticket: query results as Arrow (``_reads``).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
import sys
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from ..errors import RepositoryError, RunstoreError
from . import _protocol as P
from . import _reads
from ._ingest import Ingest, decode_points

REFUSED = P.REFUSED
SHUTDOWN_GRACE = 2.0  # seconds gRPC gets to finish open calls at SIGTERM


class _TokenCheck(flight.ServerMiddlewareFactory):
    """Every call must carry ``authorization: Bearer <token>``; compared in constant time."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def start_call(self, info: Any, headers: dict) -> None:
        given = headers.get("authorization") or headers.get("Authorization") or [""]
        value = given[0]
        value = value.encode() if isinstance(value, str) else bytes(value)
        if not hmac.compare_digest(value, self._expected):
            raise flight.FlightUnauthenticatedError(REFUSED)
        return None


def is_loopback(host: str) -> bool:
    """True when ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


class TrackingServer(flight.FlightServerBase):
    """A Flight server over one repository (see the module docstring)."""

    def __init__(self, repo: Any, host: str = "127.0.0.1", port: int = P.DEFAULT_PORT, *,
                 token: str | None = None, tls: tuple[bytes, bytes] | None = None) -> None:
        if not token and not is_loopback(host):
            raise RepositoryError(
                f"refusing to serve on {host} without a token: anyone who can reach it could write "
                "runs; pass --token-file FILE (or bind 127.0.0.1)"
            )
        scheme = "grpc+tls" if tls else "grpc+tcp"
        bind = f"[{host}]" if ":" in host else host
        middleware = {"token": _TokenCheck(token)} if token else {}
        super().__init__(f"{scheme}://{bind}:{port}", tls_certificates=[tls] if tls else None,
                         middleware=middleware)
        self.repo = repo
        self.ingest = Ingest(repo)

    # -- writes ------------------------------------------------------------------------
    def do_action(self, context: Any, action: flight.Action):
        kind = action.type
        body = P.unpack(action.body.to_pybytes()) if action.body is not None and action.body.size else {}
        if kind == "op":
            result = self.ingest.submit(body)
        elif kind == "hello":
            result = {"version": P.VERSION, "repo": str(self.repo.path)}
        elif kind == "get_run":
            result = self._get_run(body["run"])
        elif kind == "versions":
            result = {"versions": list(self.repo._versions())}
        else:
            raise flight.FlightServerError(f"unknown action {kind!r}")
        return [flight.Result(pa.py_buffer(P.pack(result)))]

    def list_actions(self, context: Any):
        return [("hello", "version and repository"), ("op", "apply one client op"),
                ("get_run", "a run's record and params"), ("versions", "the repository's data versions")]

    def do_put(self, context: Any, descriptor: flight.FlightDescriptor, reader: Any, writer: Any) -> None:
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                return
            if chunk.app_metadata is None:
                raise flight.FlightServerError("a points batch without its op (app metadata)")
            op = P.unpack(chunk.app_metadata.to_pybytes())
            if chunk.data is None or chunk.data.schema.names != P.POINTS_SCHEMA.names:
                result = {"error": "a points batch must have the columns " + ", ".join(P.POINTS_SCHEMA.names)}
            else:
                try:
                    points = decode_points(op, chunk.data)
                except (KeyError, TypeError, ValueError) as exc:
                    result = {"error": f"malformed op ({type(exc).__name__}: {exc})"}
                else:
                    result = self.ingest.submit(op, points)
            writer.write(pa.py_buffer(P.pack(result)))

    # -- reads -------------------------------------------------------------------------
    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.RecordBatchStream:
        """Tickets (msgpack): {"q": "runs"|"sequences", "query": text} -> the matching
        runs' rows; {"q": "read", "keys": [[run id, seq id]...]} -> their points."""
        try:
            request = P.unpack(ticket.ticket)
            kind = request.get("q")
            if kind == "read":
                return _reads.points(self.repo, [(str(r), int(s)) for r, s in request["keys"]])
            if kind in ("runs", "sequences"):
                return _reads.matches(self.repo, kind, request.get("query"))
            if kind in ("all_runs", "all_seqs"):
                return _reads.everything(self.repo, kind)
        except RunstoreError as exc:
            raise flight.FlightServerError(f"{type(exc).__name__}: {exc}") from None
        raise flight.FlightServerError(f"unknown ticket {request!r}")

    def _get_run(self, run_id: str) -> dict:
        try:
            run = self.repo.get_run(run_id)
            record = {a: getattr(run, a) for a in _RECORD_FIELDS}
            return {"id": run.id, "record": record, "params": run.params}
        except RunstoreError as exc:
            return {"error": str(exc)}

    def shutdown(self) -> None:
        super().shutdown()
        self.ingest.stop()


_RECORD_FIELDS = ("name", "experiment", "tags", "description", "status", "created_at", "ended_at",
                  "parent", "archived", "hostname", "pid", "artifacts")


def start_ui(repo: Any, host: str, port: int, token: str | None, echo: Any) -> Any:
    """The web UI (runstore.ui) on ``port`` in a thread of this process; its uvicorn server."""
    import threading

    from .. import ui

    ui._require()
    import uvicorn

    app = ui.create_app(repo, host=host, token=token)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    threading.Thread(target=server.run, name="runstore-ui", daemon=True).start()
    shown = f"[{host}]" if ":" in host else host
    echo(f"runstore server: web UI on http://{shown}:{port}/" + ("  (send the same token)" if token else ""))
    return server


def serve(repo: Any, host: str = "127.0.0.1", port: int = P.DEFAULT_PORT, *, token: str | None = None,
          tls: tuple[bytes, bytes] | None = None, echo: Any = print, ready: Any = None,
          ui_port: int | None = None) -> None:
    """Serve ``repo`` until SIGINT/SIGTERM; every acknowledged op is committed before
    the process exits (the running commit finishes, calls in flight are answered).
    ``ui_port``: also serve the web UI (runstore.ui) from this process."""
    import signal
    import threading

    server = TrackingServer(repo, host, port, token=token, tls=tls)
    ui_server = start_ui(repo, host, ui_port, token, echo) if ui_port is not None else None
    scheme = "grpc+tls" if tls else "grpc"
    shown = f"[{host}]" if ":" in host else host
    echo(f"runstore server: serving {repo.path} on {scheme}://{shown}:{server.port}"
         + (" (token required)" if token else " (no token: loopback only)"))
    stopping = threading.Event()
    # The Flight server runs from construction on; the main thread only waits, so
    # that Python's handlers see SIGINT/SIGTERM (FlightServerBase.serve() keeps
    # them from running while it blocks).
    previous = {sig: signal.signal(sig, lambda signum, frame: stopping.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if ready is not None:
            ready(server)
        while not stopping.wait(0.25):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # Commit what is queued and refuse the rest (clients retry), then let gRPC
    # finish. A client's long-lived DoPut stream would keep a graceful shutdown
    # waiting for as long as that client lives: after a short grace the process
    # exits anyway. Nothing acknowledged is lost by that: an acknowledgement is
    # only sent after its commit.
    if ui_server is not None:
        ui_server.should_exit = True
    server.ingest.stop()
    done = threading.Thread(target=server.shutdown, daemon=True)
    done.start()
    done.join(SHUTDOWN_GRACE)
    echo("runstore server: stopped")
    if done.is_alive():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
