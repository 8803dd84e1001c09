"""Retention: the dispatcher deletes finished events past their days, a small batch at a time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from eventflow.clock import now_ms
from eventflow.db.rows import PurgedBatch, Status

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


class PurgeStore(Protocol):
    async def purge_finished(
        self, status: Status, finished_before: int, limit: int, finished_from: int = ...
    ) -> PurgedBatch: ...


@dataclass(frozen=True, slots=True)
class RetentionOptions:
    """Days to keep ``completed`` and ``failed`` events after they finished (0: forever)."""

    completed_days: int = 0
    failed_days: int = 0
    batch: int = 1000
    pause_ms: int = 100
    interval_ms: int = 60_000

    @property
    def enabled(self) -> bool:
        return self.completed_days > 0 or self.failed_days > 0

    def cutoffs(self, now: int) -> list[tuple[Status, int]]:
        """Each purged status with the finish time before which its events go."""
        kept = ((Status.COMPLETED, self.completed_days), (Status.FAILED, self.failed_days))
        return [(status, now - days * DAY_MS) for status, days in kept if days > 0]


@dataclass(slots=True)
class Purged:
    """What one round deleted, and in how many transactions."""

    deleted: dict[Status, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


class Retention:
    """Rounds of deletion every ``interval_ms``; each round goes until nothing old is left.

    A round's cutoffs are fixed when it starts, so it ends however fast events finish. Between
    two batches it pauses ``pause_ms``: on SQLite that hands the single write lock back to the
    group commits, and on PostgreSQL it spreads the deletion's I/O. Any number of dispatchers
    may run rounds at once: the store's batches never overlap.
    """

    def __init__(
        self,
        store: PurgeStore,
        options: RetentionOptions,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._options = options
        self._clock = clock

    async def purge(self) -> Purged:
        """One round: batch after batch for each status, until a batch comes back short."""
        opts = self._options
        purged = Purged()
        started = time.monotonic()
        for status, before in opts.cutoffs(self._clock()):
            # Each batch starts where the last one ended, not at the oldest row again: what a
            # concurrent purge skipped past stays for its next round.
            start = 0
            while True:
                if purged.batches:
                    await asyncio.sleep(opts.pause_ms / 1000)
                batch = await self._store.purge_finished(status, before, opts.batch, start)
                purged.batches += 1
                purged.deleted[status] = purged.deleted.get(status, 0) + batch.deleted
                if batch.deleted < opts.batch or batch.last_finished is None:
                    break
                start = batch.last_finished
        purged.seconds = time.monotonic() - started
        return purged

    async def run(self) -> None:
        """Rounds until cancelled; a failed round is retried at the next interval."""
        failing = False
        while True:
            try:
                purged = await self.purge()
                if purged.total:
                    log.info(
                        "retention: deleted %d completed and %d failed events with their "
                        "attempts in %d batches, %.1f s (%.0f events/s)",
                        purged.deleted.get(Status.COMPLETED, 0),
                        purged.deleted.get(Status.FAILED, 0),
                        purged.batches,
                        purged.seconds,
                        purged.total / max(purged.seconds, 1e-3),
                    )
                failing = False
            except Exception as exc:
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "retention round failed, retrying in %d ms: %r",
                    self._options.interval_ms,
                    exc,
                )
                failing = True
            await asyncio.sleep(self._options.interval_ms / 1000)
