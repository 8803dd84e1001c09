"""The dispatcher: promotes due delayed events, reclaims dead workers' leases, folds the tallies'
changes, re-publishes hints, and, with retention on, deletes finished events past their days
(worker/retention.py).

Every step is one conditional statement, so any number of dispatchers may run at once. With a
broker that carries hints (Redis) it publishes what has no hint yet (retries, promoted and
released events, a publish that failed after the commit) on every pass, and heals lost hints a
tenth of a window at a time: a ready row whose hint is older than ``redispatch_after_ms``
(Redis flushed, or restarted without persistence) is published again. A hint may thus exist
twice; the claim in the database makes the copy harmless. Each step reads only the rows it
acts on, however long the queue (migration 0010).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from eventflow.broker.base import Broker
from eventflow.clock import now_ms
from eventflow.db.tallies import KEEP_S
from eventflow.worker.retention import PurgeStore, Retention, RetentionOptions

log = logging.getLogger(__name__)

_PRUNE_EVERY_MS = 60_000
# Lost hints are looked for this many times per redispatch window, not on every pass: a hint
# lost at any moment is re-published between one window and 1.1 windows after it was sent.
_SWEEPS_PER_WINDOW = 10


class DispatchStore(PurgeStore, Protocol):
    async def promote_scheduled(self, limit: int = ...) -> int: ...

    async def reclaim_expired(
        self,
        max_attempts: int,
        limit: int = ...,
        max_attempts_by_type: Mapping[str, int] | None = ...,
    ) -> int: ...

    async def take_unhinted(self, limit: int = ...) -> list[str]: ...

    async def take_overdue(self, redispatch_after_ms: int, limit: int = ...) -> list[str]: ...

    async def fold_tallies(self, limit: int = ...) -> int: ...

    async def prune_tallies(self, before_s: int) -> int: ...


@dataclass(frozen=True, slots=True)
class DispatchOptions:
    interval_ms: int = 250
    redispatch_after_ms: int = 30_000
    max_attempts: int = 5
    retention: RetentionOptions = field(default_factory=RetentionOptions)
    # Event types whose handler set its own budget.
    max_attempts_by_type: Mapping[str, int] = field(default_factory=dict)


class Dispatcher:
    def __init__(self, store: DispatchStore, broker: Broker, options: DispatchOptions) -> None:
        self._store = store
        self._broker = broker
        self._options = options
        self._tasks: list[asyncio.Task[None]] = []
        self._pruned_at_ms = 0
        self._swept_at_ms = 0

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._loop(), name="dispatcher"))
        if self._options.retention.enabled:
            # A task of its own: a long purge never delays promotions and reclaims.
            retention = Retention(self._store, self._options.retention)
            self._tasks.append(asyncio.create_task(retention.run(), name="retention"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def tick(self) -> int:
        """One pass; answers how many events it moved or re-published."""
        promoted = await self._store.promote_scheduled()
        reclaimed = await self._store.reclaim_expired(
            self._options.max_attempts, max_attempts_by_type=self._options.max_attempts_by_type
        )
        if reclaimed:
            log.warning("reclaimed %d events from workers whose lease expired", reclaimed)
        await self._keep_tallies()
        published = 0
        if self._broker.carries_hints:
            # Taking rows stamps them as dispatched: with the broker down that would only push
            # their next chance back by a whole redispatch window.
            await self._broker.ping()
            published = await self._publish(self._store.take_unhinted)
            now = now_ms()
            if now - self._swept_at_ms >= self._options.redispatch_after_ms // _SWEEPS_PER_WINDOW:
                window = self._options.redispatch_after_ms
                published += await self._publish(lambda: self._store.take_overdue(window))
                self._swept_at_ms = now
        elif promoted or reclaimed:
            await self._broker.publish([])
        return promoted + reclaimed + published

    async def _publish(self, take: Callable[[], Awaitable[list[str]]]) -> int:
        published = 0
        while ids := await take():
            await self._broker.publish(ids)
            published += len(ids)
        return published

    async def _keep_tallies(self) -> None:
        """Fold the tally changes of the last pass; once a minute, drop tallies past keeping."""
        await self._store.fold_tallies()
        now = now_ms()
        if now - self._pruned_at_ms >= _PRUNE_EVERY_MS:
            await self._store.prune_tallies(now // 1000 - KEEP_S)
            self._pruned_at_ms = now

    async def _loop(self) -> None:
        failing = False
        while True:
            try:
                await self.tick()
                if failing:
                    log.info("dispatcher passes succeed again")
                failing = False
            except Exception as exc:
                # Once per outage at warning level: a pass runs several times a second.
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "dispatcher pass failed, retrying: %r",
                    exc,
                )
                failing = True
            await asyncio.sleep(self._options.interval_ms / 1000)
