"""The API service: `create_app(settings)` builds the FastAPI app (read API, heartbeats,
metrics, dashboard) over the store named in the settings."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DatabaseError, InterfaceError, OperationalError

import metascheduler
from metascheduler.store.db import make_engine, session_factory

from .chainhead import ChainHead
from .context import ApiContext
from .heartbeats import malformed
from .metrics import Metrics
from .results import Results
from .results import router as results_router
from .routes import router
from .settings import ApiSettings

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
HEARTBEATS_PATH = "/api/heartbeats"

DESCRIPTION = """Read API over the metascheduler store (jobs, providers, statistics, health),
signed provider heartbeats, Prometheus metrics at `/metrics`, and a dashboard at `/`.

Credit amounts and prices are integer credit units (1 credit = 1,000,000 units); times are
unix seconds."""


def create_app(settings: ApiSettings) -> FastAPI:
    """The app over the store at `settings.database_url` (which must already be migrated)."""
    engine = make_engine(settings.database_url)
    metrics = Metrics()
    head = ChainHead(
        settings.rpc_url, timeout_s=settings.rpc_timeout_s, cache_s=settings.head_cache_s
    )
    ctx = ApiContext(settings, session_factory(engine), head, metrics)
    metrics.watch_store(ctx.sessions, head, settings.heartbeat_timeout_s)

    app = FastAPI(
        title="metascheduler",
        version=metascheduler.__version__,
        description=DESCRIPTION,
    )
    app.state.ctx = ctx
    app.state.results = Results.build(settings, ctx.sessions)
    app.include_router(router)
    app.include_router(results_router)

    @app.middleware("http")
    async def time_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        # The route's template, not the raw path, so job ids do not explode the label set.
        route = request.scope.get("route")
        label = getattr(route, "path", "unmatched")
        metrics.requests.labels(request.method, label, str(response.status_code)).observe(
            time.perf_counter() - start
        )
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        # Heartbeats promise 400 for a malformed body (agents treat 422 as a server quirk).
        if request.url.path == HEARTBEATS_PATH and request.method == "POST":
            errors = "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
                for e in exc.errors()
            )
            rej = malformed(errors)
            metrics.heartbeats_rejected.labels(rej.reason).inc()
            return JSONResponse({"detail": rej.detail}, status_code=rej.status)
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(DatabaseError)
    async def store_down(request: Request, exc: DatabaseError) -> Response:
        # Only "cannot reach or read the database" is a 503; anything else is our bug: a 500.
        if (
            not isinstance(exc, (OperationalError, InterfaceError))
            and type(exc) is not DatabaseError
        ):
            raise exc
        log.error("the store failed on %s %s: %s", request.method, request.url.path, exc.orig)
        return JSONResponse(
            {"detail": "the store is unreachable or not migrated: see /api/health"},
            status_code=503,
        )

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
