"""Retrying all of a user's failed events, a batch at a time, on the in-memory store."""

from __future__ import annotations

from eventflow.api.routes.events import replay_all_failed
from eventflow.clock import now_ms
from eventflow.db.memory import MemoryEvents
from eventflow.db.rows import NewEvent, Outcome, Status
from eventflow.ids import new_id

USER = "u"


async def _stored(store: MemoryEvents, status: Status, count: int, user: str = USER) -> list[str]:
    now = now_ms()
    events = [NewEvent(new_id(), user, "A", "{}", status, now, now) for _ in range(count)]
    await store.insert_many(events)
    return sorted((e.id for e in events), reverse=True)


async def _statuses(store: MemoryEvents, user: str, ids: list[str]) -> set[Status | None]:
    """The statuses of ``user``'s events ``ids`` (None: one is not that user's)."""
    rows = [await store.get(user, i) for i in ids]
    return {r.status if r is not None else None for r in rows}


class Published:
    """The hints each batch published, in order."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def __call__(self, ids: list[str]) -> None:
        self.batches.append(ids)


async def test_every_failed_event_is_replayed_once_in_batches_newest_first() -> None:
    store, published = MemoryEvents(), Published()
    failed = await _stored(store, Status.FAILED, 25)
    completed = await _stored(store, Status.COMPLETED, 3)
    elsewhere = await _stored(store, Status.FAILED, 4, user="someone else")

    replayed, ids = await replay_all_failed(store, published, USER, batch=10, listed=12)

    assert (replayed, ids) == (25, failed[:12])
    assert published.batches == [failed[:10], failed[10:20], failed[20:]]
    assert await _statuses(store, USER, failed) == {Status.QUEUED}
    assert await _statuses(store, USER, completed) == {Status.COMPLETED}
    assert await _statuses(store, "someone else", elsewhere) == {Status.FAILED}


async def test_a_last_full_batch_ends_with_an_empty_one() -> None:
    store, published = MemoryEvents(), Published()
    failed = await _stored(store, Status.FAILED, 20)

    assert await replay_all_failed(store, published, USER, batch=10) == (20, failed)
    assert [len(b) for b in published.batches] == [10, 10, 0]


async def test_events_failing_again_meanwhile_are_not_replayed_twice() -> None:
    store = MemoryEvents()
    failed = await _stored(store, Status.FAILED, 6)
    batches: list[list[str]] = []

    async def publish_and_fail_again(ids: list[str]) -> None:
        # A worker takes each batch at once and it fails again before the next batch is read.
        batches.append(ids)
        now = now_ms()
        for claimed in await store.claim_ids(ids, "w", 30_000):
            outcome = Outcome(claimed.id, claimed.attempt, Status.FAILED, now, now, None, "x")
            await store.record_outcomes("w", [outcome])

    assert await replay_all_failed(store, publish_and_fail_again, USER, batch=4) == (6, failed)
    assert batches == [failed[:4], failed[4:]]
