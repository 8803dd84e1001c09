"""The ``redis`` broker: "event is ready" hints on one Redis stream read by one consumer group."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from eventflow.broker.base import HintClaimStore
from eventflow.broker.hint_buffer import Entry, Hint, HintBuffer, event_ids, hints_by_event
from eventflow.broker.keys import GROUP, IDS_FIELD, IDS_PER_ENTRY, RedisKeys
from eventflow.broker.queue_depth import QueueDepth
from eventflow.broker.stream_upkeep import StreamUpkeep
from eventflow.broker.takeover import Takeover
from eventflow.db.rows import ClaimedEvent

log = logging.getLogger(__name__)

_MAX_BLOCK_MS = 2000
_CONNECT_TIMEOUT_S = 1.0
# Must outlast the longest XREADGROUP BLOCK, or an idle worker's read would time out.
_SOCKET_TIMEOUT_S = _MAX_BLOCK_MS / 1000 + 3.0
_CLOSE_BUDGET_S = 1.0
# A worker keeps at most this many hints read ahead (or twice what it asked for, if more).
_PREFETCH_FLOOR = 64


class RedisBroker:
    """Hints travel through a stream; the database still decides who runs what.

    One stream entry carries the ids of many ready events (one group commit's worth), so the
    API pays one ``XADD`` per commit rather than one per event, and a worker reads hundreds of
    hints with one ``XREADGROUP``. A worker keeps the ids it has read but not yet claimed in a
    local buffer, and an entry is acknowledged *and deleted* once every id in it has been
    settled or found spent; the stream therefore holds only hints that are undelivered or in
    flight. A periodic ``XTRIM MINID`` below the group's oldest undelivered or pending entry
    sweeps up anything a failed settle left behind. Neither ever removes a hint that was not yet
    handled, and a hint lost anyway (``FLUSHALL``, a Redis restart without persistence) is
    re-published by the dispatcher from the database.
    """

    name = "redis"
    carries_hints = True

    def __init__(self, url: str, prefix: str, repo: HintClaimStore) -> None:
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
        # reply of a timed client in its own asyncio timeout. The writer bounds each publish as
        # a whole instead.
        self._publisher: Redis = Redis.from_url(
            url,
            socket_connect_timeout=_CONNECT_TIMEOUT_S,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._hints = HintBuffer()
        self._owners: set[str] = set()
        self._depth = QueueDepth(self._redis, self._keys)
        self._takeover = Takeover(self._redis, self._keys)
        self._upkeep = StreamUpkeep(self._redis, self._keys, self._owners)

    @property
    def keys(self) -> RedisKeys:
        return self._keys

    @property
    def client(self) -> Redis:
        return self._redis

    @property
    def buffered(self) -> int:
        """Hints this process has read but not yet claimed."""
        return len(self._hints)

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
        # MULTI: the entries and the depth counter move together (one hash slot: the tag).
        async with self._publisher.pipeline(transaction=True) as pipe:
            for start in range(0, len(event_ids), IDS_PER_ENTRY):
                pipe.xadd(stream, {IDS_FIELD: ",".join(event_ids[start : start + IDS_PER_ENTRY])})
            pipe.incrby(self._keys.hinted, len(event_ids))
            await pipe.execute()

    async def claim(
        self, limit: int, owner: str, lease_ms: int, wait_s: float
    ) -> list[ClaimedEvent]:
        self._owners.add(owner)
        hints = self._hints
        if len(hints) < limit:
            entries = await self._takeover.idle_entries(
                hints.entries_for(limit), owner, lease_ms, hints.is_reading
            )
            if entries:
                await self._take_in(entries)
            else:
                # With hints in hand, do not wait for more.
                entries = await self._read(limit - len(hints), owner, 0 if hints else wait_s)
                await self._depth.count_delivered(await self._take_in(entries))
            surplus = len(hints) - max(2 * limit, _PREFETCH_FLOOR)
            if surplus > 0:
                await self._hand_back(surplus)
        claimed: list[ClaimedEvent] = []
        # A batch of spent copies claims nothing; go on while hints are in hand, so an empty
        # answer means there is nothing to do.
        while hints and not claimed:
            batch = hints.next_batch(limit)
            try:
                claimed = await self._claim_hints(batch, owner, lease_ms)
            except BaseException:
                hints.put_back(batch)
                raise
        await self._upkeep.run_due()
        return claimed

    async def _read(self, want: int, owner: str, wait_s: float) -> list[Entry]:
        # BLOCK 0 would wait forever; no BLOCK at all returns at once.
        block = min(_MAX_BLOCK_MS, int(wait_s * 1000)) if wait_s > 0 else None
        count = self._hints.entries_for(want)
        stream = self._keys.stream
        try:
            reply = await self._redis.xreadgroup(
                GROUP, owner, {stream: ">"}, count=count, block=block
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("consumer group missing (Redis flushed or restarted?); recreating it")
            await self._ensure_group()
            reply = await self._redis.xreadgroup(GROUP, owner, {stream: ">"}, count=count)
        return _entries_of_read(reply)

    async def _take_in(self, entries: list[Entry]) -> int:
        """Buffer the hints of read entries (entries with none usable are spent); how many."""
        taken, unusable = self._hints.take_in(entries)
        await self._drop_quietly(unusable)
        return taken

    async def _hand_back(self, count: int) -> None:
        """Put the newest ``count`` buffered hints back on the stream for other workers.

        An entry holds a whole group commit; a worker with little free capacity must not sit on
        hundreds of hints that idle workers could run.
        """
        hints = self._hints.newest(count)
        try:
            await self.publish(event_ids(hints))
        except RedisError as exc:
            log.debug("handing back %d hints failed, keeping them: %r", count, exc)
            self._hints.restore(hints)
            return
        await self._drop_quietly(self._hints.handed_back(hints))

    async def _claim_hints(
        self, hints: list[Hint], owner: str, lease_ms: int
    ) -> list[ClaimedEvent]:
        by_event = hints_by_event(hints)
        claimed = await self._repo.claim_ids(list(by_event), owner, lease_ms)
        await self._drop_quietly(self._hints.hold(by_event, (event.id for event in claimed)))
        return claimed

    async def settle(self, events: Sequence[ClaimedEvent]) -> None:
        finished = self._hints.settle(e.id for e in events)
        if finished:
            await self._drop(finished)

    async def _drop_quietly(self, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        try:
            await self._drop(entry_ids)
        except RedisError as exc:
            # Still pending under this consumer; XAUTOCLAIM finds them spent after a lease.
            log.warning("dropping %d spent hint entries failed: %r", len(entry_ids), exc)

    async def _drop(self, entry_ids: Sequence[str]) -> None:
        # MULTI keeps the pair atomic: an acknowledged entry is never left in the stream, and a
        # deleted one never lingers in the pending list.
        stream = self._keys.stream
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, GROUP, *entry_ids)
            pipe.xdel(stream, *entry_ids)
            await pipe.execute()

    async def trim(self) -> int:
        """Drop entries no longer needed (``stream_upkeep.py``); answers how many."""
        return await self._upkeep.trim()

    async def depth(self) -> int:
        """Event ids published but not yet read by any worker (``queue_depth.py``)."""
        return await self._depth.read()

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        # This process's consumers leave the group; events they still held were released to
        # the queue by the worker and are re-published by a dispatcher. Hints read but never
        # claimed go back on the stream first, so those events wait for no redispatch.
        unclaimed = self._hints.unclaimed()
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(_CLOSE_BUDGET_S):
                await self.publish(unclaimed)
                for owner in self._owners:
                    await self._redis.xgroup_delconsumer(self._keys.stream, GROUP, owner)
        self._owners.clear()
        self._hints.clear()
        await self._publisher.aclose()
        await self._redis.aclose()


def _entries_of_read(reply: Any) -> list[Entry]:
    """The entries of an XREADGROUP reply: ``[[stream, [(id, fields), ...]], ...]`` or None."""
    if not reply:
        return []
    return [(str(entry_id), fields) for _, items in reply for entry_id, fields in items]
