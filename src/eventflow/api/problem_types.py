"""Every kind of problem the API answers, and ``GET /problems/<slug>`` describing each one.

A problem's ``type`` is ``/problems/<slug>`` (``problems.TYPE_BASE``), so the URL a client
finds in an error answers on the same server: HTML for a browser, JSON for everything else.
Each slug EventFlow uses is listed here once; tests/unit/test_problem_types.py finds every
slug in the source and fails on one missing here.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from eventflow.api.problems import TYPE_BASE
from eventflow.errors import NotFound


@dataclass(frozen=True, slots=True)
class ProblemType:
    title: str
    status: int
    description: str


PROBLEM_TYPES: dict[str, ProblemType] = {
    "bad-request": ProblemType(
        "Bad request",
        400,
        "The request cannot be read: an empty body where one is needed, a Content-Length "
        "that is not a number, a body cut short, or a cursor this API did not return. "
        "`detail` says which; the request is wrong as sent and fails the same way if repeated.",
    ),
    "malformed-json": ProblemType(
        "Malformed JSON",
        400,
        "The body is not valid JSON (or, for a form, not valid UTF-8). `detail` gives the "
        "parser's position.",
    ),
    "unauthorized": ProblemType(
        "Unauthorized",
        401,
        "The credentials are missing, malformed, expired or no longer valid: an access token "
        "(`Authorization: Bearer …`, from `POST /api/v1/auth/login`), an API key (`Bearer "
        "efk_…`, or `Basic` with the key as the user name and no password) that is unknown or "
        "revoked, or a stream ticket. Log in again, use an active key, or ask for a new ticket.",
    ),
    "not-found": ProblemType(
        "Not found",
        404,
        "Nothing here for this account: an event or API key that does not exist (or was "
        "revoked), belongs to someone else, or an id that is not an event's or key's id.",
    ),
    "forbidden": ProblemType(
        "Forbidden",
        403,
        "The credential is valid but does not cover this route: an API key of scope `ingest` "
        "may only send events, one of scope `read` may only read events and stats, and no key "
        "may manage keys or the account. Use a key of the right scope, or a user's token.",
    ),
    "registration-closed": ProblemType(
        "Forbidden",
        403,
        "This server does not let anyone register (EVENTFLOW_REGISTRATION=closed): accounts "
        "are made by its operators. Ask one for an account.",
    ),
    "conflict": ProblemType(
        "Conflict",
        409,
        "The request contradicts what is stored: an account with this email exists, an "
        "event is not in a state that allows the action (only failed and completed events "
        "can be replayed), or the account has as many active API keys as it may (revoke one).",
    ),
    "request-timeout": ProblemType(
        "Request timeout",
        408,
        "The request's head and body did not arrive within EVENTFLOW_REQUEST_TIMEOUT_MS. The "
        "connection is closed; send the request again, whole.",
    ),
    "payload-too-large": ProblemType(
        "Payload too large",
        413,
        "The body, or an event's payload within it, is larger than this server accepts "
        "(EVENTFLOW_MAX_PAYLOAD_BYTES, EVENTFLOW_MAX_BATCH_BYTES). Nothing was stored.",
    ),
    "unsupported-media-type": ProblemType(
        "Unsupported media type",
        415,
        "The body is not `application/json`, or it is compressed (`Content-Encoding`): send "
        "plain JSON.",
    ),
    "validation": ProblemType(
        "Validation failed",
        422,
        "The request is well-formed JSON but breaks a rule: an event type, a payload that "
        "cannot be stored exactly, a delay out of range, an email or a password. `errors` "
        "names each invalid part (`loc`, `field`), and nothing was stored.",
    ),
    "too-many-streams": ProblemType(
        "Too many requests",
        429,
        "This account already has as many live event streams open on this server as it may. "
        "Close one (another tab of the dashboard), or retry after `Retry-After` seconds.",
    ),
    "rate-limited": ProblemType(
        "Too many requests",
        429,
        "A rate limit refused the request (logins, registrations, or events per account). "
        "Retry after `Retry-After` seconds; the `RateLimit-*` headers say how much is left.",
    ),
    "headers-too-large": ProblemType(
        "Request header fields too large",
        431,
        "The request has more header fields than EVENTFLOW_MAX_HEADERS, or its head is larger "
        "than EVENTFLOW_MAX_HEADER_BYTES. The connection is closed.",
    ),
    "unavailable": ProblemType(
        "Service unavailable",
        503,
        "The request was not done, and nothing was stored: a dependency (the database, Redis) "
        "is unreachable, the queue is deeper than EVENTFLOW_MAX_QUEUE_DEPTH, the server is "
        "shutting down, or it is at its connection limit. Retry after `Retry-After` seconds.",
    ),
    "internal": ProblemType(
        "Internal error",
        500,
        "Something failed inside EventFlow that no request should cause. The server's log has "
        "the details; please report it.",
    ),
    "configuration": ProblemType(
        "Configuration error",
        500,
        "Settings that cannot work. EventFlow checks them at start-up and refuses to start, so "
        "a client should never see this one.",
    ),
}

router = APIRouter(include_in_schema=False)

_CODE = re.compile(r"`([^`]+)`")


@router.api_route(TYPE_BASE + "{slug}", methods=["GET", "HEAD"])
async def problem_type(slug: str, request: Request) -> Response:
    """One problem type: HTML for a browser, JSON (``type``, ``title``, ``status``, ``description``)
    for any other client."""
    kind = PROBLEM_TYPES.get(slug)
    if kind is None:
        raise NotFound(f"EventFlow has no problem type {TYPE_BASE}{slug[:100]}")
    # The same URL answers in two forms: caches must keep them apart.
    vary = {"Vary": "Accept"}
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(_page(slug, kind), headers=vary)
    body = {
        "type": TYPE_BASE + slug,
        "title": kind.title,
        "status": kind.status,
        "description": kind.description,
    }
    return JSONResponse(body, headers=vary)


def _page(slug: str, kind: ProblemType) -> str:
    # No script and no style: the default HTML policy (headers.py) allows neither.
    title = html.escape(f"{kind.status} {kind.title}")
    description = _CODE.sub(r"<code>\1</code>", html.escape(kind.description))
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title} · EventFlow</title>\n</head>\n<body>\n<main>\n<h1>{title}</h1>\n"
        f"<p><code>{html.escape(TYPE_BASE + slug)}</code></p>\n"
        f"<p>{description}</p>\n"
        '<p>See the <a href="/docs">API documentation</a>.</p>\n</main>\n</body>\n</html>\n'
    )
