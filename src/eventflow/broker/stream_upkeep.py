"""Keeping the hint stream small: trimming below what is still needed, forgetting dead consumers."""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from eventflow.broker.keys import GROUP, RedisKeys

log = logging.getLogger(__name__)

_TRIM_INTERVAL_S = 1.0
_CONSUMER_SWEEP_S = 60.0
# A live worker re-issues XREADGROUP at least every few seconds, so only dead ones get here.
_DEAD_CONSUMER_IDLE_MS = 300_000


class StreamUpkeep:
    """Runs from each worker's claims: a trim every second, a consumer sweep every minute."""

    def __init__(self, redis: Redis, keys: RedisKeys, owners: set[str]) -> None:
        self._redis = redis
        self._keys = keys
        # This process's consumers, never swept.
        self._owners = owners
        self._next_trim = 0.0
        self._next_sweep = time.monotonic() + _CONSUMER_SWEEP_S

    async def run_due(self) -> None:
        """Whatever is due; a failure is logged and waits for the next time."""
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
                await self.sweep_consumers()
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

    async def sweep_consumers(self) -> None:
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


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _next_id(entry_id: str) -> str:
    ms, seq = _id_key(entry_id)
    return f"{ms}-{seq + 1}"
