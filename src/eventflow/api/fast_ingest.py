"""The lean path for ``POST /api/v1/events`` and ``/events/batch``, beneath FastAPI.

FastAPI's routing, dependency and response machinery costs 60-75 µs a request; the ingest routes
are where EventFlow's throughput is won, so this pure ASGI middleware answers them directly. It
uses the same validation, the same writer and the same problem details as everything else
(``ingest/accept.py``, which the documented FastAPI routes call too); the
FastAPI routes remain the OpenAPI contract.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from eventflow.api import problems
from eventflow.api.body import read_limited
from eventflow.api.deps import ensure_access
from eventflow.api.headers import BASELINE_RAW, NO_STORE_RAW
from eventflow.errors import EventflowError
from eventflow.ingest.accept import accept_batch, accept_event, single_body_limit
from eventflow.services import Services

log = logging.getLogger(__name__)

# What the app's SecurityHeaders middleware would add, set here since no middleware runs on
# this path: a 202 answers a request with credentials, so it is never stored either.
_ACCEPTED_HEADERS = (*BASELINE_RAW, NO_STORE_RAW)


class IngestFastPath:
    """Serves the two ingest routes; hands every other request to the wrapped app.

    It runs twice in the stack. Inside the FastAPI app (beneath CORS) it serves browsers. In
    front of the whole app (``outermost=True``) it serves requests without an ``Origin``
    header — servers sending events, the traffic that matters for throughput — before even
    Starlette's and FastAPI's outer middleware; browser requests go on to the inner copy so
    CORS still applies to them.
    """

    def __init__(
        self, app: ASGIApp, prefix: str = "/api/v1", *, outermost: FastAPI | None = None
    ) -> None:
        self.app = app
        self._single = prefix + "/events"
        self._batch = prefix + "/events/batch"
        self._outermost = outermost

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/") if scope["path"] != "/" else "/"
        if path != self._single and path != self._batch:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if self._outermost is None:
            services: Services = scope["app"].state.services
        elif b"origin" in headers:
            await self.app(scope, receive, send)
            return
        else:
            services = self._outermost.state.services
        try:
            result = await self._handle(services, headers, receive, path == self._batch)
        except EventflowError as exc:
            await problems.from_error(exc)(scope, receive, send)
            return
        except Exception as exc:
            if problems.is_outage(exc):
                log.warning("dependency unreachable: %r", exc)
                await problems.outage_response()(scope, receive, send)
                return
            log.exception("unhandled error in the ingest path")
            response = problems.problem_response(
                500, "Internal error", "An unexpected error occurred"
            )
            await response(scope, receive, send)
            return
        body = orjson.dumps(result)
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *_ACCEPTED_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _handle(
        self, services: Services, headers: dict[bytes, str], receive: Receive, batch: bool
    ) -> dict[str, Any]:
        session = services.tokens.from_header(headers.get(b"authorization"))
        user_id = session.user_id
        await ensure_access(services, user_id, session)
        content_type = headers.get(b"content-type")
        length = headers.get(b"content-length")
        encoding = headers.get(b"content-encoding")
        if batch:
            limit = services.settings.max_batch_bytes
            body = await read_limited(receive, length, limit, content_encoding=encoding)
            return await accept_batch(services, user_id, content_type, body)
        limit = single_body_limit(services)
        body = await read_limited(receive, length, limit, content_encoding=encoding)
        key = headers.get(b"idempotency-key")
        return await accept_event(services, user_id, content_type, key, body)


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


def _headers(scope: Scope) -> dict[bytes, str]:
    return {name: value.decode("latin-1") for name, value in scope["headers"] if name in _WANTED}
