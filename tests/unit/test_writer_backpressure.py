"""The writer's backpressure: a dead database or broker means an immediate 503, and service
resumes by itself once the dependency answers again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import pytest

from eventflow.broker.memory import MemoryBroker
from eventflow.db.memory import MemoryEvents
from eventflow.db.rows import NewEvent, StoredEvent
from eventflow.errors import ServiceUnavailable
from eventflow.ingest.validation import ValidEvent
from eventflow.ingest.writer import GroupCommitWriter, WriterLimits

LIMITS = WriterLimits(group_commit_ms=0, probe_interval_ms=10, depth_interval_ms=10)
EVENT = ValidEvent("A", "{}", 0)


class FlakyStore(MemoryEvents):
    """The in-memory store, with a database that can go away."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.inserts = 0

    async def insert_many(
        self, new: Sequence[NewEvent], written: Callable[[], None] | None = None
    ) -> list[StoredEvent]:
        self.inserts += 1
        if self.down:
            raise ConnectionRefusedError("database down")
        return await super().insert_many(new, written)

    async def queue_depth(self) -> int:
        if self.down:
            raise ConnectionRefusedError("database down")
        return await super().queue_depth()


class FlakyBroker(MemoryBroker):
    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.depth_value = 0

    async def publish(self, event_ids: Sequence[str]) -> None:
        if self.down:
            raise ConnectionError("broker down")
        await super().publish(event_ids)

    async def depth(self) -> int:
        await self.ping()
        return self.depth_value

    async def ping(self) -> None:
        if self.down:
            raise ConnectionError("broker down")


@asynccontextmanager
async def _writer(
    repo: FlakyStore, broker: FlakyBroker, limits: WriterLimits = LIMITS
) -> AsyncIterator[GroupCommitWriter]:
    writer = GroupCommitWriter(repo, broker, limits)
    await writer.start()
    try:
        yield writer
    finally:
        await writer.close()


async def _until_accepted(writer: GroupCommitWriter) -> None:
    async with asyncio.timeout(2):
        while True:
            try:
                await writer.submit("u", [EVENT])
                return
            except ServiceUnavailable:
                await asyncio.sleep(0.01)


async def test_broker_down_refuses_new_events_but_keeps_committed_ones() -> None:
    repo, broker = FlakyStore(), FlakyBroker()
    async with _writer(repo, broker) as writer:
        broker.down = True
        # Committed before the failure was known: an honest 202, the dispatcher re-publishes.
        (stored,) = await writer.submit("u", [EVENT])
        assert stored.id not in broker.published

        with pytest.raises(ServiceUnavailable, match="broker is unreachable") as refused:
            await writer.submit("u", [EVENT])
        assert refused.value.headers == {"Retry-After": "1"}
        assert repo.inserts == 1, "a refused event must not be stored"

        broker.down = False
        await _until_accepted(writer)
        assert len(broker.published) == 1


async def test_database_down_fails_fast_until_it_answers_again() -> None:
    repo, broker = FlakyStore(), FlakyBroker()
    async with _writer(repo, broker) as writer:
        repo.down = True
        with pytest.raises(ServiceUnavailable, match="ConnectionRefusedError"):
            await writer.submit("u", [EVENT])
        for _ in range(20):
            with pytest.raises(ServiceUnavailable):
                await writer.submit("u", [EVENT])
        assert repo.inserts == 1, "later requests must not wait on a dead database"

        repo.down = False
        await _until_accepted(writer)


async def test_a_queue_deeper_than_the_limit_is_refused() -> None:
    repo, broker = FlakyStore(), FlakyBroker()
    limits = WriterLimits(group_commit_ms=0, max_queue_depth=5, depth_interval_ms=10)
    async with _writer(repo, broker, limits) as writer:
        broker.depth_value = 6
        async with asyncio.timeout(2):
            while writer.queue_depth != 6:  # noqa: ASYNC110 (the monitor has no event to await)
                await asyncio.sleep(0.01)
        with pytest.raises(ServiceUnavailable, match="EVENTFLOW_MAX_QUEUE_DEPTH"):
            await writer.submit("u", [EVENT])
        broker.depth_value = 0
        await _until_accepted(writer)
