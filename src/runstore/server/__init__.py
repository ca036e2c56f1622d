"""Many hosts, one repository: ``runstore server`` on Apache Arrow Flight.

* :mod:`.app` -- the server (``TrackingServer``): Flight calls -> the public API,
  writes through the tracking layer's replica hooks with group commit;
* :mod:`.client` -- ``RemoteRepo`` / ``RemoteRun``: what ``Repo("grpc://host:port")``
  and ``Run(repo=...)`` are for a server address;
* :mod:`._shipper`, :mod:`._link`, :mod:`._protocol` -- the client's background
  sender, its connection, and the wire format both sides share.

docs/server.md is the user's guide.
"""

# Here, not in _protocol, so that registering the CLI command imports no pyarrow.
DEFAULT_PORT = 8815
TOKEN_ENV = "RUNSTORE_TOKEN"

__all__ = ["DEFAULT_PORT", "TOKEN_ENV", "serve"]


def serve(*args, **kwargs):
    """Serve a repository until interrupted (see :func:`runstore.server.app.serve`)."""
    from .app import serve as _serve

    return _serve(*args, **kwargs)
