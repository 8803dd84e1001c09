"""An in-memory broker for unit tests: holds claimed events handed to it with ``put``."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from eventflow.db.rows import ClaimedEvent


class MemoryBroker:
    name = "memory"
    carries_hints = True

    def __init__(self) -> None:
        self.published: list[str] = []
        self.settled: list[str] = []
        self._ready: deque[ClaimedEvent] = deque()
        self._wakeup = asyncio.Event()

    def put(self, *events: ClaimedEvent) -> None:
        self._ready.extend(events)
        self._wakeup.set()

    async def start(self) -> None:
        return None

    async def publish(self, event_ids: Sequence[str]) -> None:
        self.published.extend(event_ids)

    async def claim(
        self, limit: int, owner: str, lease_ms: int, wait_s: float
    ) -> list[ClaimedEvent]:
        if not self._ready:
            self._wakeup.clear()
            try:
                async with asyncio.timeout(wait_s):
                    await self._wakeup.wait()
            except TimeoutError:
                return []
        taken: list[ClaimedEvent] = []
        while self._ready and len(taken) < limit:
            taken.append(self._ready.popleft())
        return taken

    async def settle(self, events: Sequence[ClaimedEvent]) -> None:
        self.settled.extend(e.id for e in events)

    async def depth(self) -> int:
        return len(self._ready)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._wakeup.set()
