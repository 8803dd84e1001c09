"""The group-commit writer: many concurrent requests, one transaction, one broker pipeline.

Requests hand their events to ``submit`` and wait. A single flush loop gathers whatever arrived
within ``group_commit_ms`` (or up to ``group_commit_max`` events), inserts it in one transaction,
publishes the ready hints in one call, and only then wakes the requests: a 202 always means the
rows are committed.

Backpressure: once a commit or a publish fails, the dependency is marked down and new events get
503 at once (no request waits on a dead database or broker); the dependency monitor
(``dependency_monitor.py``) lifts the mark when it answers again, so service resumes by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter

from eventflow.broker.base import Broker
from eventflow.clock import now_ms
from eventflow.db.rows import NewEvent, Status, StoredEvent
from eventflow.errors import Overloaded, ServiceUnavailable
from eventflow.ids import new_id
from eventflow.ingest.dependency_monitor import DependencyMonitor, Probe
from eventflow.ingest.store import IngestStore
from eventflow.ingest.validation import ValidEvent
from eventflow.metrics import Metrics
from eventflow.metrics.catalog import INGEST_STAGES

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    events: list[NewEvent]
    submitted: float = field(default_factory=perf_counter)
    done: asyncio.Future[list[StoredEvent]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(frozen=True, slots=True)
class WriterLimits:
    group_commit_ms: float = 0.5
    group_commit_max: int = 2000
    #: Group commits in flight at once: the next group forms and is written while the previous
    #: one is still committing (the database picks the default).
    commits_in_flight: int = 3
    commit_timeout_ms: int = 1000
    max_queue_depth: int = 1_000_000
    max_waiting: int = 100_000
    publish_timeout_ms: int = 500
    probe_interval_ms: int = 250
    depth_interval_ms: int = 1000


class GroupCommitWriter:
    def __init__(
        self,
        repo: IngestStore,
        broker: Broker,
        limits: WriterLimits,
        database_probe: Probe | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._repo = repo
        metrics = metrics if metrics is not None else Metrics()
        # Lean recorders (metrics/lean.py): a group's observations cost a bisect each.
        self._stage = {
            name: metrics.observations([metrics.ingest_stage.labels(name)])
            for name in INGEST_STAGES
        }
        self._group_size = metrics.observations([metrics.group_size])
        self._accepted = metrics.tally(metrics.accepted)
        self._process_accepted = metrics.tally(metrics.process_accepted)
        self._deduplicated = metrics.tally(metrics.deduplicated)
        self._broker = broker
        self._limits = limits
        self._probe_database: Probe = database_probe or repo.queue_depth
        self.dependencies = DependencyMonitor(
            self._probe_database,
            broker,
            probe_interval_ms=limits.probe_interval_ms,
            depth_interval_ms=limits.depth_interval_ms,
            metrics=metrics,
        )
        self._pending: deque[_Pending] = deque()
        self._waiting_events = 0
        self._wakeup = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(limits.commits_in_flight)
        self._closing = False

    @property
    def queue_depth(self) -> int:
        """Event ids the broker holds undelivered, as last read by the dependency monitor."""
        return self.dependencies.queue_depth

    async def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_loop(), name="group-commit")
        await self.dependencies.start()

    async def close(self) -> None:
        """Stop taking events; everything already submitted is still written."""
        self._closing = True
        self._wakeup.set()
        await self.dependencies.close()
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await asyncio.gather(*self._writes, return_exceptions=True)

    async def submit(
        self, user_id: str, items: Sequence[ValidEvent], idempotency_key: str | None = None
    ) -> list[StoredEvent]:
        """Store ``items`` for ``user_id``; returns once committed, in the same order."""
        # A client that disconnects cancels only this future of its own; the write that the
        # group shares runs in the writer's task and skips futures that are already done.
        return await self.enqueue(user_id, items, idempotency_key)

    def enqueue(
        self, user_id: str, items: Sequence[ValidEvent], idempotency_key: str | None = None
    ) -> asyncio.Future[list[StoredEvent]]:
        """``submit`` without waiting: the future is done once the events are committed (or
        failed); a refusal (shutting down, a dependency down, overload) is raised at once."""
        if self._closing:
            raise ServiceUnavailable("EventFlow is shutting down; retry shortly", retry_after=2)
        refusal = self.dependencies.refusal()
        if refusal is not None:
            raise refusal
        if self.queue_depth > self._limits.max_queue_depth:
            raise Overloaded(
                f"The queue holds {self.queue_depth} events, above "
                f"EVENTFLOW_MAX_QUEUE_DEPTH={self._limits.max_queue_depth}; retry later",
                retry_after=5,
            )
        if self._waiting_events + len(items) > self._limits.max_waiting:
            raise Overloaded("Too many events waiting for the database", retry_after=1)
        pending = _Pending(_new_events(user_id, items, idempotency_key))
        self._pending.append(pending)
        self._waiting_events += len(items)
        self._wakeup.set()
        return pending.done

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
            # Requests that arrive while every slot is busy join the next group.
            await self._slots.acquire()
            task = asyncio.create_task(self._write_in_slot(self._take_batch(), perf_counter()))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _write_in_slot(self, batch: list[_Pending], taken: float) -> None:
        try:
            await self._write(batch, taken)
        finally:
            self._slots.release()

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

    async def _write(self, batch: list[_Pending], taken: float) -> None:
        rows = [e for p in batch for e in p.events]
        stage = self._stage
        stage["wait"].observe(taken - batch[0].submitted)
        if self.dependencies.database_down is not None:
            # Requests queued before the failure was seen must not each wait for a timeout.
            _fail(batch, self.dependencies.database_error())
            return
        started = perf_counter()
        written: list[float] = []
        try:
            async with asyncio.timeout(self._limits.commit_timeout_ms / 1000):
                stored = await self._repo.insert_many(rows, lambda: written.append(perf_counter()))
        except Exception as exc:  # any database failure becomes a 503 for every waiter
            log.warning("group commit of %d events failed: %r", len(rows), exc)
            self.dependencies.database_failed(exc)
            _fail(batch, self.dependencies.database_error())
            return
        committed = perf_counter()
        self._count(stored, started, written, committed)
        ready = [s.id for s in stored if s.status is Status.QUEUED and not s.duplicate]
        # With the broker known to be down, waiting for another failure would only delay the
        # 202s of rows that are already safe; the dispatcher publishes their hints later.
        if ready and self.dependencies.broker_down is None:
            await self.publish(ready)
            stage["publish"].observe(perf_counter() - committed)
        offset = 0
        for p in batch:
            part = stored[offset : offset + len(p.events)]
            offset += len(p.events)
            if not p.done.done():
                p.done.set_result(part)
        # The requests just woken run first, each sending its 202 in that step (writing to a
        # socket does not wait); a callback queued after them measures their answers.
        asyncio.get_running_loop().call_soon(self._answered, perf_counter())

    def _answered(self, woken: float) -> None:
        self._stage["answer"].observe(perf_counter() - woken)

    def _count(
        self, stored: list[StoredEvent], started: float, written: list[float], committed: float
    ) -> None:
        """A committed group's metrics: a few lean observations per group, none per event."""
        if written:
            self._stage["insert"].observe(written[0] - started)
            self._stage["commit"].observe(committed - written[0])
        else:
            # A statement that commits by itself (PostgreSQL's COPY): all of it is the insert.
            self._stage["insert"].observe(committed - started)
        duplicates = sum(1 for s in stored if s.duplicate)
        new = len(stored) - duplicates
        self._accepted.count += new
        self._process_accepted.count += new
        self._deduplicated.count += duplicates
        self._group_size.observe(len(stored))

    async def publish(self, ready: list[str]) -> None:
        """Hand hints for committed events to the broker; never raises (the rows are safe)."""
        if not ready:
            return
        # The rows are committed, so these events are safe whatever happens here: the
        # dispatcher re-publishes hints that never arrived. Answering 503 now would invite
        # duplicate sends, so the requests still get their 202; later ones get 503 until the
        # broker answers again. The timeout keeps a hung broker from holding the 202s.
        try:
            async with asyncio.timeout(self._limits.publish_timeout_ms / 1000):
                await self._broker.publish(ready)
        except Exception as exc:
            log.warning("publishing %d hints failed (dispatcher will retry): %r", len(ready), exc)
            self.dependencies.broker_failed(exc)
            try:
                await self._repo.forget_dispatch(ready)
            except Exception as forget_exc:
                # Then the hints are re-published after EVENTFLOW_REDISPATCH_AFTER_MS instead.
                log.debug("could not mark %d hints as lost: %r", len(ready), forget_exc)


def _fail(batch: list[_Pending], error: ServiceUnavailable) -> None:
    for p in batch:
        if not p.done.done():
            p.done.set_exception(error)


def _new_events(
    user_id: str, items: Sequence[ValidEvent], idempotency_key: str | None
) -> list[NewEvent]:
    now = now_ms()
    queued, scheduled = Status.QUEUED, Status.SCHEDULED
    # Positional arguments: this runs once per accepted event.
    return [
        NewEvent(
            new_id(),
            user_id,
            item.type,
            item.payload,
            scheduled if item.delay_ms > 0 else queued,
            now + item.delay_ms,
            now,
            item.idempotency_key if idempotency_key is None else idempotency_key,
            item.source,
        )
        for item in items
    ]
