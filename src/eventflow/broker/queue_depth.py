"""The queue depth of the ``redis`` broker: event ids published but not yet read by a worker."""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from eventflow.broker.keys import GROUP, RedisKeys

log = logging.getLogger(__name__)

_RESET_COUNTER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], '0') end
"""


class QueueDepth:
    """A counter of ids, since one entry carries many: up by each publish (in the publish's
    ``MULTI``, ``keys.hinted``), down by each worker's read.

    A worker killed between its read and its count leaves the counter high; it is reset
    whenever the stream shows nothing undelivered, so the error never outlives an empty queue.
    """

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._reset_counter = redis.register_script(_RESET_COUNTER)

    async def count_delivered(self, count: int) -> None:
        """Freshly read ids leave the queue depth (taken-over entries were counted already)."""
        if not count:
            return
        try:
            await self._redis.decrby(self._keys.hinted, count)
        except RedisError as exc:
            # The depth reads high until the queue next runs empty (see read()).
            log.debug("could not count %d hints as delivered: %r", count, exc)

    async def read(self) -> int:
        """Event ids published but not yet read by any worker."""
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
