"""The client's connection to a server: one Flight client per process, made lazily.

A Flight client (gRPC channel) must never cross ``fork()``: a DataLoader worker
or any forked child that tracks gets a fresh one on first use (the pid is
checked on every call, which costs nothing next to an RPC).  Errors are sorted
into the two cases the caller handles differently: the server cannot be
reached (:class:`Unreachable`: keep the data, retry later) and everything else
(a refused token, a server-side error) as runstore errors.
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import weakref
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from ..errors import RepositoryError
from . import _protocol as P
from ._protocol import REFUSED


class Unreachable(Exception):
    """The server could not be reached, or the connection broke mid-call."""


class TokenRefused(RepositoryError):
    """The server refused the token (or none was given and the server needs one)."""


class ForkedChild(Unreachable):
    """gRPC cannot be used in this process: it was forked after its parent used it."""


# gRPC cannot be used in a process forked after gRPC started in its parent: a new
# channel there hangs (measured: a FlightClient made in a fork()ed child never
# answers, GRPC_ENABLE_FORK_SUPPORT or not). Such a child never touches gRPC; its
# shipper spools and sends through an exec'd `runstore sync` (Shipper._send_forked).
_grpc_used = False
_forked = False
_links: "weakref.WeakSet[Link]" = weakref.WeakSet()


def forked() -> bool:
    """True in a process forked after its parent made a Flight client."""
    return _forked


def _after_fork_in_child() -> None:
    global _forked
    if _grpc_used:
        _forked = True
        # Cyclic garbage of the parent (an old Link, a stream) may hold gRPC objects:
        # collected here, their destructors would hang. Nothing that exists at the
        # fork is ever collected in this child.
        gc.freeze()
    for link in list(_links):
        link._lock = threading.RLock()  # a parent's thread may have held it at the fork
        # The parent's channel and stream must never be destroyed here: gRPC's
        # destructors hang in a forked child. One extra reference each, never
        # released, keeps them alive through interpreter exit.
        for inherited in (link._client, link._put):
            if inherited is not None:
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(inherited))
        link._client = link._put = None


os.register_at_fork(after_in_child=_after_fork_in_child)


class Link:
    """Calls to one server (see the module docstring). Thread-safe."""

    def __init__(self, address: P.Address, token: str | None, tls_ca: bytes | None = None,
                 timeout: float = 10.0) -> None:
        self.address = address
        self._token = token
        self._tls_ca = tls_ca
        self._timeout = timeout
        self._lock = threading.RLock()
        self._pid = -1
        self._client: Any = None
        self._put: Any = None  # (writer, reader) of the long-lived DoPut stream
        _links.add(self)

    def _headers(self) -> list:
        return [(b"authorization", f"Bearer {self._token}".encode())] if self._token else []

    def _options(self, timeout: float | None) -> flight.FlightCallOptions:
        return flight.FlightCallOptions(timeout=timeout, headers=self._headers())

    def client(self) -> flight.FlightClient:
        global _grpc_used
        if _forked:
            raise ForkedChild("this process was forked from one that had used gRPC, which cannot be used "
                              "after fork(); its data is sent by a `runstore sync` subprocess")
        _grpc_used = True
        if self._pid != os.getpid() or self._client is None:
            kwargs: dict = {}
            if self.address.tls and self._tls_ca is not None:
                kwargs["tls_root_certs"] = self._tls_ca
            self._client = flight.FlightClient(self.address.location, **kwargs)
            self._pid = os.getpid()
            self._put = None  # a stream of the parent process is not ours
        return self._client

    def close(self) -> None:
        with self._lock:
            self._drop_put()
            if self._client is not None and self._pid == os.getpid():
                try:
                    self._client.close()
                except Exception:
                    pass
            self._client = None

    # -- calls -------------------------------------------------------------------------
    def action(self, kind: str, body: Any = None, timeout: float | None = None) -> Any:
        payload = P.pack(body if body is not None else {})
        with self._lock:
            client = self.client()
            try:
                results = list(client.do_action(flight.Action(kind, payload),
                                                self._options(timeout or self._timeout)))
            except BaseException as exc:
                raise self._failed(exc) from None
        return P.unpack(results[0].body.to_pybytes()) if results else None

    def get(self, ticket: dict) -> pa.Table:
        """A DoGet: the whole answer as one table."""
        with self._lock:
            client = self.client()
            try:
                reader = client.do_get(flight.Ticket(P.pack(ticket)), self._options(None))
                return reader.read_all()
            except BaseException as exc:
                raise self._failed(exc) from None

    def put(self, op: dict, batch: pa.RecordBatch) -> dict:
        """Send one points batch on the long-lived DoPut stream; its acknowledgement."""
        with self._lock:
            try:
                if self._put is None or self._pid != os.getpid():
                    client = self.client()
                    descriptor = flight.FlightDescriptor.for_path("points")
                    self._put = client.do_put(descriptor, P.POINTS_SCHEMA, self._options(None))
                writer, reader = self._put
                writer.write_with_metadata(batch, pa.py_buffer(P.pack(op)))
                ack = reader.read()
                if ack is None:
                    raise Unreachable("the server closed the stream")
                return P.unpack(ack.to_pybytes())
            except BaseException as exc:
                self._drop_put()
                raise self._failed(exc) from None

    def _failed(self, exc: BaseException) -> BaseException:
        error = _translate(exc)
        if isinstance(error, Unreachable):
            # A fresh channel on the next attempt: gRPC's own reconnect backoff would
            # keep a restarted server waiting for up to two minutes.
            self._drop_put()
            self._client = None
        return error

    def _drop_put(self) -> None:
        if self._put is not None:
            try:
                self._put[0].close()
            except Exception:
                pass
            self._put = None


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return exc
    if isinstance(exc, Unreachable):  # ForkedChild included
        return exc
    if isinstance(exc, flight.FlightUnauthenticatedError) or REFUSED in str(exc):
        return TokenRefused(REFUSED + "; check --token / $RUNSTORE_TOKEN against the server's token file")
    if isinstance(exc, (flight.FlightUnavailableError, flight.FlightTimedOutError, flight.FlightCancelledError,
                        ConnectionError, OSError)):
        return Unreachable(_short(exc))
    if isinstance(exc, pa.ArrowException) and ("Socket closed" in str(exc) or "failed to connect" in str(exc).lower()
                                               or "connection" in str(exc).lower()):
        return Unreachable(_short(exc))
    if isinstance(exc, flight.FlightError):
        return RepositoryError(f"the server failed: {str(exc).splitlines()[0]}")
    return exc


def _short(exc: BaseException) -> str:
    """The first clause of a gRPC message (the rest is a page of debug context)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for cut in (". gRPC client debug context", "; last error"):
        text = text.split(cut)[0]
    return text.replace("Flight returned unavailable error, with message: ", "")[:160]
