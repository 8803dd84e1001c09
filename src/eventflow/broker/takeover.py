"""Taking over hint entries from a consumer that held them longer than a lease (it died)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from eventflow.broker.hint_buffer import Entry
from eventflow.broker.keys import GROUP, RedisKeys

log = logging.getLogger(__name__)


class Takeover:
    """``XAUTOCLAIM`` through the group's pending list, a step at most every quarter lease."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._cursor = "0-0"
        self._next_at = 0.0

    async def idle_entries(
        self, entries: int, owner: str, lease_ms: int, reading: Callable[[str], bool]
    ) -> list[Entry]:
        """Up to ``entries`` entries idle for over ``lease_ms``, now ``owner``'s; none when a
        step is not due. ``reading`` names entries this process is still working through: they
        can look idle too, but they are not lost."""
        now = time.monotonic()
        if now < self._next_at:
            return []
        self._next_at = now + min(5.0, max(0.25, lease_ms / 4000))
        try:
            reply = await self._redis.xautoclaim(
                self._keys.stream, GROUP, owner, lease_ms, self._cursor, count=entries
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            return []
        cursor, claimed, deleted = _autoclaim_parts(reply)
        self._cursor = cursor
        if deleted:
            # Redis already dropped these from the pending list: their entries were deleted.
            log.debug("%d pending hints had no entry left", len(deleted))
        claimed = [entry for entry in claimed if not reading(entry[0])]
        if claimed:
            log.info("took over %d hint entries idle for more than %d ms", len(claimed), lease_ms)
        return claimed


def _autoclaim_parts(reply: Any) -> tuple[str, list[Entry], list[str]]:
    cursor = str(reply[0])
    # Redis 6.2 reports deleted entries with nil fields (claiming acknowledges them as spent);
    # 7.0 drops them from the pending list itself and lists their ids separately.
    claimed = [(str(entry_id), fields) for entry_id, fields in reply[1]]
    deleted = [str(i) for i in reply[2]] if len(reply) > 2 else []
    return cursor, claimed, deleted
