"""Retention's rounds on the in-memory store: what goes, what stays, and in how many batches."""

from __future__ import annotations

import asyncio

import pytest

from eventflow.broker.memory import MemoryBroker
from eventflow.clock import now_ms
from eventflow.db.memory import MemoryEvents
from eventflow.db.rows import NewEvent, Outcome, PurgedBatch, Status
from eventflow.ids import new_id
from eventflow.worker.dispatcher import Dispatcher, DispatchOptions
from eventflow.worker.retention import DAY_MS, Retention, RetentionOptions

NOW = now_ms()


async def _finished(store: MemoryEvents, status: Status, days_ago: float) -> str:
    """An event that ``status`` (completed or failed) ended ``days_ago`` days before NOW."""
    event = NewEvent(new_id(), "u", "A", "{}", Status.QUEUED, NOW, NOW - 40 * DAY_MS)
    await store.insert_many([event])
    (claimed,) = await store.claim_ids([event.id], "w", 30_000)
    finished = NOW - int(days_ago * DAY_MS)
    outcome = Outcome(event.id, claimed.attempt, status, finished, finished, error="x")
    await store.record_outcomes("w", [outcome])
    return event.id


async def _kept(store: MemoryEvents, ids: list[str]) -> list[str]:
    return [i for i in ids if await store.get("u", i) is not None]


class CountingStore:
    """The in-memory store, counting the purge's transactions."""

    def __init__(self, store: MemoryEvents) -> None:
        self.store = store
        self.calls: list[tuple[Status, int, int]] = []

    async def purge_finished(
        self, status: Status, finished_before: int, limit: int, finished_from: int = 0
    ) -> PurgedBatch:
        batch = await self.store.purge_finished(status, finished_before, limit, finished_from)
        self.calls.append((status, finished_from, batch.deleted))
        return batch


async def test_old_events_go_in_batches_with_their_attempts() -> None:
    store = MemoryEvents(clock=lambda: NOW)
    old = [await _finished(store, Status.COMPLETED, 8 + n / 1000) for n in range(35)]
    recent = [await _finished(store, Status.COMPLETED, 6) for _ in range(3)]
    counting = CountingStore(store)
    options = RetentionOptions(completed_days=7, batch=10, pause_ms=0)

    purged = await Retention(counting, options, clock=lambda: NOW).purge()

    assert purged.deleted == {Status.COMPLETED: 35}
    # Each batch starts at the last one's newest finish time, never at the oldest row again.
    starts = [0, *(NOW - int((8 + n / 1000) * DAY_MS) for n in (25, 15, 5))]
    assert counting.calls == [
        (Status.COMPLETED, start, n) for start, n in zip(starts, (10, 10, 10, 5), strict=True)
    ]
    assert purged.batches == 4
    assert await _kept(store, old + recent) == recent
    assert await store.attempts(old[0]) == []
    assert len(await store.attempts(recent[0])) == 1


async def test_failed_events_keep_their_own_days() -> None:
    store = MemoryEvents(clock=lambda: NOW)
    done = await _finished(store, Status.COMPLETED, 8)
    failed_old = await _finished(store, Status.FAILED, 31)
    failed_kept = await _finished(store, Status.FAILED, 8)
    options = RetentionOptions(completed_days=7, failed_days=30, pause_ms=0)

    purged = await Retention(store, options, clock=lambda: NOW).purge()

    assert purged.deleted == {Status.COMPLETED: 1, Status.FAILED: 1}
    assert await _kept(store, [done, failed_old, failed_kept]) == [failed_kept]


async def test_events_still_on_their_way_stay_however_old() -> None:
    store = MemoryEvents(clock=lambda: NOW)
    long_ago = NOW - 100 * DAY_MS
    waiting = [
        NewEvent(new_id(), "u", "A", "{}", status, long_ago, long_ago)
        for status in (Status.QUEUED, Status.SCHEDULED, Status.QUEUED)
    ]
    await store.insert_many(waiting)
    await store.claim_ids([waiting[2].id], "w", 30_000)
    options = RetentionOptions(completed_days=1, failed_days=1, pause_ms=0)

    purged = await Retention(store, options, clock=lambda: NOW).purge()

    assert purged.total == 0
    assert len(await _kept(store, [e.id for e in waiting])) == 3


async def test_only_finished_statuses_can_be_purged() -> None:
    with pytest.raises(ValueError, match="queued"):
        await MemoryEvents().purge_finished(Status.QUEUED, NOW, 10)


def test_zero_days_keeps_a_status_forever() -> None:
    assert not RetentionOptions().enabled
    assert RetentionOptions().cutoffs(NOW) == []
    only_failed = RetentionOptions(completed_days=0, failed_days=3)
    assert only_failed.enabled
    assert only_failed.cutoffs(NOW) == [(Status.FAILED, NOW - 3 * DAY_MS)]


async def test_the_dispatcher_runs_rounds_only_when_retention_is_on() -> None:
    for days, kept in ((0, True), (7, False)):
        store = MemoryEvents()
        event_id = await _finished(store, Status.COMPLETED, 8)
        retention = RetentionOptions(completed_days=days, interval_ms=10, pause_ms=0)
        dispatcher = Dispatcher(
            store, MemoryBroker(), DispatchOptions(interval_ms=10, retention=retention)
        )
        await dispatcher.start()
        # Off, nothing may go however long it runs; on, the first round deletes it.
        async with asyncio.timeout(5):
            while days and await _kept(store, [event_id]):  # noqa: ASYNC110 (polling a fake)
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        await dispatcher.stop()
        assert bool(await _kept(store, [event_id])) is kept
