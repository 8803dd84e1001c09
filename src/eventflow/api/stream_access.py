"""What the dashboard's stream needs: one-time tickets, the per-user cap, the feed's queries."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from eventflow.auth.tickets import RedisSpentTickets, SpentTickets, StreamTickets
from eventflow.broker.keys import RedisKeys
from eventflow.config import Settings

log = logging.getLogger(__name__)

MAX_STREAMS_PER_USER = 8
#: An open stream renews its place this often. A place not renewed for SLOT_LEASE_MS (its
#: replica was killed, or lost Redis) is free again. Renewals run between ticks, so the longest
#: gap between two is SLOT_RENEW_S plus one tick (five seconds at most): the lease outlasts it.
SLOT_RENEW_S = 5.0
SLOT_LEASE_MS = 15_000
_CONNECT_TIMEOUT_S = 1.0
_SOCKET_TIMEOUT_S = 2.0
#: The longest one tick's queries or one Redis call of a stream may take.
CALL_BUDGET_S = 5.0
_SHARED_STATE_ERRORS = (RedisError, SQLAlchemyError, OSError, TimeoutError)
T = TypeVar("T")

# Redis's clock, not the replicas': replicas whose clocks disagree still agree on which places
# have lapsed. Scripts may call TIME before writing since Redis replicates their effects.
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# KEYS[1]: the user's open streams; ARGV: stream id, cap, lease (ms). 1 if a place was taken.
_ACQUIRE = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)
# KEYS[1]: the user's open streams; ARGV: stream id, lease (ms). Adds the stream back if its
# place lapsed (Redis was away for a while): it is open, so it counts, even above the cap.
_RENEW = (
    _NOW_MS
    + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
)


class StreamSlots(Protocol):
    """Places for open streams, at most ``MAX_STREAMS_PER_USER`` per user."""

    async def acquire(self, user_id: str) -> str | None:
        """A new stream's id, or None when the user already has every place taken."""
        ...

    async def renew(self, user_id: str, stream_id: str) -> None:
        """Called every ``SLOT_RENEW_S`` while the stream is open."""
        ...

    async def release(self, user_id: str, stream_id: str) -> None:
        """Free the place; releasing twice is harmless."""
        ...


class LocalStreamSlots:
    """The streams of this process only: without Redis the cap holds per process."""

    def __init__(self, limit: int = MAX_STREAMS_PER_USER) -> None:
        self._limit = limit
        self._open: dict[str, set[str]] = {}

    async def acquire(self, user_id: str) -> str | None:
        held = self._open.setdefault(user_id, set())
        if len(held) >= self._limit:
            return None
        stream_id = secrets.token_hex(8)
        held.add(stream_id)
        return stream_id

    async def renew(self, user_id: str, stream_id: str) -> None:
        """Nothing lapses here: a process's streams end with the process."""

    async def release(self, user_id: str, stream_id: str) -> None:
        held = self._open.get(user_id)
        if held is None:
            return
        held.discard(stream_id)
        if not held:
            del self._open[user_id]


class RedisStreamSlots:
    """Every replica's streams in one sorted set per user, scored by lease expiry.

    A counter with INCR/DECR would leak the places of a replica killed without its shutdown;
    here each stream renews its own entry, and entries that stopped being renewed are dropped
    by the next ``acquire`` of that user.
    """

    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys,
        *,
        limit: int = MAX_STREAMS_PER_USER,
        lease_ms: int = SLOT_LEASE_MS,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._limit = limit
        self._lease_ms = lease_ms
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)

    async def acquire(self, user_id: str) -> str | None:
        stream_id = secrets.token_hex(8)
        taken = await self._acquire(
            keys=[self._keys.open_streams(user_id)], args=[stream_id, self._limit, self._lease_ms]
        )
        return stream_id if int(taken) == 1 else None

    async def renew(self, user_id: str, stream_id: str) -> None:
        await self._renew(keys=[self._keys.open_streams(user_id)], args=[stream_id, self._lease_ms])

    async def release(self, user_id: str, stream_id: str) -> None:
        await self._redis.zrem(self._keys.open_streams(user_id), stream_id)


@dataclass(frozen=True, slots=True)
class StreamPlace:
    """One open stream's place under the per-user cap."""

    slots: StreamSlots
    user_id: str
    stream_id: str

    async def renew(self) -> None:
        try:
            await finish_even_if_cancelled(self.slots.renew(self.user_id, self.stream_id))
        except _SHARED_STATE_ERRORS as exc:
            # The stream goes on: it was admitted, and the next renewal may well succeed.
            log.warning("stream: renewing its place failed: %s", exc)

    async def release(self) -> None:
        try:
            await finish_even_if_cancelled(self.slots.release(self.user_id, self.stream_id))
        except _SHARED_STATE_ERRORS as exc:
            log.warning("stream: freeing its place failed (its lease will): %s", exc)


async def finish_even_if_cancelled(work: Coroutine[Any, Any, T]) -> T:
    """``work`` (one tick's queries, a Redis call) run to its end within the budget, even if
    the client leaves.

    A client that goes away cancels the response; a query or command cancelled half-way makes
    the driver tear its connection down instead of handing it back to the pool.
    """

    async def bounded() -> T:
        async with asyncio.timeout(CALL_BUDGET_S):
            return await work

    task = asyncio.ensure_future(bounded())
    task.add_done_callback(_retrieve_exception)
    return await asyncio.shield(task)


def _retrieve_exception(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("stream call ended with %r", task.exception())


@dataclass(frozen=True, slots=True)
class StreamAccess:
    """Built once per process at start-up; shared by every stream request."""

    tickets: StreamTickets
    slots: StreamSlots


@asynccontextmanager
async def open_stream_access(
    settings: Settings, spent_in_database: SpentTickets, secret: str
) -> AsyncIterator[StreamAccess]:
    """Tickets spent in Redis and a deployment-wide cap, or without Redis: tickets spent in the
    database (shared by every process on it) and a cap per process."""
    if not settings.redis_url:
        yield StreamAccess(StreamTickets(secret, spent_in_database), LocalStreamSlots())
        return
    # Short timeouts and one immediate retry, like the broker's: an unreachable Redis makes the
    # stream request a quick 503, and the page retries with a fresh ticket.
    redis: Redis = Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=_CONNECT_TIMEOUT_S,
        socket_timeout=_SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    try:
        keys = RedisKeys(settings.redis_prefix)
        tickets = StreamTickets(secret, RedisSpentTickets(redis, keys))
        yield StreamAccess(tickets, RedisStreamSlots(redis, keys))
    finally:
        await redis.aclose()
