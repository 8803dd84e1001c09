"""The ``redis`` broker: "event is ready" hints on one Redis stream read by one consumer group."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from eventflow.broker.base import HintClaimStore
from eventflow.broker.keys import GROUP, IDS_FIELD, IDS_PER_ENTRY, RedisKeys
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
# A worker keeps at most this many hints read ahead (or twice what it asked for, if more).
_PREFETCH_FLOOR = 64
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# What this module publishes: canonical ids (str(UUID)), comma-separated.
_CANONICAL_IDS = re.compile(f"{_UUID}(?:,{_UUID})*")
_RESET_COUNTER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], '0') end
"""

Entry = tuple[str, dict[str, str] | None]


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
        self._reset_counter = self._redis.register_script(_RESET_COUNTER)
        # Hints read from the stream but not yet claimed: (event id, entry id), oldest first.
        self._ready: deque[tuple[str, str]] = deque()
        # For each entry this process read: how many of its hints are not yet settled or spent.
        self._outstanding: dict[str, int] = {}
        # The entry behind each event this process holds, acknowledged on settle.
        self._held: dict[str, str] = {}
        # Hints per entry in the last read, to size the next XREADGROUP COUNT.
        self._ids_per_entry = float(IDS_PER_ENTRY)
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

    @property
    def buffered(self) -> int:
        """Hints this process has read but not yet claimed."""
        return len(self._ready)

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
        if len(self._ready) < limit:
            entries = await self._reclaim_idle(limit, owner, lease_ms)
            if entries:
                await self._take_in(entries)
            else:
                # With hints in hand, do not wait for more.
                entries = await self._read(
                    limit - len(self._ready), owner, 0 if self._ready else wait_s
                )
                await self._count_delivered(await self._take_in(entries))
            surplus = len(self._ready) - max(2 * limit, _PREFETCH_FLOOR)
            if surplus > 0:
                await self._hand_back(surplus)
        claimed: list[ClaimedEvent] = []
        # A batch of spent copies claims nothing; go on while hints are in hand, so an empty
        # answer means there is nothing to do.
        while self._ready and not claimed:
            hints = [self._ready.popleft() for _ in range(min(limit, len(self._ready)))]
            try:
                claimed = await self._claim_hints(hints, owner, lease_ms)
            except BaseException:
                self._ready.extendleft(reversed(hints))
                raise
        await self._maintain()
        return claimed

    async def _read(self, want: int, owner: str, wait_s: float) -> list[Entry]:
        # BLOCK 0 would wait forever; no BLOCK at all returns at once.
        block = min(_MAX_BLOCK_MS, int(wait_s * 1000)) if wait_s > 0 else None
        count = max(1, min(want, math.ceil(want / self._ids_per_entry)))
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

    async def _count_delivered(self, count: int) -> None:
        """Freshly read ids leave the queue depth (taken-over entries were counted already)."""
        if not count:
            return
        try:
            await self._redis.decrby(self._keys.hinted, count)
        except RedisError as exc:
            # The depth reads high until the queue next runs empty (see depth()).
            log.debug("could not count %d hints as delivered: %r", count, exc)

    async def _reclaim_idle(self, limit: int, owner: str, lease_ms: int) -> list[Entry]:
        """Take over hints that a consumer has held for longer than a lease (it died)."""
        now = time.monotonic()
        if now < self._next_autoclaim:
            return []
        self._next_autoclaim = now + min(5.0, max(0.25, lease_ms / 4000))
        count = max(1, math.ceil(limit / self._ids_per_entry))
        try:
            reply = await self._redis.xautoclaim(
                self._keys.stream, GROUP, owner, lease_ms, self._autoclaim_cursor, count=count
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
        # Entries this process is still working through can look idle too; they are not lost.
        claimed = [entry for entry in claimed if entry[0] not in self._outstanding]
        if claimed:
            log.info("took over %d hint entries idle for more than %d ms", len(claimed), lease_ms)
        return claimed

    async def _take_in(self, entries: list[Entry]) -> int:
        """Buffer the hints of read entries (entries with none usable are spent); how many."""
        spent: list[str] = []
        taken = len(self._ready)
        for entry_id, fields in entries:
            ids = _hint_ids(fields)
            if not ids:
                # Not ours to understand: a malformed id would fail the whole claim query.
                spent.append(entry_id)
                continue
            self._outstanding[entry_id] = self._outstanding.get(entry_id, 0) + len(ids)
            self._ready.extend((event_id, entry_id) for event_id in ids)
        taken = len(self._ready) - taken
        if entries:
            self._ids_per_entry = max(1.0, taken / len(entries))
        await self._drop_quietly(spent)
        return taken

    async def _hand_back(self, count: int) -> None:
        """Put the newest ``count`` buffered hints back on the stream for other workers.

        An entry holds a whole group commit; a worker with little free capacity must not sit on
        hundreds of hints that idle workers could run.
        """
        hints = [self._ready.pop() for _ in range(count)]
        hints.reverse()
        try:
            await self.publish(_event_ids(hints))
        except RedisError as exc:
            log.debug("handing back %d hints failed, keeping them: %r", count, exc)
            self._ready.extend(hints)
            return
        await self._drop_quietly(self._spend([entry_id for _, entry_id in hints]))

    async def _claim_hints(
        self, hints: list[tuple[str, str]], owner: str, lease_ms: int
    ) -> list[ClaimedEvent]:
        by_event: dict[str, list[str]] = {}
        for event_id, entry_id in hints:
            by_event.setdefault(event_id, []).append(entry_id)
        claimed = await self._repo.claim_ids(list(by_event), owner, lease_ms)
        spent: list[str] = []
        for event in claimed:
            entry_ids = by_event.pop(event.id)
            # One hint per held event is enough; copies read in the same batch are spent now.
            self._held[event.id] = entry_ids[0]
            spent.extend(entry_ids[1:])
        # What the database did not hand over is done, running elsewhere, or not due yet (a
        # retry's own hint will come): the hint is spent either way.
        for entry_ids in by_event.values():
            spent.extend(entry_ids)
        await self._drop_quietly(self._spend(spent))
        return claimed

    def _spend(self, entry_ids: Sequence[str]) -> list[str]:
        """Count one hint of each of ``entry_ids`` as done; answers the entries now finished."""
        finished: list[str] = []
        for entry_id in entry_ids:
            left = self._outstanding.get(entry_id)
            if left is None:
                continue
            if left <= 1:
                del self._outstanding[entry_id]
                finished.append(entry_id)
            else:
                self._outstanding[entry_id] = left - 1
        return finished

    async def settle(self, events: Sequence[ClaimedEvent]) -> None:
        held = [entry for e in events if (entry := self._held.pop(e.id, None)) is not None]
        finished = self._spend(held)
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
        """Event ids published but not yet read by any worker.

        Counted by ``publish`` (up) and by each worker read (down), since one entry carries many
        ids. A worker killed between its read and its count leaves the counter high; it is
        reset whenever the stream shows nothing undelivered, so the error never outlives an
        empty queue.
        """
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self._keys.stream)
            pipe.xinfo_groups(self._keys.stream)
            pipe.get(self._keys.hinted)
            length, groups, counted = await pipe.execute(raise_on_error=False)
        if isinstance(length, Exception):
            raise length
        if isinstance(counted, Exception):
            raise counted
        if isinstance(groups, ResponseError):
            # No stream yet (or flushed): nothing is waiting in Redis.
            undelivered = 0
        elif isinstance(groups, Exception):
            raise groups
        else:
            undelivered = _undelivered_entries(groups, int(length))
        if undelivered == 0:
            if counted is not None and counted != "0":
                # Compare-and-set, so that API processes correcting at once cannot overshoot.
                await self._reset_counter(keys=[self._keys.hinted], args=[counted])
            return 0
        # Every undelivered entry holds at least one id.
        return max(undelivered, int(counted or 0))

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        # This process's consumers leave the group; events they still held were released to
        # the queue by the worker and are re-published by a dispatcher. Hints read but never
        # claimed go back on the stream first, so those events wait for no redispatch.
        unclaimed = _event_ids(self._ready)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(_CLOSE_BUDGET_S):
                await self.publish(unclaimed)
                for owner in self._owners:
                    await self._redis.xgroup_delconsumer(self._keys.stream, GROUP, owner)
        self._owners.clear()
        self._ready.clear()
        self._outstanding.clear()
        self._held.clear()
        await self._publisher.aclose()
        await self._redis.aclose()


def _undelivered_entries(groups: Any, length: int) -> int:
    group = next((g for g in groups if g.get("name") == GROUP), None)
    if group is None:
        return length
    lag = group.get("lag")
    if lag is not None:
        return int(lag)
    # Redis cannot count the lag across deleted entries; but since settled entries are
    # deleted, the stream holds exactly the undelivered entries plus the pending ones.
    return max(0, length - int(group.get("pending") or 0))


def _event_ids(hints: Iterable[tuple[str, str]]) -> list[str]:
    """The distinct event ids of buffered hints, in order."""
    return list(dict.fromkeys(event_id for event_id, _ in hints))


def _hint_ids(fields: dict[str, str] | None) -> list[str]:
    """The well-formed event ids of an entry, in canonical form."""
    text = fields.get(IDS_FIELD) if fields else None
    if not text:
        return []
    if _CANONICAL_IDS.fullmatch(text):
        return text.split(",")
    return [i for i in map(parse_id, text.split(",")) if i is not None]


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
