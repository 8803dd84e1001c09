"""The OpenAPI document: every answer each route can give, and every error as problem details.

FastAPI documents the success responses it sees; the rest is stated here once, so that the
document says what the server really does (the schema fuzzing tests hold it to that):

- a route behind credentials can answer 401 and 403 (an API key of another scope), one that
  reads a body 400, 413, 415 and 422;
- any route can answer 503 (a dependency is down, or the connection limit is reached), 408 (the
  request did not arrive in time) and 431 (too many or too large headers);
- every error is ``application/problem+json`` with the ``Problem`` schema;
- a rate-limited route (one that declares 429) lists ``Retry-After`` and ``RateLimit-*``;
- FastAPI's automatic 422 ("HTTPValidationError") is kept only where a route declares 422, since
  a route whose parameters cannot fail validation never answers it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from eventflow.api.problems import PROBLEM_JSON


class ProblemItem(BaseModel):
    """One invalid part of a request."""

    loc: list[str | int] = Field(description="Where: body keys and list indexes, in order")
    msg: str
    type: str = Field(description="What kind of error, e.g. `event_type`, `duplicate_key`")
    field: str | None = Field(None, description="`loc` as written, e.g. `events[2].payload.x`")


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    type: str = Field(
        description="A URI reference naming the kind of problem: `/problems/<slug>`, relative "
        "to this server, where `GET` describes it; or `about:blank` when the status says it all"
    )
    title: str
    status: int
    detail: str = Field(description="What went wrong, for a person")
    errors: list[ProblemItem] | None = Field(None, description="Each invalid part (422)")


_SCHEMA_REF = "#/components/schemas/{model}"
_PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": _SCHEMA_REF.format(model="Problem")}}}

_DESCRIPTIONS = {
    400: "Malformed request: the body is empty or not JSON, or a cursor this API did not return",
    401: "Missing, invalid, expired or revoked credentials (access token or API key)",
    403: "The credential is valid but does not cover this route (an API key of another scope)",
    404: "Not found",
    408: "The request head and body did not arrive within EVENTFLOW_REQUEST_TIMEOUT_MS",
    409: "Conflict",
    413: "The body (or a payload in it) is too large",
    415: "The body is not JSON, or is compressed",
    422: "Invalid request: `errors` names each invalid part",
    429: "Too many requests: retry after `Retry-After` seconds",
    431: "Too many request headers, or too large",
    503: "Not done (a dependency is down, backpressure, or too many connections): retry after "
    "`Retry-After` seconds",
}
_BODY_ERRORS = (400, 413, 415, 422)
_EVERY_ROUTE = (408, 431, 503)
_SECONDS = {"type": "integer", "minimum": 0}
_RATE_LIMIT_HEADERS = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": _SECONDS},
    "RateLimit-Limit": {"description": "Requests (events) the window allows", "schema": _SECONDS},
    "RateLimit-Remaining": {"description": "What is left of it", "schema": _SECONDS},
    "RateLimit-Reset": {"description": "Seconds until there is room again", "schema": _SECONDS},
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the errors it can answer beyond the ones stated above."""
    return {status: {"description": _DESCRIPTIONS[status]} for status in statuses}


def operation_id(route: APIRoute) -> str:
    """Operation ids are the route functions' names: ``list_events``, ``get_event``…"""
    return route.name


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with the complete document, built once."""
    app.openapi = _builder(app)  # type: ignore[method-assign]


def _builder(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            _add_models(schema)
            for operations in schema["paths"].values():
                for operation in operations.values():
                    _complete(operation)
            app.openapi_schema = schema
        return app.openapi_schema

    return build


def _add_models(schema: dict[str, Any]) -> None:
    """``Problem``, the body of every error."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template=_SCHEMA_REF)
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def _complete(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation["responses"]
    for status, response in list(responses.items()):
        if _is_automatic_422(response):
            del responses[status]
    implied = list(_EVERY_ROUTE)
    if operation.get("security"):
        implied += [401, 403]
    if "requestBody" in operation:
        implied += _BODY_ERRORS
    for code in implied:
        responses.setdefault(str(code), {"description": _DESCRIPTIONS[code]})
    for status, response in responses.items():
        if int(status) >= 400:
            # Kept alongside a route's own model for that status (health's 503 body).
            response["content"] = {**response.get("content", {}), **_PROBLEM_CONTENT}
    if "429" in responses:
        responses["429"]["headers"] = _RATE_LIMIT_HEADERS
    operation["responses"] = dict(sorted(responses.items()))


def _is_automatic_422(response: dict[str, Any]) -> bool:
    content = response.get("content", {}).get("application/json", {})
    return bool(content.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"))
