"""The FastAPI application: middleware, the error envelope, and the routers.

`create_app(ctx)` builds one app around a `WebContext`. Routes: `/healthz` and `/metrics` (always),
and when `settings.api` is on, `POST /api/ocr`, the watch API, `GET /api/history` and the page at
`/`. The OpenAPI spec is at `/openapi.json`; the Swagger page is not served (it loads its code from a
CDN, and the device may be offline).

The edge middleware (pure ASGI, in front of everything) gives each request an id, refuses an
over-long body from its Content-Length before reading it and counts a chunked one as it arrives,
checks the bearer token in constant time, and sets the security headers (a strict CSP on every answer).
"""

from __future__ import annotations

import hmac
import logging
import uuid
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_ocr import __version__
from edge_ocr.web import history, ocr, setup, watch
from edge_ocr.web.context import WebContext
from edge_ocr.web.errors import ApiError, BodyTooLarge, envelope
from edge_ocr.web.metrics import ApiMetrics, StatusCollector

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
    "/static/history.js": ("history.js", "text/javascript; charset=utf-8"),
    "/static/setup.js": ("setup.js", "text/javascript; charset=utf-8"),
    "/static/setup.css": ("setup.css", "text/css; charset=utf-8"),
}
OPEN_PATHS = ("/healthz",)  # deploy pipelines and load balancers poll it without a token


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, ctx: WebContext, metrics: ApiMetrics) -> None:
        self.app = app
        self.ctx = ctx
        self.metrics = metrics
        self.token = ctx.settings.token.encode() if ctx.settings.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        path: str = scope["path"]
        is_ocr = path == "/api/ocr"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode()),
                                      *SECURITY_HEADERS]  # fmt: skip
                if is_ocr:
                    self.metrics.answered(message["status"])
            await send(message)

        async def refuse(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
            await envelope(rid, status, code, message, headers)(scope, receive, send_with_headers)

        headers = dict(scope["headers"])
        if self.token is not None and (path.startswith("/api/") or path == "/metrics"):
            given = headers.get(b"authorization", b"")
            scheme, _, value = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), self.token):
                await refuse(401, "unauthorized", "missing or wrong bearer token (Authorization: Bearer ...)",
                             {"WWW-Authenticate": 'Bearer realm="edge-ocr"'})  # fmt: skip
                return
        if is_ocr:
            limit = self.ctx.settings.max_body_bytes
            length = headers.get(b"content-length")
            if length is not None:
                try:
                    too_long = int(length) > limit
                except ValueError:
                    await refuse(400, "bad_request", "Content-Length is not a number")
                    return
                if too_long:
                    # Refused from the header: not one byte of the body is read.
                    await refuse(413, "body_too_large", f"the request body ({int(length):,} bytes) "
                                 f"is over the limit of {limit:,} bytes")  # fmt: skip
                    return
            seen = 0

            async def counted() -> Message:
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > limit:
                        raise BodyTooLarge(limit)
                return message

            await self.app(scope, counted, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def create_app(ctx: WebContext) -> FastAPI:
    s = ctx.settings
    app = FastAPI(
        title="edge-ocr",
        version=__version__,
        description="On-device OCR: POST an image, get its text and boxes (the MQTT result message).",
        docs_url=None,
        redoc_url=None,
    )
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatusCollector(ctx.status, lambda: ctx.health()[0], s.device_id))
    service: ocr.OcrService | None = None
    metrics = ApiMetrics(registry, s.device_id, lambda: service.pending if service else 0)
    service = ocr.OcrService(ctx, metrics)
    app.state.ctx = ctx
    app.state.ocr = service
    app.state.registry = registry

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return envelope(_rid(request), exc.status, exc.code, exc.message, exc.headers, exc.fields)

    @app.exception_handler(RequestValidationError)
    async def bad_option(request: Request, exc: RequestValidationError) -> Response:
        msg = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in exc.errors()
        )
        return envelope(_rid(request), 422, "bad_option", msg)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return envelope(_rid(request), exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        log.exception("http: %s %s failed", request.method, request.url.path)
        return envelope(_rid(request), 500, "internal", f"internal error: {type(exc).__name__}")

    @app.get("/healthz", tags=["ops"], summary="200 when the pipeline runs and is not degraded, else 503")
    def healthz() -> Response:
        ok, detail = ctx.health()
        return JSONResponse(_jsonable(detail), status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    def metrics_() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    if s.api:
        app.include_router(ocr.router())
        app.include_router(watch.router())
        app.include_router(history.router())
        app.include_router(setup.router())
        for route, (name, media) in STATIC.items():
            app.add_api_route(route, _static(name, media), methods=["GET"], include_in_schema=False)

    app.add_middleware(EdgeMiddleware, ctx=ctx, metrics=metrics)
    if s.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(s.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"], expose_headers=["X-Request-ID", "Retry-After"],
        )  # fmt: skip
    return app


def _static(name: str, media: str) -> Any:
    data = resources.files("edge_ocr.web").joinpath("static").joinpath(name).read_bytes()

    async def serve() -> Response:
        return Response(data, media_type=media, headers={"Cache-Control": "no-cache"})

    return serve


def _rid(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
