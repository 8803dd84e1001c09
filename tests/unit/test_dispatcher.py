"""The dispatcher's passes: what has no hint is published on every pass, lost hints are looked
for a tenth of a redispatch window at a time."""

from __future__ import annotations

import asyncio

from eventflow.broker.memory import MemoryBroker
from eventflow.clock import now_ms
from eventflow.db.memory import MemoryEvents
from eventflow.db.rows import NewEvent, Status
from eventflow.ids import new_id
from eventflow.worker.dispatcher import Dispatcher, DispatchOptions


class CountingEvents(MemoryEvents):
    """The in-memory store, counting the dispatcher's two kinds of hint scans."""

    def __init__(self) -> None:
        super().__init__()
        self.unhinted_scans = 0
        self.overdue_scans = 0

    async def take_unhinted(self, limit: int = 5000) -> list[str]:
        self.unhinted_scans += 1
        return await super().take_unhinted(limit)

    async def take_overdue(self, redispatch_after_ms: int, limit: int = 5000) -> list[str]:
        self.overdue_scans += 1
        return await super().take_overdue(redispatch_after_ms, limit)


async def _add(store: MemoryEvents, ago_ms: int = 0) -> str:
    at = now_ms() - ago_ms
    event = NewEvent(new_id(), "u", "A", "{}", Status.QUEUED, at, at)
    await store.insert_many([event])
    return event.id


async def test_lost_hints_are_looked_for_once_per_tenth_of_a_window() -> None:
    store = CountingEvents()
    dispatcher = Dispatcher(store, MemoryBroker(), DispatchOptions(redispatch_after_ms=60_000))
    for _ in range(5):
        await dispatcher.tick()
    assert (store.unhinted_scans, store.overdue_scans) == (5, 1)


async def test_a_short_window_is_swept_on_every_pass_that_reaches_its_tenth() -> None:
    store = CountingEvents()
    dispatcher = Dispatcher(store, MemoryBroker(), DispatchOptions(redispatch_after_ms=100))
    for _ in range(3):
        await dispatcher.tick()
        await asyncio.sleep(0.02)
    assert (store.unhinted_scans, store.overdue_scans) == (3, 3)


async def test_events_without_a_hint_and_lost_hints_are_published() -> None:
    store, broker = MemoryEvents(), MemoryBroker()
    dispatcher = Dispatcher(store, broker, DispatchOptions(redispatch_after_ms=60_000))
    fresh, lost = await _add(store), await _add(store, ago_ms=120_000)
    unhinted = await _add(store)
    await store.forget_dispatch([unhinted])

    assert await dispatcher.tick() == 2
    assert sorted(broker.published) == sorted([lost, unhinted])
    assert fresh not in broker.published

    await store.forget_dispatch([fresh])
    assert await dispatcher.tick() == 1, "the next pass publishes what lost its hint since"
    assert broker.published[-1] == fresh
