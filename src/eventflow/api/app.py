"""The application factory: routes, errors, OpenAPI, and the lifespan that owns the services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from eventflow import __version__, dashboard
from eventflow.api import docs, fast_ingest, ingest_metrics, openapi, problem_types, problems
from eventflow.api.headers import SecurityHeaders
from eventflow.api.request_log import RequestLog
from eventflow.api.request_metrics import RequestMetrics
from eventflow.api.routes import auth, events, health, keys, metrics, stats, stream
from eventflow.config import Settings
from eventflow.services import Services

ServicesFactory = Callable[[Settings], AbstractAsyncContextManager[Services]]

API_PREFIX = "/api/v1"
OPENAPI_URL = f"{API_PREFIX}/openapi.json"


def create_app(settings: Settings, open_services: ServicesFactory) -> FastAPI:
    """Build the API; ``open_services`` decides what else runs in this process (workers…)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            app.state.services = services
            app.state.ingest_recorders = ingest_metrics.recorders(app, services.metrics)
            yield

    app = FastAPI(
        title="EventFlow",
        version=__version__,
        summary="Durable event ingestion and processing",
        lifespan=lifespan,
        # Served by docs.py from vendored files instead, under a strict policy.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_url=OPENAPI_URL,
        # FastAPI's built-in OpenTelemetry looks up tracer providers and the environment on
        # every request (about 10 % of a request's CPU); EventFlow exports no traces.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        generate_unique_id_function=openapi.operation_id,
    )
    problems.install(app)
    for module in (auth, events, stats, keys, health):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(health.router, include_in_schema=False)
    app.include_router(metrics.router)
    app.include_router(stream.router, prefix=API_PREFIX)
    app.include_router(dashboard.router)
    app.mount(dashboard.ASSETS_PATH, dashboard.assets(), name="dashboard-assets")
    app.include_router(problem_types.router)
    docs.install(app, OPENAPI_URL)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    # The outermost of the app's middleware, so CORS preflights get the headers too. Ingest
    # requests that DirectIngest takes past it set their own (fast_ingest.py, problems.py).
    app.add_middleware(SecurityHeaders, private_prefixes=(f"{API_PREFIX}/auth/",))
    # Outside everything else, so that it times whole answers and sees every status.
    app.add_middleware(RequestMetrics)
    openapi.install(app)
    return app


def create_asgi_app(settings: Settings, open_services: ServicesFactory) -> ASGIApp:
    """What the server runs: the API, its ingest routes also reached directly by servers, each
    request with its id and access line."""
    app = create_app(settings, open_services)
    direct = fast_ingest.direct(
        app, {"ingest_one": fast_ingest.SINGLE, "ingest_batch": fast_ingest.BATCH}
    )
    return RequestLog(direct, access=settings.access_log)
