"""Server-Sent Events for the dashboard: live metrics and feed changes, opened with a ticket.

EventSource cannot send an ``Authorization`` header, so a client trades its bearer token for a
ticket (``POST /stream/ticket``) and opens ``GET /stream?ticket=…``. A ticket is HMAC-signed
with a key derived from the JWT secret, so any API replica can check it without shared state;
it lives 30 seconds, is single-use within a process, names its user, and is scoped to the
stream (a ticket is no access token, and an access token is no ticket). A stream ends when the
access token it was obtained with expires, and within a second of a graceful server shutdown.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import signal
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

import jwt
import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response, StreamingResponse

from eventflow.api.deps import ServicesDep, UserId, ensure_known_user
from eventflow.api.problems import problem_response
from eventflow.api.routes.stats import stats as read_stats
from eventflow.clock import iso, now_ms
from eventflow.db.feed import FeedQueries, FeedRow
from eventflow.errors import Unauthorized
from eventflow.services import Services

log = logging.getLogger(__name__)

router = APIRouter(prefix="/stream", tags=["stream"])

TICKET_TTL_S = 30
TICK_S = 1.0
BACKFILL_S = 300
MAX_STREAMS_PER_USER = 8
_TICK_BUDGET_S = 5.0
_SHUTDOWN_POLL_S = 0.1
_RECENT_S = 5
_FINISHED_OVERLAP_MS = 5_000
_FEED_LIMIT = 200
_SEED_PER_STATUS = 50
_WATCH_MAX = 500
_SENT_MAX = 5_000
_SCOPE = "stream.v1"
_KEY_LABEL = b"eventflow/stream-ticket/v1"
# Some proxies hold the first kilobytes of a response; a padded comment gets the stream going.
_PREAMBLE = b": eventflow live stream" + b" " * 2048 + b"\nretry: 3000\n\n"


class TicketOut(BaseModel):
    ticket: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class Ticket:
    user_id: str
    session_expires: int


class StreamTickets:
    """Issues and redeems stream tickets: ``base64url(claims) "." base64url(hmac)``."""

    def __init__(
        self, secret: str, *, ttl_s: int = TICKET_TTL_S, clock: Callable[[], float] = time.time
    ) -> None:
        # A key of its own, so nothing signed for tickets can ever pass as an access token.
        self._key = hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()
        self._ttl = ttl_s
        self._clock = clock
        self._spent: dict[str, float] = {}

    def issue(self, user_id: str, session_expires: int) -> str:
        expires_ms = int((self._clock() + self._ttl) * 1000)
        claims = f"{_SCOPE}|{user_id}|{expires_ms}|{session_expires}|{secrets.token_urlsafe(16)}"
        raw = claims.encode()
        return f"{_b64(raw)}.{_b64(self._sign(raw))}"

    def redeem(self, ticket: str) -> Ticket:
        """The ticket's user; ``Unauthorized`` if forged, expired, or already used."""
        encoded, _, signature = ticket.partition(".")
        try:
            raw, mac = _unb64(encoded), _unb64(signature)
        except (binascii.Error, ValueError) as exc:
            raise Unauthorized("The stream ticket is invalid") from exc
        if not hmac.compare_digest(mac, self._sign(raw)):
            raise Unauthorized("The stream ticket is invalid")
        scope, user_id, expires_ms, session_expires, nonce = raw.decode().split("|")
        now = self._clock()
        if scope != _SCOPE:
            raise Unauthorized("The stream ticket is invalid")
        if int(expires_ms) <= now * 1000:
            raise Unauthorized("The stream ticket has expired; ask for a new one")
        self._forget_expired(now)
        if nonce in self._spent:
            raise Unauthorized("The stream ticket was already used; ask for a new one")
        self._spent[nonce] = int(expires_ms) / 1000
        return Ticket(user_id=user_id, session_expires=int(session_expires))

    def _sign(self, raw: bytes) -> bytes:
        return hmac.new(self._key, raw, hashlib.sha256).digest()

    def _forget_expired(self, now: float) -> None:
        # Every ticket has the same lifetime, so insertion order is expiry order.
        for nonce, expires in list(self._spent.items()):
            if expires > now:
                break
            del self._spent[nonce]


@dataclass(slots=True)
class StreamState:
    """Per-application stream bookkeeping (tickets spent here, streams open per user)."""

    tickets: StreamTickets
    open_streams: Counter[str] = field(default_factory=Counter)


def _stream_state(request: Request, services: Services) -> StreamState:
    state: StreamState | None = getattr(request.app.state, "eventflow_stream", None)
    if state is None:
        state = StreamState(StreamTickets(services.settings.resolve_jwt_secret()))
        request.app.state.eventflow_stream = state
    return state


@router.post("/ticket", response_model=TicketOut)
async def issue_ticket(request: Request, services: ServicesDep, user_id: UserId) -> Response:
    """A single-use ticket for ``GET /stream`` (EventSource cannot send a bearer token)."""
    state = _stream_state(request, services)
    token = (request.headers.get("authorization") or "").partition(" ")[2].strip()
    # Already verified by ``UserId``; only its expiry is read here.
    session_expires = int(jwt.decode(token, options={"verify_signature": False})["exp"])
    body = TicketOut(ticket=state.tickets.issue(user_id, session_expires), expires_in=TICKET_TTL_S)
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
    request: Request,
    services: ServicesDep,
    ticket: Annotated[
        str | None, Query(max_length=1024, description="From POST /stream/ticket")
    ] = None,
) -> Response:
    """Live metrics every second and feed changes as they happen, as Server-Sent Events."""
    if not ticket:
        raise Unauthorized("A stream ticket is required: POST /api/v1/stream/ticket first")
    state = _stream_state(request, services)
    claims = state.tickets.redeem(ticket)
    await ensure_known_user(services, claims.user_id)
    if state.open_streams[claims.user_id] >= MAX_STREAMS_PER_USER:
        return problem_response(
            429,
            "Too many requests",
            f"This account already has {MAX_STREAMS_PER_USER} live streams open here",
            slug="too-many-streams",
            headers={"Retry-After": "10"},
        )
    live = _LiveView(services, claims.user_id)
    return StreamingResponse(
        _frames(live, state, claims),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _frames(live: _LiveView, state: StreamState, claims: Ticket) -> AsyncIterator[bytes]:
    # Counted inside the generator: its ``finally`` runs on every way out, including the
    # cancellation Starlette delivers when the client goes away.
    state.open_streams[claims.user_id] += 1
    try:
        yield _PREAMBLE
        yield _frame("hello", {"user_id": claims.user_id, "tick_ms": int(TICK_S * 1000)})
        clock = asyncio.get_running_loop().time
        next_tick = clock()
        first = True
        while True:
            if _server_exiting():
                yield _frame("bye", {"reason": "shutdown"})
                return
            if time.time() >= claims.session_expires:
                yield _frame("bye", {"reason": "session-expired"})
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
            next_tick = max(next_tick + TICK_S, clock() + TICK_S / 10)
            # Short naps, so a shutdown is noticed within a tenth of a second: uvicorn offers
            # only a flag to poll, no event to wait on.
            while clock() < next_tick and not _server_exiting():  # noqa: ASYNC110
                await asyncio.sleep(min(_SHUTDOWN_POLL_S, next_tick - clock()))
    finally:
        state.open_streams[claims.user_id] -= 1
        if state.open_streams[claims.user_id] <= 0:
            del state.open_streams[claims.user_id]


async def _finish_even_if_cancelled(work: Coroutine[Any, Any, list[bytes]]) -> list[bytes]:
    """One tick's queries, run to their end (within the budget) even if the client leaves.

    A client that goes away cancels the response; a query cancelled half-way makes the driver
    tear its connection down instead of handing it back to the pool.
    """

    async def bounded() -> list[bytes]:
        async with asyncio.timeout(_TICK_BUDGET_S):
            return await work

    task = asyncio.ensure_future(bounded())
    task.add_done_callback(_retrieve_exception)
    return await asyncio.shield(task)


def _retrieve_exception(task: asyncio.Future[list[bytes]]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("stream tick ended with %r", task.exception())


class _LiveView:
    """What one stream has told its client, so each tick sends only what changed."""

    def __init__(self, services: Services, user_id: str) -> None:
        self._services = services
        self._feed = FeedQueries(services.engine)
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


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # Only the one canonical spelling: the decoder ignores a last character's unused bits, so
    # several texts would otherwise redeem as the same ticket.
    if _b64(raw) != text:
        raise ValueError("not canonical base64url")
    return raw
