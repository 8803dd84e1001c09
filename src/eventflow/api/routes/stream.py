"""Server-Sent Events for the dashboard: live metrics and feed changes, opened with a ticket.

EventSource cannot send an ``Authorization`` header, so a client trades its bearer token for a
ticket (``POST /stream/ticket``) and opens ``GET /stream?ticket=…``. A ticket lives 30 seconds
and is redeemed once in the whole deployment (``auth/tickets.py``); open streams are capped per
user (``api/stream_access.py``); what each tick shows is ``dashboard/live.py``'s. All of it is
built once at start-up. A stream ends when the access token it was obtained with expires, when
its session is signed out, and as soon as a graceful server shutdown begins.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from eventflow.api.deps import ServicesDep, Session, ensure_access
from eventflow.api.problems import problem_response
from eventflow.api.stream_access import (
    MAX_STREAMS_PER_USER,
    SLOT_RENEW_S,
    StreamPlace,
    finish_even_if_cancelled,
)
from eventflow.auth.tickets import TICKET_TTL_S
from eventflow.auth.tokens import TokenClaims
from eventflow.dashboard.live import LiveView, Update
from eventflow.errors import Unauthorized
from eventflow.services import Services

log = logging.getLogger(__name__)

router = APIRouter(prefix="/stream", tags=["stream"])

TICK_S = 1.0
# Some proxies hold the first kilobytes of a response; a padded comment gets the stream going.
_PREAMBLE = b": eventflow live stream" + b" " * 2048 + b"\nretry: 3000\n\n"


class TicketOut(BaseModel):
    ticket: str
    expires_in: int


@router.post("/ticket", response_model=TicketOut)
async def issue_ticket(services: ServicesDep, session: Session) -> Response:
    """A single-use ticket for ``GET /stream`` (EventSource cannot send a bearer token)."""
    ticket = services.streams.tickets.issue(session)
    body = TicketOut(ticket=ticket, expires_in=TICKET_TTL_S)
    return Response(
        body.model_dump_json(), media_type="application/json", headers={"Cache-Control": "no-store"}
    )


@router.get(
    "",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "hello, metrics, feed, bye"},
        401: {"description": "Missing, invalid, expired or reused ticket"},
        429: {"description": "Too many open streams for this account"},
        422: {"description": "The ticket is longer than any ticket this API issues"},
    },
)
async def open_stream(
    services: ServicesDep,
    ticket: Annotated[
        str | None, Query(max_length=1024, description="From POST /stream/ticket")
    ] = None,
) -> Response:
    """Live metrics every second and feed changes as they happen, as Server-Sent Events."""
    if not ticket:
        raise Unauthorized("A stream ticket is required: POST /api/v1/stream/ticket first")
    access = services.streams
    session = await access.tickets.redeem(ticket)
    await ensure_access(services, session.user_id, session)
    stream_id = await access.slots.acquire(session.user_id)
    if stream_id is None:
        return problem_response(
            429,
            "Too many requests",
            f"This account already has {MAX_STREAMS_PER_USER} live streams open; close one",
            slug="too-many-streams",
            headers={"Retry-After": "10"},
        )
    place = StreamPlace(access.slots, session.user_id, stream_id)
    live = LiveView(services.feed, services.reading, session.user_id, services.snapshots)
    return _StreamResponse(_frames(services, live, place, session), place)


class _StreamResponse(StreamingResponse):
    """An event stream that frees its place however it ends, even if its body never started.

    Freed here rather than in the body's ``finally``: a client gone before the first byte
    means the body generator never starts, and so never reaches its ``finally``.
    """

    def __init__(self, content: AsyncIterator[bytes], place: StreamPlace) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self._place = place

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._place.release()


async def _frames(
    services: Services, live: LiveView, place: StreamPlace, session: TokenClaims
) -> AsyncIterator[bytes]:
    # uvicorn waits for open responses before it stops, and an event stream never finishes by
    # itself: without this signal every open dashboard would hold a SIGTERM for the whole
    # graceful timeout (serve.py sets it when a graceful shutdown begins).
    stopping = services.stopping
    yield _PREAMBLE
    yield _frame("hello", {"user_id": session.user_id, "tick_ms": int(TICK_S * 1000)})
    clock = asyncio.get_running_loop().time
    next_tick = clock()
    next_renewal = clock() + SLOT_RENEW_S
    first = True
    while True:
        if stopping.is_set():
            yield _frame("bye", {"reason": "shutdown"})
            return
        if time.time() >= session.expires_at:
            yield _frame("bye", {"reason": "session-expired"})
            return
        if not await _still_signed_in(services, session):
            yield _frame("bye", {"reason": "signed-out"})
            return
        updates: list[Update] = []
        try:
            updates = await finish_even_if_cancelled(live.start() if first else live.tick())
            first = False
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("stream tick failed: %s", exc)
            # A comment keeps proxies from closing an idle stream while the database is away.
            yield b": tick failed, retrying\n\n"
        for event, data in updates:
            yield _frame(event, data)
        if clock() >= next_renewal:
            await place.renew()
            next_renewal = clock() + SLOT_RENEW_S
        next_tick = max(next_tick + TICK_S, clock() + TICK_S / 10)
        with suppress(TimeoutError):
            async with asyncio.timeout(next_tick - clock()):
                await stopping.wait()


async def _still_signed_in(services: Services, session: TokenClaims) -> bool:
    """Whether the stream's session still counts: signing out, everywhere or by an operator,
    ends the stream at its next tick, as it ends every other request."""
    if services.accounts.admits(session):
        return True
    try:
        await ensure_access(services, session.user_id, session)
    except Unauthorized:
        return False
    return True


def _frame(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
