"""Who may talk to the UI server.

The rules (docs/ui.md, "Security"):

- Loopback by default, behind Starlette's ``TrustedHostMiddleware``: a page on
  another site that re-binds its DNS name to 127.0.0.1 sends its own name in the
  ``Host`` header and is refused (DNS-rebinding protection).
- Any other bind address needs a token; ``create_app`` refuses to build an open
  server, and ``runstore ui`` generates and prints one when none is given.
- A token, once given (also on loopback), is enforced on every request: an
  ``Authorization: Bearer`` header, the ``runstore_token`` cookie, or a
  one-time ``?token=`` that sets that cookie and redirects to the bare URL (so the
  token does not stay in the address bar or the history).
- Writes (the few editable fields) need a JSON body and, when the browser sends
  an ``Origin``, one equal to the server's own: a form on another site cannot
  post to us, and without CORS headers no script on another site can read us.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from urllib.parse import urlencode

from starlette.datastructures import URL
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ._data import UIError

COOKIE = "runstore_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
# A strict policy: every script, style, image and connection comes from this server.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str]:
    """Host headers accepted: loopback names for a loopback bind; anything for another bind
    (the token is what protects it, and the machine may be reached under many names)."""
    if is_loopback(host):
        return ["localhost", "127.0.0.1", "::1", "[::1]"]
    return ["*"]


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise UIError(
            f"refusing to serve on {host} without a token: anyone who can reach the address could "
            "read the repository; pass --token (or set RUNSTORE_UI_TOKEN), or bind to 127.0.0.1"
        )


def new_token() -> str:
    return secrets.token_urlsafe(24)


class TokenMiddleware:
    """Enforce the token on every HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.token:
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        given = conn.query_params.get("token")
        if given is not None:
            if self._ok(given):
                url = URL(scope=scope)
                rest = [(k, v) for k, v in conn.query_params.multi_items() if k != "token"]
                target = url.path + ("?" + urlencode(rest) if rest else "")
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict",
                                    secure=url.scheme == "https")
                await response(scope, receive, send)
                return
            await _unauthorized(scope, receive, send, "the token in ?token= is wrong")
            return
        auth = conn.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            if self._ok(auth[7:].strip()):
                await self.app(scope, receive, send)
                return
            await _unauthorized(scope, receive, send, "the bearer token is wrong")
            return
        cookie = conn.cookies.get(COOKIE)
        if cookie is not None and self._ok(cookie):
            await self.app(scope, receive, send)
            return
        await _unauthorized(scope, receive, send, "this server needs a token: open the URL printed by "
                            "`runstore ui` (it ends in ?token=...) or send 'Authorization: Bearer <token>'")

    def _ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())


async def _unauthorized(scope, receive, send, message: str) -> None:
    response = JSONResponse({"error": message}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    await response(scope, receive, send)


class HeadersMiddleware:
    """Security headers on every response, and the same-origin rule for writes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("POST", "PATCH", "PUT", "DELETE"):
            conn = HTTPConnection(scope)
            origin = conn.headers.get("origin")
            host = conn.headers.get("host", "")
            if origin is not None and origin.split("://", 1)[-1] != host:
                response = JSONResponse({"error": f"cross-origin request from {origin} refused"}, status_code=403)
                await response(scope, receive, send)
                return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]
                # no-store unless the route chose otherwise (objects revalidate by ETag)
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
            await send(message)

        await self.app(scope, receive, send_with_headers)
