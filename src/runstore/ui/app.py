"""The Starlette application: HTTP in, public-API calls (``_data``), Arrow or JSON out.

Routes (documented with examples in docs/ui.md):

    GET   /api/schema                     keys for autocomplete and the column picker
    GET   /api/runs?q&sort&desc&offset&limit&col=...   one page of the runs table (Arrow)
    GET   /api/groups?q&key               run counts per value of a key
    GET   /api/ids?q                      every run id matching a query
    GET   /api/runs/{id}                  one run: attributes, params, sequences, artifacts
    PATCH /api/runs/{id}                  edit name, description, tags, archived
    POST  /api/runs/bulk                  tags/archive for many runs at once
    GET   /api/runs/{id}/artifacts/{name} download an artifact
    GET|POST /api/metrics                 (name, context) pairs of the selected runs
    GET|POST /api/curves                  downsampled points of one chart (Arrow stream)
    GET   /api/runs/{id}/objects          the run's object sequences (images, text, ...)
    GET   /api/runs/{id}/objects/steps    the steps a slider moves over
    GET   /api/runs/{id}/objects/at       one point's bytes (PNG/JPEG, WAV, SVG, JSON, npy, text)
    GET   /api/runs/{id}/objects/texts    a page of a text sequence
    GET   /api/runs/{id}/objects/distribution   counts over steps (a heatmap's matrix)
    GET   /api/runs/{id}/objects/array    one array point as JSON
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from runstore import QuerySyntaxError, Repo, RunNotFoundError, RunstoreError, SequenceNotFoundError

from . import _security
from ._data import UIError, UIRepo, ipc_bytes
from ._objects import ObjectViews, UINotFound, parse_context

STATIC = Path(__file__).parent / "static"
ARROW = "application/vnd.apache.arrow.stream"


def create_app(repo: Repo | str | os.PathLike, *, host: str = "127.0.0.1", token: str | None = None) -> Starlette:
    """The UI as an ASGI application (``runstore ui`` serves it with uvicorn).

    ``host`` is the address the server binds to: loopback accepts only loopback Host
    headers; any other address needs ``token``."""
    _security.check_bind(host, token)
    if not isinstance(repo, Repo):
        repo = Repo(repo, create=False)
    ui = UIRepo(repo)
    objects = ObjectViews(repo)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def schema(request: Request) -> Response:
        return JSONResponse(await _threaded(ui.schema))

    async def runs(request: Request) -> Response:
        qp = request.query_params
        table, total, notes = await _threaded(
            ui.runs, qp.get("q"), qp.get("sort") or None, qp.get("desc", "1") not in ("0", "false"),
            _int(qp, "offset", 0), _int(qp, "limit", 100), qp.getlist("col"))
        headers = {"X-Total-Count": str(total)}
        if notes:  # QueryWarning: the query names something no run has (a typo?)
            headers["X-Query-Warnings"] = json.dumps(notes, ensure_ascii=True)
        return Response(ipc_bytes(table), media_type=ARROW, headers=headers)

    async def groups(request: Request) -> Response:
        key = request.query_params.get("key")
        if not key:
            raise UIError("'key' (the key to group by, e.g. hparams.model) is required")
        return JSONResponse(await _threaded(ui.groups, request.query_params.get("q"), key))

    async def ids(request: Request) -> Response:
        qp = request.query_params
        limit = _int(qp, "limit", -1)
        return JSONResponse(await _threaded(
            ui.ids, qp.get("q"), qp.get("sort") or None, qp.get("desc", "1") not in ("0", "false"),
            _int(qp, "offset", 0), None if limit == -1 else limit))

    async def run_detail(request: Request) -> Response:
        return JSONResponse(await _threaded(ui.run_detail, request.path_params["run_id"]))

    async def run_edit(request: Request) -> Response:
        body = await _json_body(request)
        return JSONResponse(await _threaded(ui.edit, request.path_params["run_id"], body))

    async def bulk(request: Request) -> Response:
        body = await _json_body(request)
        ids_ = body.pop("runs", None)
        if not isinstance(ids_, list) or not ids_:
            raise UIError("'runs' must be a non-empty list of run ids")
        out = [await _threaded(ui.edit, rid, dict(body)) for rid in ids_]
        return JSONResponse({"edited": len(out)})

    async def artifact(request: Request) -> Response:
        rid, name = request.path_params["run_id"], request.path_params["name"]
        path = await _threaded(ui.artifact_path, rid, name)
        if path is None or not path.is_file():
            return JSONResponse({"error": f"run {rid} has no artifact file {name!r}"}, status_code=404)
        return FileResponse(path, filename=path.name)

    async def metrics(request: Request) -> Response:
        spec = await _spec(request)
        return JSONResponse(await _threaded(ui.metrics, _runs_list(spec.get("runs")), spec.get("q")))

    async def curves(request: Request) -> Response:
        spec = await _spec(request)
        meta, stream = await _threaded(ui.curves, spec)
        return StreamingResponse(stream, media_type=ARROW, headers={"X-Bucket": str(meta["bucket"])})

    def _obj_args(request: Request) -> tuple:
        qp = request.query_params
        return request.path_params["run_id"], qp.get("name"), parse_context(qp.get("context"))

    def _at(qp) -> tuple:
        step = _int(qp, "step", None) if qp.get("step") not in (None, "") else None
        index = _int(qp, "index", None) if qp.get("index") not in (None, "") else None
        return step, index, qp.get("exact", "0") not in ("0", "false", "")

    async def object_list(request: Request) -> Response:
        return JSONResponse(await _threaded(objects.list, request.path_params["run_id"]))

    async def object_steps(request: Request) -> Response:
        return JSONResponse(await _threaded(objects.steps, *_obj_args(request),
                                            _int(request.query_params, "max", 5000)))

    async def object_at(request: Request) -> Response:
        qp = request.query_params
        data, ctype, headers = await _threaded(objects.at, *_obj_args(request), *_at(qp), qp.get("format") or None)
        # The URL names a step, not content (the nearest step moves as a run grows), so the
        # browser revalidates every time; the ETag is the content's SHA-256, so an unchanged
        # point costs a 304 and no bytes.
        headers["Cache-Control"] = "no-cache"
        if ctype == "image/svg+xml":  # a stored SVG opened on its own must not run scripts here
            headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=ctype, headers=headers)

    async def object_texts(request: Request) -> Response:
        qp = request.query_params
        return JSONResponse(await _threaded(objects.texts, *_obj_args(request), _int(qp, "offset", 0),
                                            _int(qp, "limit", 50), qp.get("desc", "0") not in ("0", "false", "")))

    async def object_distribution(request: Request) -> Response:
        return JSONResponse(await _threaded(objects.distribution, *_obj_args(request),
                                            _int(request.query_params, "width", 300)))

    async def object_array(request: Request) -> Response:
        return JSONResponse(await _threaded(objects.array, *_obj_args(request), *_at(request.query_params)))

    routes = [
        Route("/", index),
        Route("/runs", index), Route("/explorer", index), Route("/compare", index),
        Route("/run/{run_id}", index),
        Route("/api/schema", schema),
        Route("/api/runs", runs),
        Route("/api/groups", groups),
        Route("/api/ids", ids),
        Route("/api/runs/bulk", bulk, methods=["POST"]),
        Route("/api/runs/{run_id}", run_detail, methods=["GET"]),
        Route("/api/runs/{run_id}", run_edit, methods=["PATCH"]),
        Route("/api/runs/{run_id}/artifacts/{name}", artifact),
        Route("/api/runs/{run_id}/objects", object_list),
        Route("/api/runs/{run_id}/objects/steps", object_steps),
        Route("/api/runs/{run_id}/objects/at", object_at),
        Route("/api/runs/{run_id}/objects/texts", object_texts),
        Route("/api/runs/{run_id}/objects/distribution", object_distribution),
        Route("/api/runs/{run_id}/objects/array", object_array),
        Route("/api/metrics", metrics, methods=["GET", "POST"]),
        Route("/api/curves", curves, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=_security.allowed_hosts(host)),
        Middleware(_security.TokenMiddleware, token=token),
        Middleware(_security.HeadersMiddleware),
        Middleware(_GZipUnlessLoopback),
    ]
    handlers = {QuerySyntaxError: _query_error, RunNotFoundError: _not_found, UIError: _bad_request,
                SequenceNotFoundError: _not_found, UINotFound: _not_found,
                KeyError: _bad_request, RunstoreError: _bad_request, ValueError: _bad_request}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    app.state.repo = repo
    return app


class _GZipUnlessLoopback:
    """gzip for clients on other machines; none for a browser on this one.

    Over loopback the bytes cost nothing and compressing them does: 15 MB of curves take
    ~0.3-0.5 s of zlib on the server for nothing.  Level 4 is within 3% of level 9 on
    Arrow float columns at a third of the CPU time."""

    def __init__(self, app) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=1024, compresslevel=4)

    async def __call__(self, scope, receive, send) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and client and _security.is_loopback(client[0]):
            await self.app(scope, receive, send)
        else:
            await self.gzip(scope, receive, send)


async def _threaded(fn, *args):
    # Repository reads are blocking (LMDB, NumPy): keep them off the event loop.
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


async def _spec(request: Request) -> dict:
    if request.method == "POST":
        return await _json_body(request)
    return dict(request.query_params)


async def _json_body(request: Request) -> dict:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("application/json"):
        raise UIError("send a JSON body (Content-Type: application/json)")
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as exc:
        raise UIError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise UIError("the body must be a JSON object")
    return body


def _runs_list(value: Any) -> list | None:
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    return value


def _int(qp, key: str, default: int | None) -> int | None:
    raw = qp.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise UIError(f"{key!r} must be an integer, got {raw!r}") from None


async def _query_error(request: Request, exc: QuerySyntaxError) -> Response:
    message = str(exc)
    return JSONResponse({"error": message.split("\n", 1)[0], "message": message, "line": exc.line,
                         "column": exc.column, "kind": type(exc).__name__}, status_code=400)


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=404)


async def _bad_request(request: Request, exc: Exception) -> Response:
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return JSONResponse({"error": message}, status_code=400)
