"""Outcomes are guarded by the lease: a worker that lost its claim cannot overwrite newer state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from eventflow.clock import now_ms
from eventflow.db.engine import create_engine
from eventflow.db.migrate import migrate
from eventflow.db.rows import NewEvent, Outcome, Status, UserRow
from eventflow.db.stores import Stores, build_stores
from eventflow.ids import new_id
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"])


@pytest.fixture
async def stores(make_settings: SettingsFactory) -> AsyncIterator[Stores]:
    engine = create_engine(make_settings().effective_database_url)
    await migrate(engine)
    try:
        yield build_stores(engine)
    finally:
        await engine.dispose()


async def _event(stores: Stores) -> tuple[str, str]:
    user = UserRow(new_id(), f"{new_id()}@example.com", "x", now_ms())
    await stores.users.create(user)
    now = now_ms()
    event = NewEvent(new_id(), user.id, "A", "{}", Status.QUEUED, now, now)
    await stores.ingest.insert_many([event])
    return user.id, event.id


def _done(event_id: str, attempt: int) -> Outcome:
    now = now_ms()
    return Outcome(event_id, attempt, Status.COMPLETED, now, now, '{"by": "late"}')


async def test_a_reclaimed_workers_outcome_is_ignored(stores: Stores) -> None:
    queue, outcomes, reading = stores.queue, stores.outcomes, stores.reading
    user_id, event_id = await _event(stores)
    (first,) = await queue.claim_ids([event_id], "w1", lease_ms=50)
    await asyncio.sleep(0.1)
    assert await stores.upkeep.reclaim_expired(max_attempts=5) == 1
    (second,) = await queue.claim_ids([event_id], "w2", lease_ms=30_000)

    await outcomes.record_outcomes("w1", [_done(event_id, first.attempt)])  # too late

    row = await reading.get(user_id, event_id)
    assert row is not None
    assert (row.status, row.attempts, row.result) == (Status.PROCESSING, 2, None)
    await outcomes.record_outcomes("w2", [_done(event_id, second.attempt)])
    row = await reading.get(user_id, event_id)
    assert row is not None and row.status is Status.COMPLETED


async def test_a_released_event_takes_no_outcome(stores: Stores) -> None:
    user_id, event_id = await _event(stores)
    (claimed,) = await stores.queue.claim_ids([event_id], "w1", lease_ms=30_000)
    assert await stores.queue.release("w1") == 1

    await stores.outcomes.record_outcomes("w1", [_done(event_id, claimed.attempt)])

    row = await stores.reading.get(user_id, event_id)
    assert row is not None and row.status is Status.QUEUED
