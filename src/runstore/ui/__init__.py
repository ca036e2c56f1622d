"""``runstore ui``: a read-mostly web UI over a repository (Starlette + uvicorn, uPlot, Arrow JS).

Starlette and uvicorn are an extra: ``pip install 'runstore[ui]'``.

>>> from runstore.ui import create_app                 # doctest: +SKIP
>>> app = create_app("runs")                            # an ASGI app; serve() runs it with uvicorn
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import RunstoreError

__all__ = ["UIUnavailableError", "create_app", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 43800
TOKEN_ENV = "RUNSTORE_UI_TOKEN"


class UIUnavailableError(RunstoreError, ImportError):
    """The UI's optional dependencies are not installed."""


def _require() -> None:
    missing = []
    for module in ("starlette", "uvicorn", "scipy"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise UIUnavailableError(
            f"the web UI needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            "installed: pip install 'runstore[ui]'"
        )


def create_app(repo: Any, *, host: str = DEFAULT_HOST, token: str | None = None) -> Any:
    """The UI as a Starlette (ASGI) application; see ``runstore.ui.app.create_app``."""
    _require()
    from .app import create_app as _create

    return _create(repo, host=host, token=token)


def serve(repo: Any, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None,
          open_browser: bool = False, echo=print) -> None:
    """Serve the UI until interrupted.  A non-loopback ``host`` without a token gets a
    generated one (printed), never an open server."""
    _require()
    import uvicorn

    from ._security import is_loopback, new_token

    token = token or os.environ.get(TOKEN_ENV) or None
    generated = False
    if not is_loopback(host) and not token:
        token, generated = new_token(), True
    app = create_app(repo, host=host, token=token)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/"
    if token:
        echo(f"runstore ui: {url}?token={token}" + ("  (generated token; pass --token to choose one)" if generated else ""))
    else:
        echo(f"runstore ui: {url}  (loopback only; Ctrl-C to stop)")
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(0.8, webbrowser.open, args=(url + (f"?token={token}" if token else ""),)).start()
    uvicorn.run(app, host=host, port=port, log_level="warning")
