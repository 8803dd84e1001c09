"""The group-commit writer: many concurrent requests, one transaction, one broker pipeline.

Requests hand their events to ``submit`` and wait. A single flush loop gathers whatever arrived
within ``group_commit_ms`` (or up to ``group_commit_max`` events), inserts it in one transaction,
publishes the ready hints in one call, and only then wakes the requests: a 202 always means the
rows are committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from eventflow.broker.base import Broker
from eventflow.clock import now_ms
from eventflow.db.events import EventRepository
from eventflow.db.rows import NewEvent, Status, StoredEvent
from eventflow.errors import ServiceUnavailable
from eventflow.ids import new_id
from eventflow.ingest.validation import ValidEvent

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    events: list[NewEvent]
    done: asyncio.Future[list[StoredEvent]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(frozen=True, slots=True)
class WriterLimits:
    group_commit_ms: float = 2.0
    group_commit_max: int = 2000
    commit_timeout_ms: int = 5000
    max_queue_depth: int = 1_000_000
    max_waiting: int = 100_000


class GroupCommitWriter:
    def __init__(self, repo: EventRepository, broker: Broker, limits: WriterLimits) -> None:
        self._repo = repo
        self._broker = broker
        self._limits = limits
        self._pending: deque[_Pending] = deque()
        self._waiting_events = 0
        self._wakeup = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._closing = False
        self.queue_depth = 0
        self.committed_events = 0

    async def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_loop(), name="group-commit")
        self._monitor = asyncio.create_task(self._depth_loop(), name="queue-depth")

    async def close(self) -> None:
        """Stop taking events; everything already submitted is still written."""
        self._closing = True
        self._wakeup.set()
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def submit(
        self, user_id: str, items: Sequence[ValidEvent], idempotency_key: str | None = None
    ) -> list[StoredEvent]:
        """Store ``items`` for ``user_id``; returns once committed, in the same order."""
        if self._closing:
            raise ServiceUnavailable("EventFlow is shutting down; retry shortly", retry_after=2)
        if self.queue_depth > self._limits.max_queue_depth:
            raise ServiceUnavailable(
                f"The queue holds {self.queue_depth} events, above "
                f"EVENTFLOW_MAX_QUEUE_DEPTH={self._limits.max_queue_depth}; retry later",
                retry_after=5,
            )
        if self._waiting_events + len(items) > self._limits.max_waiting:
            raise ServiceUnavailable("Too many events waiting for the database", retry_after=1)
        pending = _Pending(_new_events(user_id, items, idempotency_key))
        self._pending.append(pending)
        self._waiting_events += len(items)
        self._wakeup.set()
        # shield: a client that disconnects must not cancel a write other requests share.
        return await asyncio.shield(pending.done)

    async def _flush_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._pending:
                self._wakeup.clear()
                if self._closing:
                    return
                continue
            if self._waiting_events < self._limits.group_commit_max and not self._closing:
                # Let concurrent requests join this transaction; a few ms buys ~2x throughput.
                await asyncio.sleep(self._limits.group_commit_ms / 1000)
            batch = self._take_batch()
            await self._write(batch)

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        count = 0
        while self._pending and (
            not batch or count + len(self._pending[0].events) <= self._limits.group_commit_max
        ):
            item = self._pending.popleft()
            batch.append(item)
            count += len(item.events)
        self._waiting_events -= count
        if not self._pending:
            self._wakeup.clear()
        return batch

    async def _write(self, batch: list[_Pending]) -> None:
        rows = [e for p in batch for e in p.events]
        try:
            async with asyncio.timeout(self._limits.commit_timeout_ms / 1000):
                stored = await self._repo.insert_many(rows)
        except Exception as exc:  # any database failure becomes a 503 for every waiter
            log.warning("group commit of %d events failed: %r", len(rows), exc)
            error = ServiceUnavailable(
                "The database could not store the events in time; nothing was stored, retry"
            )
            for p in batch:
                if not p.done.done():
                    p.done.set_exception(error)
            return
        self.committed_events += sum(1 for s in stored if not s.duplicate)
        ready = [s.id for s in stored if s.status is Status.QUEUED and not s.duplicate]
        if ready:
            try:
                await self._broker.publish(ready)
            except Exception as exc:
                # The rows are committed, so the events are safe: the dispatcher re-publishes
                # hints that never arrived. Answering 503 here would invite duplicate sends.
                log.warning(
                    "publishing %d hints failed (dispatcher will retry): %r", len(ready), exc
                )
        offset = 0
        for p in batch:
            part = stored[offset : offset + len(p.events)]
            offset += len(p.events)
            if not p.done.done():
                p.done.set_result(part)

    async def _depth_loop(self) -> None:
        while True:
            try:
                self.queue_depth = await self._broker.depth()
            except Exception as exc:
                log.debug("queue depth unavailable: %r", exc)
            await asyncio.sleep(1.0)


def _new_events(
    user_id: str, items: Sequence[ValidEvent], idempotency_key: str | None
) -> list[NewEvent]:
    now = now_ms()
    return [
        NewEvent(
            id=new_id(),
            user_id=user_id,
            type=item.type,
            payload=item.payload,
            status=Status.SCHEDULED if item.delay_ms > 0 else Status.QUEUED,
            available_at=now + item.delay_ms,
            created_at=now,
            idempotency_key=idempotency_key,
        )
        for item in items
    ]
