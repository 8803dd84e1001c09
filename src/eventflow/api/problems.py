"""RFC 9457 problem details for every error the API answers, including unknown routes."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from eventflow.api.headers import BASELINE, NO_STORE
from eventflow.errors import EventflowError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
#: A URI reference, resolved against the URL the client called: each deployment describes its
#: own problem types (``problem_types.py``), and no outside domain is named.
TYPE_BASE = "/problems/"
# Every problem carries these, also where no middleware runs (the lean ingest path, the
# protocol's own refusals, the last-resort 500): an error is never cached, for anyone.
_HEADERS = {**BASELINE, **NO_STORE}


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    errors: list[Any] | None = None,
    headers: dict[str, str] | None = None,
    members: dict[str, Any] | None = None,
) -> Response:
    """A problem answer; ``members`` are extension members (RFC 9457 section 3.2)."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    if members is not None:
        body.update(members)
    headers = {**_HEADERS, **headers} if headers else _HEADERS
    return Response(orjson.dumps(body), status, headers=headers, media_type=PROBLEM_JSON)


def from_error(exc: EventflowError, members: dict[str, Any] | None = None) -> Response:
    return problem_response(
        exc.status,
        exc.title,
        exc.detail,
        slug=exc.slug,
        errors=exc.errors,
        headers=exc.headers,
        members=members,
    )


_OUTAGE_TYPES: tuple[type[Exception], ...] = (
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,
    OSError,
    TimeoutError,
    RedisError,
)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means a dependency is unreachable (a 503), not a bug (a 500)."""
    if isinstance(exc, sa_exc.DBAPIError):
        return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or bool(
            exc.connection_invalidated
        )
    return isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError | RedisError)


def outage_response() -> Response:
    return problem_response(
        503,
        "Service unavailable",
        "A dependency of EventFlow is unreachable; retry shortly",
        slug="unavailable",
        headers={"Retry-After": "1"},
    )


def install(app: FastAPI) -> None:
    async def eventflow_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, EventflowError)
        return from_error(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        title = HTTPStatus(exc.status_code).phrase
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route matches {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem_response(
            exc.status_code, title, detail, headers=dict(exc.headers or {}) or None
        )

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"]) or "request"
        return problem_response(
            422, "Validation failed", f"{where}: {first['msg']}", slug="validation", errors=errors
        )

    async def dependency_error(_: Request, exc: Exception) -> Response:
        if is_outage(exc):
            log.warning("dependency unreachable: %r", exc)
            return outage_response()
        log.exception("unhandled error", exc_info=exc)
        return problem_response(500, "Internal error", "An unexpected error occurred")

    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(500, "Internal error", "An unexpected error occurred")

    app.add_exception_handler(EventflowError, eventflow_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    # Handled inside the app (not by the outermost 500 handler, which re-raises and makes the
    # server drop the connection), so an outage is an ordinary 503 response.
    for outage_type in _OUTAGE_TYPES:
        app.add_exception_handler(outage_type, dependency_error)
    app.add_exception_handler(Exception, unexpected)
