"""Server-Sent Events for the dashboard: live metrics and feed changes, opened with a ticket.

EventSource cannot send an ``Authorization`` header, so a client trades its bearer token for a
ticket (``POST /stream/ticket``) and opens ``GET /stream?ticket=…``. A ticket lives 30 seconds
and is redeemed once in the whole deployment (``auth/tickets.py``); open streams are capped per
user (``api/stream_access.py``), both built once at start-up. A stream ends when the access
token it was obtained with expires, and within a second of a graceful server shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from eventflow.api.deps import ServicesDep, Session, ensure_access
from eventflow.api.problems import problem_response
from eventflow.api.routes.stats import stats as read_stats
from eventflow.api.stream_access import MAX_STREAMS_PER_USER, SLOT_RENEW_S, StreamSlots
from eventflow.auth.tickets import TICKET_TTL_S
from eventflow.auth.tokens import TokenClaims
from eventflow.clock import iso, now_ms
from eventflow.db.feed import FeedRow
from eventflow.errors import Unauthorized
from eventflow.services import Services

log = logging.getLogger(__name__)

router = APIRouter(prefix="/stream", tags=["stream"])

TICK_S = 1.0
BACKFILL_S = 300
_TICK_BUDGET_S = 5.0
_SHUTDOWN_POLL_S = 0.1
_RECENT_S = 5
_FINISHED_OVERLAP_MS = 5_000
_FEED_LIMIT = 200
_SEED_PER_STATUS = 50
_WATCH_MAX = 500
_SENT_MAX = 5_000
# Some proxies hold the first kilobytes of a response; a padded comment gets the stream going.
_PREAMBLE = b": eventflow live stream" + b" " * 2048 + b"\nretry: 3000\n\n"
_SHARED_STATE_ERRORS = (RedisError, SQLAlchemyError, OSError, TimeoutError)
T = TypeVar("T")


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
    place = _Place(access.slots, session.user_id, stream_id)
    frames = _frames(services, _LiveView(services, session.user_id), place, session)
    return _StreamResponse(frames, place)


@dataclass(frozen=True, slots=True)
class _Place:
    """One open stream's place under the per-user cap."""

    slots: StreamSlots
    user_id: str
    stream_id: str

    async def renew(self) -> None:
        try:
            await _finish_even_if_cancelled(self.slots.renew(self.user_id, self.stream_id))
        except _SHARED_STATE_ERRORS as exc:
            # The stream goes on: it was admitted, and the next renewal may well succeed.
            log.warning("stream: renewing its place failed: %s", exc)

    async def release(self) -> None:
        try:
            await _finish_even_if_cancelled(self.slots.release(self.user_id, self.stream_id))
        except _SHARED_STATE_ERRORS as exc:
            log.warning("stream: freeing its place failed (its lease will): %s", exc)


class _StreamResponse(StreamingResponse):
    """An event stream that frees its place however it ends, even if its body never started.

    Freed here rather than in the body's ``finally``: a client gone before the first byte
    means the body generator never starts, and so never reaches its ``finally``.
    """

    def __init__(self, content: AsyncIterator[bytes], place: _Place) -> None:
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
    services: Services, live: _LiveView, place: _Place, session: TokenClaims
) -> AsyncIterator[bytes]:
    yield _PREAMBLE
    yield _frame("hello", {"user_id": session.user_id, "tick_ms": int(TICK_S * 1000)})
    clock = asyncio.get_running_loop().time
    next_tick = clock()
    next_renewal = clock() + SLOT_RENEW_S
    first = True
    while True:
        if _server_exiting():
            yield _frame("bye", {"reason": "shutdown"})
            return
        if time.time() >= session.expires_at:
            yield _frame("bye", {"reason": "session-expired"})
            return
        if not await _still_signed_in(services, session):
            yield _frame("bye", {"reason": "signed-out"})
            return
        try:
            frames = await _finish_even_if_cancelled(live.start() if first else live.tick())
            first = False
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("stream tick failed: %s", exc)
            # A comment keeps proxies from closing an idle stream while the database is away.
            frames = [b": tick failed, retrying\n\n"]
        for frame in frames:
            yield frame
        if clock() >= next_renewal:
            await place.renew()
            next_renewal = clock() + SLOT_RENEW_S
        next_tick = max(next_tick + TICK_S, clock() + TICK_S / 10)
        # Short naps, so a shutdown is noticed within a tenth of a second: uvicorn offers
        # only a flag to poll, no event to wait on.
        while clock() < next_tick and not _server_exiting():  # noqa: ASYNC110
            await asyncio.sleep(min(_SHUTDOWN_POLL_S, next_tick - clock()))


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


async def _finish_even_if_cancelled(work: Coroutine[Any, Any, T]) -> T:
    """``work`` (one tick's queries, a Redis call) run to its end within the budget, even if
    the client leaves.

    A client that goes away cancels the response; a query or command cancelled half-way makes
    the driver tear its connection down instead of handing it back to the pool.
    """

    async def bounded() -> T:
        async with asyncio.timeout(_TICK_BUDGET_S):
            return await work

    task = asyncio.ensure_future(bounded())
    task.add_done_callback(_retrieve_exception)
    return await asyncio.shield(task)


def _retrieve_exception(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("stream tick ended with %r", task.exception())


class _LiveView:
    """What one stream has told its client, so each tick sends only what changed."""

    def __init__(self, services: Services, user_id: str) -> None:
        self._services = services
        self._feed = services.feed
        self._user_id = user_id
        self._cursor: str | None = None
        self._last_tick_ms = 0
        self._watched: OrderedDict[str, None] = OrderedDict()
        self._sent: OrderedDict[str, tuple[str, int, int]] = OrderedDict()

    async def start(self) -> list[bytes]:
        """Five minutes of history; the feed itself the client loads from ``GET /events``."""
        self._last_tick_ms = now_ms()
        self._cursor = await self._feed.newest_id(self._user_id)
        self._remember(await self._feed.in_flight(self._user_id, _SEED_PER_STATUS))
        return [await self._metrics(BACKFILL_S)]

    async def tick(self) -> list[bytes]:
        started = now_ms()
        rows = await self._feed.changes(
            self._user_id,
            after_id=self._cursor,
            watched=list(self._watched),
            finished_since_ms=self._last_tick_ms - _FINISHED_OVERLAP_MS,
            limit=_FEED_LIMIT,
        )
        self._last_tick_ms = started
        changed = [r for r in rows if self._sent.get(r.id) != r.version]
        self._remember(rows)
        frames = [await self._metrics(_RECENT_S)]
        if changed:
            frames.append(_frame("feed", {"events": [_feed_item(r) for r in changed]}))
        return frames

    async def _metrics(self, seconds: int) -> bytes:
        # The same numbers as GET /stats, so the page and the API can never disagree.
        snapshot = await read_stats(self._services, self._user_id)
        now_s = now_ms() // 1000
        series = await self._feed.series(self._user_id, now_s - seconds + 1, now_s)
        body: dict[str, Any] = snapshot.model_dump()
        body["t"] = now_ms()
        body["series"] = {
            "start": series.start,
            "ingested": series.ingested,
            "completed": series.completed,
            "failed": series.failed,
        }
        return _frame("metrics", body)

    def _remember(self, rows: list[FeedRow]) -> None:
        for row in rows:
            if self._cursor is None or row.id > self._cursor:
                self._cursor = row.id
            self._sent[row.id] = row.version
            self._sent.move_to_end(row.id)
            if row.finished:
                self._watched.pop(row.id, None)
            else:
                self._watched[row.id] = None
        while len(self._sent) > _SENT_MAX:
            self._sent.popitem(last=False)
        while len(self._watched) > _WATCH_MAX:
            self._watched.popitem(last=False)


def _feed_item(row: FeedRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "status": row.status.value,
        "attempt_count": row.attempts,
        "preview": row.preview,
        "truncated": row.truncated,
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "available_at": iso(row.available_at),
        "completed_at": iso(row.completed_at),
    }


def _frame(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _server_exiting() -> bool:
    """Whether uvicorn has begun a graceful shutdown.

    uvicorn waits for open responses before it stops, and an event stream never finishes by
    itself: without this, every open dashboard would hold a SIGTERM for the whole graceful
    timeout. uvicorn installs its ``Server.handle_exit`` as the signal handler and gives the
    application no other notice, so its ``should_exit`` flag is read through the handler.
    """
    owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return bool(getattr(owner, "should_exit", False))
