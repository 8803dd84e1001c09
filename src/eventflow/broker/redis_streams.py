"""The ``redis`` broker: "event is ready" hints on one Redis stream read by one consumer group."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from eventflow.broker.keys import EVENT_FIELD, GROUP, RedisKeys
from eventflow.db.events import EventRepository
from eventflow.db.rows import ClaimedEvent
from eventflow.ids import parse_id

log = logging.getLogger(__name__)

_MAX_BLOCK_MS = 2000
_CONNECT_TIMEOUT_S = 1.0
# Must outlast the longest XREADGROUP BLOCK, or an idle worker's read would time out.
_SOCKET_TIMEOUT_S = _MAX_BLOCK_MS / 1000 + 3.0
_TRIM_INTERVAL_S = 1.0
_CONSUMER_SWEEP_S = 60.0
# A live worker re-issues XREADGROUP at least every _MAX_BLOCK_MS, so only dead ones get here.
_DEAD_CONSUMER_IDLE_MS = 300_000
_CLOSE_BUDGET_S = 1.0

Entry = tuple[str, dict[str, str] | None]


class RedisBroker:
    """Hints travel through a stream; the database still decides who runs what.

    Settling a hint acknowledges *and deletes* its entry, so the stream holds only hints that
    are undelivered or in flight; a periodic ``XTRIM MINID`` below the group's oldest undelivered
    or pending entry sweeps up anything a failed settle left behind. Neither ever removes a hint
    that was not yet handled, and a hint lost anyway (``FLUSHALL``, a Redis restart without
    persistence) is re-published by the dispatcher from the database.
    """

    name = "redis"
    carries_hints = True

    def __init__(self, url: str, prefix: str, repo: EventRepository) -> None:
        self._keys = RedisKeys(prefix)
        self._repo = repo
        # One immediate retry on a dropped connection (a pooled socket that died with a Redis
        # restart) and nothing more: an unreachable Redis must fail within milliseconds so the
        # API can answer 503 at once, not after redis-py's default ten backed-off retries.
        self._redis: Redis = Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=_CONNECT_TIMEOUT_S,
            socket_timeout=_SOCKET_TIMEOUT_S,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        # Publishing has a client of its own without a socket timeout: redis-py wraps every
        # reply of a timed client in its own asyncio timeout, a third of the cost of a large
        # XADD pipeline. The writer bounds each publish as a whole instead.
        self._publisher: Redis = Redis.from_url(
            url,
            socket_connect_timeout=_CONNECT_TIMEOUT_S,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        # Stream entries behind each event this process holds, acknowledged on settle.
        self._held: dict[str, list[str]] = {}
        self._owners: set[str] = set()
        self._autoclaim_cursor = "0-0"
        self._next_autoclaim = 0.0
        self._next_trim = 0.0
        self._next_sweep = time.monotonic() + _CONSUMER_SWEEP_S

    @property
    def keys(self) -> RedisKeys:
        return self._keys

    @property
    def client(self) -> Redis:
        return self._redis

    async def start(self) -> None:
        try:
            await self._ensure_group()
        except RedisError as exc:
            # Processes must start while Redis is down; the group is created on first use.
            log.warning("Redis is unreachable at start-up, continuing: %r", exc)

    async def _ensure_group(self) -> None:
        # Start at 0, not $: after a FLUSHALL the writers' XADDs recreate the stream without
        # a group, and those hints must still be delivered.
        try:
            await self._redis.xgroup_create(self._keys.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def publish(self, event_ids: Sequence[str]) -> None:
        if not event_ids:
            return
        stream = self._keys.stream
        async with self._publisher.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.xadd(stream, {EVENT_FIELD: event_id})
            await pipe.execute()

    async def claim(
        self, limit: int, owner: str, lease_ms: int, wait_s: float
    ) -> list[ClaimedEvent]:
        self._owners.add(owner)
        entries = await self._reclaim_idle(limit, owner, lease_ms)
        if not entries:
            entries = await self._read(limit, owner, wait_s)
        claimed = await self._claim_entries(entries, owner, lease_ms) if entries else []
        await self._maintain()
        return claimed

    async def _read(self, limit: int, owner: str, wait_s: float) -> list[Entry]:
        # BLOCK 0 would wait forever; no BLOCK at all returns at once.
        block = min(_MAX_BLOCK_MS, int(wait_s * 1000)) if wait_s > 0 else None
        stream = self._keys.stream
        try:
            reply = await self._redis.xreadgroup(
                GROUP, owner, {stream: ">"}, count=limit, block=block
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("consumer group missing (Redis flushed or restarted?); recreating it")
            await self._ensure_group()
            reply = await self._redis.xreadgroup(GROUP, owner, {stream: ">"}, count=limit)
        return _entries_of_read(reply)

    async def _reclaim_idle(self, limit: int, owner: str, lease_ms: int) -> list[Entry]:
        """Take over hints that a consumer has held for longer than a lease (it died)."""
        now = time.monotonic()
        if now < self._next_autoclaim:
            return []
        self._next_autoclaim = now + min(5.0, max(0.25, lease_ms / 4000))
        try:
            reply = await self._redis.xautoclaim(
                self._keys.stream, GROUP, owner, lease_ms, self._autoclaim_cursor, count=limit
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            return []
        cursor, claimed, deleted = _autoclaim_parts(reply)
        self._autoclaim_cursor = cursor
        if deleted:
            # Redis already dropped these from the pending list: their entries were deleted.
            log.debug("%d pending hints had no entry left", len(deleted))
        if claimed:
            log.info("took over %d hints idle for more than %d ms", len(claimed), lease_ms)
        return claimed

    async def _claim_entries(
        self, entries: list[Entry], owner: str, lease_ms: int
    ) -> list[ClaimedEvent]:
        by_event: dict[str, list[str]] = {}
        spent: list[str] = []
        for entry_id, fields in entries:
            event_id = parse_id(fields.get(EVENT_FIELD, "")) if fields else None
            if event_id is None:
                # Not ours to understand, and a malformed id would fail the whole claim query.
                spent.append(entry_id)
            else:
                by_event.setdefault(event_id, []).append(entry_id)
        claimed = await self._repo.claim_ids(list(by_event), owner, lease_ms)
        for event in claimed:
            entry_ids = by_event.pop(event.id, [])
            # One hint per held event is enough; copies read in the same batch are spent now.
            self._held.setdefault(event.id, []).extend(entry_ids[:1])
            spent.extend(entry_ids[1:])
        # What the database did not hand over is done, running elsewhere, or not due yet (a
        # retry's own hint will come): the hint is spent either way.
        spent.extend(entry_id for ids in by_event.values() for entry_id in ids)
        if spent:
            try:
                await self._drop(spent)
            except RedisError as exc:
                # Still pending under this consumer; XAUTOCLAIM drops them after a lease.
                log.warning("dropping %d spent hints failed: %r", len(spent), exc)
        return claimed

    async def settle(self, events: Sequence[ClaimedEvent]) -> None:
        entry_ids = [entry for e in events for entry in self._held.pop(e.id, ())]
        if entry_ids:
            await self._drop(entry_ids)

    async def _drop(self, entry_ids: Sequence[str]) -> None:
        # MULTI keeps the pair atomic: an acknowledged entry is never left in the stream, and a
        # deleted one never lingers in the pending list.
        stream = self._keys.stream
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, GROUP, *entry_ids)
            pipe.xdel(stream, *entry_ids)
            await pipe.execute()

    async def _maintain(self) -> None:
        now = time.monotonic()
        if now >= self._next_trim:
            self._next_trim = now + _TRIM_INTERVAL_S
            try:
                await self.trim()
            except RedisError as exc:
                log.debug("trimming the stream failed: %r", exc)
        if now >= self._next_sweep:
            self._next_sweep = now + _CONSUMER_SWEEP_S
            try:
                await self._sweep_consumers()
            except RedisError as exc:
                log.debug("sweeping dead consumers failed: %r", exc)

    async def trim(self) -> int:
        """Drop entries below the group's oldest undelivered or pending one; answers how many.

        Safe without a lock: entries the group has yet to deliver all sit above its
        last-delivered id and pending ones at or above the pending minimum, and both bounds only
        move up while this runs (new entries get higher ids; XAUTOCLAIM moves entries that are
        already pending).
        """
        stream = self._keys.stream
        group = await self._group_info()
        if group is None:
            return 0
        floor = _next_id(str(group["last-delivered-id"]))
        if int(group.get("pending") or 0):
            summary = await self._redis.xpending(stream, GROUP)
            oldest = summary.get("min")
            if oldest is not None and _id_key(str(oldest)) < _id_key(floor):
                floor = str(oldest)
        # "~" only drops whole radix-tree nodes below the floor: never an entry at or above it.
        removed = await self._redis.xtrim(stream, minid=floor, approximate=True)
        return int(removed)

    async def _sweep_consumers(self) -> None:
        """Forget consumers of dead workers that hold nothing, so XINFO stays readable."""
        consumers = await self._redis.xinfo_consumers(self._keys.stream, GROUP)
        for consumer in consumers:
            name = str(consumer["name"])
            if name in self._owners or int(consumer.get("pending") or 0):
                continue
            if int(consumer.get("idle") or 0) > _DEAD_CONSUMER_IDLE_MS:
                await self._redis.xgroup_delconsumer(self._keys.stream, GROUP, name)

    async def _group_info(self) -> dict[str, Any] | None:
        try:
            groups = await self._redis.xinfo_groups(self._keys.stream)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return None
            raise
        return next((g for g in groups if g.get("name") == GROUP), None)

    async def depth(self) -> int:
        """Hints not yet delivered to any worker: the stream's lag behind the group."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self._keys.stream)
            pipe.xinfo_groups(self._keys.stream)
            length, groups = await pipe.execute(raise_on_error=False)
        if isinstance(length, Exception):
            raise length
        if isinstance(groups, ResponseError):
            # No stream yet (or flushed): nothing is waiting in Redis.
            return 0
        if isinstance(groups, Exception):
            raise groups
        group = next((g for g in groups if g.get("name") == GROUP), None)
        if group is None:
            return int(length)
        lag = group.get("lag")
        if lag is not None:
            return int(lag)
        # Redis cannot count the lag across deleted entries; but since settled entries are
        # deleted, the stream holds exactly the undelivered hints plus the pending ones.
        return max(0, int(length) - int(group.get("pending") or 0))

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        # This process's consumers leave the group; events they still held were released to
        # the queue by the worker and are re-published by a dispatcher.
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(_CLOSE_BUDGET_S):
                for owner in self._owners:
                    await self._redis.xgroup_delconsumer(self._keys.stream, GROUP, owner)
        self._held.clear()
        await self._publisher.aclose()
        await self._redis.aclose()


def _entries_of_read(reply: Any) -> list[Entry]:
    """The entries of an XREADGROUP reply: ``[[stream, [(id, fields), ...]], ...]`` or None."""
    if not reply:
        return []
    return [(str(entry_id), fields) for _, items in reply for entry_id, fields in items]


def _autoclaim_parts(reply: Any) -> tuple[str, list[Entry], list[str]]:
    cursor = str(reply[0])
    # Redis 6.2 reports deleted entries with nil fields (claiming acknowledges them as spent);
    # 7.0 drops them from the pending list itself and lists their ids separately.
    claimed = [(str(entry_id), fields) for entry_id, fields in reply[1]]
    deleted = [str(i) for i in reply[2]] if len(reply) > 2 else []
    return cursor, claimed, deleted


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _next_id(entry_id: str) -> str:
    ms, seq = _id_key(entry_id)
    return f"{ms}-{seq + 1}"
