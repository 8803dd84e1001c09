"""The ``sql`` broker: the events table itself is the queue (embedded mode, PostgreSQL alone)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from eventflow.db.rows import ClaimedEvent

_POLL_S = 0.2


class DueClaimStore(Protocol):
    """What the ``sql`` broker asks of the database: claims of due rows, and their count."""

    async def claim_due(self, limit: int, owner: str, lease_ms: int) -> list[ClaimedEvent]: ...

    async def queue_depth(self) -> int: ...


class SqlBroker:
    """Workers claim due rows directly (``FOR UPDATE SKIP LOCKED`` on PostgreSQL).

    A publish in this process wakes this process's workers at once; workers in other processes
    find new rows by polling every 200 ms.
    """

    name = "sql"
    carries_hints = False

    def __init__(self, store: DueClaimStore) -> None:
        self._store = store
        self._ready = asyncio.Event()

    async def start(self) -> None:
        return None

    async def publish(self, event_ids: Sequence[str]) -> None:
        self._ready.set()

    async def claim(
        self, limit: int, owner: str, lease_ms: int, wait_s: float
    ) -> list[ClaimedEvent]:
        # Clear before querying: a publish that lands during the query must wake the next wait.
        self._ready.clear()
        claimed = await self._store.claim_due(limit, owner, lease_ms)
        if claimed or wait_s <= 0:
            return claimed
        try:
            async with asyncio.timeout(min(wait_s, _POLL_S)):
                await self._ready.wait()
        except TimeoutError:
            pass
        return await self._store.claim_due(limit, owner, lease_ms)

    async def settle(self, events: Sequence[ClaimedEvent]) -> None:
        return None

    async def depth(self) -> int:
        return await self._store.queue_depth()

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._ready.set()
