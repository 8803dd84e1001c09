"""Every request the app answers, counted and timed by route template (never the raw path)."""

from __future__ import annotations

from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventflow.metrics import Metrics

#: The route label of a request that matched no route (a 404): raw paths would be unbounded.
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """Pure ASGI middleware: ``eventflow_http_requests_total`` and its duration histogram.

    The route is the template the router matched (``/api/v1/events/{event_id}``), read from the
    scope after the app ran. Ingest requests that ``DirectIngest`` takes past the app are
    counted by their handler (``ingest_metrics.py``). The metrics are the lifespan's, found on
    ``app.state``; before the lifespan ran (tests of the bare app) nothing is counted.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        services = getattr(scope["app"].state, "services", None)
        if services is None:
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            _record(services.metrics, scope, status, perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The template of the route that answered (after the app ran), or ``UNMATCHED``."""
    # FastAPI matches an included router's routes as declared (without the prefix) and leaves
    # that route in scope["route"]; the template with its prefix is its "effective route
    # context", which its own telemetry reads for http.route. tests/unit/test_request_metrics.py
    # fails if that changes. Starlette's routes and mounts have only scope["route"].
    effective = scope.get("fastapi", {}).get("effective_route_context")
    template = getattr(effective, "path_format", None) or getattr(
        scope.get("route"), "path_format", None
    )
    return template if isinstance(template, str) else UNMATCHED


def _record(metrics: Metrics, scope: Scope, status: int, seconds: float) -> None:
    route = route_template(scope)
    method = scope["method"] if scope["method"] in _METHODS else "other"
    metrics.http_requests.labels(route, method, str(status)).inc()
    metrics.http_duration.labels(route, method).observe(seconds)
