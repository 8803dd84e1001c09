"""Ingest (``POST /api/v1/events``, ``/events/batch``, and the Segment-compatible ``/v1/…``):
lean handlers, served as routes.

FastAPI's dependency and response machinery costs 60-75 µs a request, and its middleware and
router more; ingest is where EventFlow's throughput is won. So the ingest routes are real
FastAPI routes whose OpenAPI operations FastAPI generates from their endpoints' signatures and
``responses``, but whose requests a ``LeanHandler`` serves: it reads the same inputs (token,
headers, body) raw, and uses the same validation, writer and problem details as everything
else (``ingest/accept.py``). ``DirectIngest`` hands that same handler the requests no
middleware of the app acts on, ahead of them all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from time import perf_counter
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from eventflow.api import problems
from eventflow.api.body import read_limited
from eventflow.api.headers import BASELINE_RAW, NO_STORE_RAW
from eventflow.api.ingest_metrics import RouteRecorder
from eventflow.auth.principal import Scope as Need
from eventflow.auth.principal import event_source
from eventflow.errors import EventflowError, ServiceUnavailable
from eventflow.services import Services

log = logging.getLogger(__name__)

# A user's token or an API key of scope ``ingest``.
_NEED = Need.INGEST

# What the app's SecurityHeaders middleware would add, set here since DirectIngest passes no
# middleware: a 202 answers a request with credentials, so it is never stored either.
_ACCEPTED_HEADERS = (*BASELINE_RAW, NO_STORE_RAW)
_WANTED = frozenset(
    {
        b"authorization",
        b"content-type",
        b"content-length",
        b"content-encoding",
        b"idempotency-key",
        b"origin",
    }
)


class Answer(Response):
    """A lean route's success, its headers written once here rather than worked out by
    ``Response``."""

    def __init__(self, result: dict[str, Any], status: int) -> None:
        self.status_code = status
        self.background = None
        self.body = body = orjson.dumps(result)
        self.raw_headers = _accepted_headers(body)


class LeanHandler:
    """Answers one request of a lean route, every error included (nothing is left to the app's
    handlers, which ``DirectIngest``'s requests never reach).

    A subclass says how to ``accept`` a request (its success answer) and may say how to
    ``refuse`` one; ``route`` names the route, whose recorder is
    ``app.state.ingest_recorders[route]``, and ``status`` is its success status (its
    ``Answer``'s, and the label its recorder counts successes under).
    """

    route: str = ""
    status: int = 202

    async def accept(
        self, services: Services, headers: dict[bytes, str], receive: Receive
    ) -> Answer:
        raise NotImplementedError

    def refuse(self, exc: Exception) -> Response:
        return problems.from_error(refusal_error(exc))

    async def __call__(self, request: Request) -> Response:
        """The route's handler: the answer to ``request`` (the app's middleware counts it)."""
        started = perf_counter()
        state = request.app.state
        recorder: RouteRecorder = state.ingest_recorders[self.route]
        headers = request_headers(request.scope)
        try:
            answer = await self.accept(state.services, headers, request.receive)
        except Exception as exc:
            refusal = self.refuse(exc)
            recorder.refused(exc, refusal.status_code, perf_counter() - started, direct=False)
            return refusal
        recorder.app.observe(perf_counter() - started)
        return answer

    async def serve(
        self, app: FastAPI, headers: dict[bytes, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """The same for ``DirectIngest``, which is not behind Starlette's request handling (nor
        the app's middleware: the recorder counts the request too)."""
        started = perf_counter()
        state = app.state
        try:
            answer = await self.accept(state.services, headers, receive)
        except Exception as exc:
            refusal = self.refuse(exc)
            await refusal(scope, receive, send)
            seconds = perf_counter() - started
            state.ingest_recorders[self.route].refused(
                exc, refusal.status_code, seconds, direct=True
            )
            return
        # The two messages Starlette's Response would send (it has no background task).
        await send(
            {
                "type": "http.response.start",
                "status": answer.status_code,
                "headers": answer.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": answer.body})
        state.ingest_recorders[self.route].direct.observe(perf_counter() - started)


class IngestHandler(LeanHandler):
    """``POST /events`` (``batch`` False) and ``/events/batch``: 202 with the stored ids."""

    def __init__(self, *, batch: bool) -> None:
        self._batch = batch
        self.route = "ingest_batch" if batch else "ingest_one"

    async def accept(
        self, services: Services, headers: dict[bytes, str], receive: Receive
    ) -> Answer:
        accept = services.acceptor
        principal = await services.credentials.authenticate(headers.get(b"authorization"), _NEED)
        user_id = principal.user_id
        source = event_source(principal)
        content_type = headers.get(b"content-type")
        length = headers.get(b"content-length")
        encoding = headers.get(b"content-encoding")
        if self._batch:
            limit = services.settings.max_batch_bytes
            body = await read_limited(receive, length, limit, content_encoding=encoding)
            return Answer(await accept.batch(user_id, content_type, body, source), self.status)
        limit = accept.single_body_limit
        body = await read_limited(receive, length, limit, content_encoding=encoding)
        key = headers.get(b"idempotency-key")
        return Answer(await accept.event(user_id, content_type, key, body, source), self.status)


def _accepted_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *_ACCEPTED_HEADERS,
    ]


def refusal_error(exc: Exception) -> EventflowError:
    """What a refused request answers: its own error, a 503 for an unreachable dependency, or
    a 500 for anything else (a bug, logged with its traceback)."""
    if isinstance(exc, EventflowError):
        return exc
    if problems.is_outage(exc):
        log.warning("dependency unreachable: %r", exc)
        return ServiceUnavailable("A dependency of EventFlow is unreachable; retry shortly")
    log.exception("unhandled error in the ingest path", exc_info=exc)
    return EventflowError("An unexpected error occurred")


def request_headers(scope: Scope) -> dict[bytes, str]:
    """The headers the ingest handler reads, and ``origin`` (which DirectIngest checks)."""
    return {name: value.decode("latin-1") for name, value in scope["headers"] if name in _WANTED}


SINGLE = IngestHandler(batch=False)
BATCH = IngestHandler(batch=True)


class LeanRoute(APIRoute):
    """A route whose OpenAPI operation FastAPI generates from the endpoint, served by
    ``handler``.

    The endpoint's parameters declare what the request carries (the body's model, headers, the
    bearer token) for the document; the handler reads them raw, and FastAPI never calls it.
    """

    handler: LeanHandler

    def get_route_handler(self) -> LeanHandler:
        return self.handler


def served_by(handler: LeanHandler) -> type[LeanRoute]:
    """The route class (``route_class_override``) of a route that ``handler`` serves."""
    return type(f"{type(handler).__name__}Route", (LeanRoute,), {"handler": handler})


IngestRoute = served_by(SINGLE)
BatchIngestRoute = served_by(BATCH)


class DirectIngest:
    """Sends ingest requests without an ``Origin`` header straight to their route's handler.

    Those are servers sending events, the traffic that matters for throughput, and none of the
    app's middleware acts on them: CORS only answers requests with ``Origin``, the handler sets
    the security headers and answers every error itself. Requests from browsers (with
    ``Origin``) and preflights go through the app, where CORS applies and the same routes
    answer with the same handler.
    """

    def __init__(self, app: FastAPI, handlers: dict[str, LeanHandler]) -> None:
        self.app = app
        #: Each lean route's path, and its handler.
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.handlers.get(scope["path"])
            if handler is not None:
                headers = request_headers(scope)
                if b"origin" not in headers:
                    await handler.serve(self.app, headers, scope, receive, send)
                    return
        await self.app(scope, receive, send)


def direct(app: FastAPI, handlers: Iterable[LeanHandler]) -> ASGIApp:
    """``app`` behind ``DirectIngest`` for the routes ``handlers`` serve."""
    return DirectIngest(app, {app.url_path_for(h.route): h for h in handlers})
