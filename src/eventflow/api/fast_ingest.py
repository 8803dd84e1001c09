"""Ingest (``POST /api/v1/events`` and ``/events/batch``): one lean handler, served as routes.

FastAPI's dependency and response machinery costs 60-75 µs a request, and its middleware and
router more; ingest is where EventFlow's throughput is won. So the two ingest routes are real
FastAPI routes whose OpenAPI operations FastAPI generates from their endpoints' signatures and
``responses``, but whose requests ``IngestRoute``'s lean handler serves: it reads the same
inputs (token, headers, body) raw, and uses the same validation, writer and problem details as
everything else (``ingest/accept.py``). ``DirectIngest`` hands that same handler the requests
no middleware of the app acts on, ahead of them all.
"""

from __future__ import annotations

import logging
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
from eventflow.errors import EventflowError
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


class _Accepted(Response):
    """The 202, its headers written once here rather than worked out by ``Response``."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.status_code = 202
        self.background = None
        self.body = body = orjson.dumps(result)
        self.raw_headers = _accepted_headers(body)


class IngestHandler:
    """Answers one ingest request, every error included (nothing is left to the app's handlers,
    which ``DirectIngest``'s requests never reach)."""

    def __init__(self, *, batch: bool) -> None:
        self._batch = batch

    async def __call__(self, request: Request) -> Response:
        """The route's handler: the answer to ``request`` (the app's middleware counts it)."""
        started = perf_counter()
        state = request.app.state
        recorder: RouteRecorder = state.ingest_recorders[self._batch]
        headers = request_headers(request.scope)
        try:
            result = await self._accept(state.services, headers, request.receive)
        except Exception as exc:
            refusal = _refusal(exc)
            recorder.refused(exc, refusal.status_code, perf_counter() - started, direct=False)
            return refusal
        recorder.app.observe(perf_counter() - started)
        return _Accepted(result)

    async def serve(
        self, app: FastAPI, headers: dict[bytes, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """The same for ``DirectIngest``, which is not behind Starlette's request handling (nor
        the app's middleware: the recorder counts the request too)."""
        started = perf_counter()
        state = app.state
        try:
            result = await self._accept(state.services, headers, receive)
        except Exception as exc:
            refusal = _refusal(exc)
            await refusal(scope, receive, send)
            seconds = perf_counter() - started
            state.ingest_recorders[self._batch].refused(
                exc, refusal.status_code, seconds, direct=True
            )
            return
        await _Accepted(result)(scope, receive, send)
        state.ingest_recorders[self._batch].direct.observe(perf_counter() - started)

    async def _accept(
        self, services: Services, headers: dict[bytes, str], receive: Receive
    ) -> dict[str, Any]:
        accept = services.acceptor
        principal = await services.credentials.authenticate(headers.get(b"authorization"), _NEED)
        user_id = principal.user_id
        source = event_source(principal) if principal.key_id is not None else None
        content_type = headers.get(b"content-type")
        length = headers.get(b"content-length")
        encoding = headers.get(b"content-encoding")
        if self._batch:
            limit = services.settings.max_batch_bytes
            body = await read_limited(receive, length, limit, content_encoding=encoding)
            return await accept.batch(user_id, content_type, body, source)
        limit = accept.single_body_limit
        body = await read_limited(receive, length, limit, content_encoding=encoding)
        key = headers.get(b"idempotency-key")
        return await accept.event(user_id, content_type, key, body, source)


def _accepted_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *_ACCEPTED_HEADERS,
    ]


def _refusal(exc: Exception) -> Response:
    if isinstance(exc, EventflowError):
        return problems.from_error(exc)
    if problems.is_outage(exc):
        log.warning("dependency unreachable: %r", exc)
        return problems.outage_response()
    log.exception("unhandled error in the ingest path", exc_info=exc)
    return problems.problem_response(500, "Internal error", "An unexpected error occurred")


def request_headers(scope: Scope) -> dict[bytes, str]:
    """The headers the ingest handler reads, and ``origin`` (which DirectIngest checks)."""
    return {name: value.decode("latin-1") for name, value in scope["headers"] if name in _WANTED}


SINGLE = IngestHandler(batch=False)
BATCH = IngestHandler(batch=True)


class IngestRoute(APIRoute):
    """A route whose OpenAPI operation FastAPI generates from the endpoint, served by ``SINGLE``.

    The endpoint's parameters declare what the request carries (the body's model, headers, the
    bearer token) for the document; the handler reads them raw, and FastAPI never calls it.
    """

    handler = SINGLE

    def get_route_handler(self) -> IngestHandler:
        return self.handler


class BatchIngestRoute(IngestRoute):
    """The same, served by ``BATCH``."""

    handler = BATCH


class DirectIngest:
    """Sends ingest requests without an ``Origin`` header straight to their route's handler.

    Those are servers sending events, the traffic that matters for throughput, and none of the
    app's middleware acts on them: CORS only answers requests with ``Origin``, the handler sets
    the security headers and answers every error itself. Requests from browsers (with
    ``Origin``) and preflights go through the app, where CORS applies and the same routes
    answer with the same handler.
    """

    def __init__(self, app: FastAPI, handlers: dict[str, IngestHandler]) -> None:
        self.app = app
        self._handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self._handlers.get(scope["path"])
            if handler is not None:
                headers = request_headers(scope)
                if b"origin" not in headers:
                    await handler.serve(self.app, headers, scope, receive, send)
                    return
        await self.app(scope, receive, send)


def direct(app: FastAPI, routes: dict[str, IngestHandler]) -> ASGIApp:
    """``app`` behind ``DirectIngest`` for the routes named (route name: its handler)."""
    return DirectIngest(app, {app.url_path_for(name): handler for name, handler in routes.items()})
