"""The Redis Streams broker against a real Redis and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from eventflow.broker.keys import GROUP, IDS_FIELD, IDS_PER_ENTRY
from eventflow.broker.redis_streams import RedisBroker
from eventflow.clock import now_ms
from eventflow.config import Settings
from eventflow.db.engine import create_engine
from eventflow.db.migrate import migrate
from eventflow.db.rows import ClaimedEvent, NewEvent, Outcome, Status, UserRow
from eventflow.db.stores import Stores, build_stores
from eventflow.ids import new_id
from eventflow.runtime import open_worker_runtime
from tests.apiclient import running_app, signup, wait_for
from tests.conftest import TEST_SECRET

LEASE_MS = 30_000


@dataclass
class Store:
    stores: Stores
    user_id: str

    async def add(self, count: int) -> list[str]:
        now = now_ms()
        rows = [
            NewEvent(new_id(), self.user_id, "ORDER_CREATED", "{}", Status.QUEUED, now, now)
            for _ in range(count)
        ]
        await self.stores.ingest.insert_many(rows)
        return [r.id for r in rows]


@pytest.fixture
async def store(fresh_postgres: str) -> AsyncIterator[Store]:
    settings = Settings(database_url=fresh_postgres, jwt_secret=TEST_SECRET)
    engine = create_engine(settings.effective_database_url)
    await migrate(engine)
    user = UserRow(new_id(), f"{new_id()}@example.com", "x", now_ms())
    stores = build_stores(engine)
    await stores.users.create(user)
    try:
        yield Store(stores, user.id)
    finally:
        await engine.dispose()


BrokerFactory = Callable[..., Awaitable[RedisBroker]]


@pytest.fixture
async def make_broker(redis_url: str, store: Store) -> AsyncIterator[BrokerFactory]:
    """Brokers on a key prefix of their own (one per test unless given), as separate processes
    would have them; their keys are deleted afterwards."""
    default_prefix = "t" + os.urandom(5).hex()
    made: list[RedisBroker] = []

    async def build(prefix: str = default_prefix) -> RedisBroker:
        broker = RedisBroker(redis_url, prefix, store.stores.queue)
        await broker.start()
        made.append(broker)
        return broker

    yield build
    for broker in made:
        await broker.close()
    cleanup = Redis.from_url(redis_url)
    try:
        for broker in made:
            await cleanup.delete(broker.keys.stream, broker.keys.hinted)
    finally:
        await cleanup.aclose()


async def _pending(broker: RedisBroker) -> dict[str, int]:
    summary = await broker.client.xpending(broker.keys.stream, GROUP)
    return {c["name"]: int(c["pending"]) for c in summary["consumers"]}


async def _claim_all(broker: RedisBroker, owner: str, limit: int = 500) -> list[ClaimedEvent]:
    """Claim until neither the stream nor the broker's buffer holds a hint."""
    claimed: list[ClaimedEvent] = []
    while True:
        batch = await broker.claim(limit, owner, LEASE_MS, 0.05)
        claimed.extend(batch)
        if not batch and await broker.depth() == 0 and broker.buffered == 0:
            return claimed


async def test_publish_claim_settle_round_trip(store: Store, make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    ids = await store.add(10)
    await broker.publish(ids)
    assert await broker.depth() == 10

    claimed = await broker.claim(100, "w1", LEASE_MS, 1.0)

    assert sorted(e.id for e in claimed) == sorted(ids)
    assert all(e.attempt == 1 for e in claimed)
    assert await broker.depth() == 0
    # One entry carries the whole publish: one XADD, one pending entry.
    assert await _pending(broker) == {"w1": 1}
    await broker.settle(claimed[:9])
    assert await _pending(broker) == {"w1": 1}, "an entry stays until all its events settle"
    await broker.settle(claimed[9:])
    assert await _pending(broker) == {}
    # Settled hints are deleted, not only acknowledged: the stream holds no history.
    assert await broker.client.xlen(broker.keys.stream) == 0


async def test_duplicate_and_malformed_hints_are_spent_at_once(
    store: Store, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    (event_id,) = await store.add(1)
    await broker.publish([event_id, event_id])
    await broker.client.xadd(broker.keys.stream, {IDS_FIELD: "not-an-id"})
    await broker.client.xadd(broker.keys.stream, {"other": "field"})
    await broker.publish([new_id()])  # an event that does not exist

    claimed = await _claim_all(broker, "w1", 100)

    assert [e.id for e in claimed] == [event_id]
    # Only the hint behind the claimed event stays pending; the rest is gone for good.
    assert await _pending(broker) == {"w1": 1}
    assert await broker.client.xlen(broker.keys.stream) == 1


async def test_racing_consumers_never_claim_an_event_twice(
    store: Store, make_broker: BrokerFactory
) -> None:
    first, second = await make_broker(), await make_broker()
    # Enough events that neither consumer can claim them all while the other is still on its
    # first read, however the two are scheduled on a loaded machine.
    ids = await store.add(3000)
    hints = ids * 3
    random.shuffle(hints)
    await first.publish(hints)

    results = await asyncio.gather(_claim_all(first, "w1", 50), _claim_all(second, "w2", 50))

    claimed = [e.id for batch in results for e in batch]
    assert sorted(claimed) == sorted(ids)
    assert all(results), "both consumers should have taken part"
    await first.settle(results[0])
    await second.settle(results[1])
    assert await broker_len(first) == 0


async def broker_len(broker: RedisBroker) -> int:
    return int(await broker.client.xlen(broker.keys.stream))


async def test_hints_held_by_a_dead_consumer_are_taken_over(
    store: Store, make_broker: BrokerFactory
) -> None:
    dead, alive = await make_broker(), await make_broker()
    ids = await store.add(20)
    await dead.publish(ids)
    assert len(await dead.claim(100, "dead", 300, 1.0)) == 20
    # The dead worker's lease runs out and the dispatcher returns its events to the queue.
    await asyncio.sleep(0.4)
    assert await store.stores.upkeep.reclaim_expired(max_attempts=5) == 20

    # Every hint was delivered already: only XAUTOCLAIM can find them again.
    taken = await alive.claim(100, "alive", 300, 0.1)

    assert sorted(e.id for e in taken) == sorted(ids)
    assert all(e.attempt == 2 for e in taken)
    assert await _pending(alive) == {"alive": 1}
    await alive.settle(taken)
    assert await broker_len(alive) == 0


async def test_hints_survive_the_stream_and_group_vanishing(
    store: Store, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    await broker.client.delete(broker.keys.stream)  # what FLUSHALL does to this deployment
    ids = await store.add(5)
    await broker.publish(ids)  # XADD recreates the stream, but not the group

    claimed = await broker.claim(100, "w1", LEASE_MS, 0.2)

    assert sorted(e.id for e in claimed) == sorted(ids)


async def test_trim_drops_handled_entries_only(store: Store, make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    client, stream = broker.client, broker.keys.stream
    handled = await store.add(450)
    for event_id in handled:  # one entry each, as 450 separate commits would publish them
        await broker.publish([event_id])
    read = await _claim_all(broker, "w1")
    entries = [str(e[0]) for e in await client.xrange(stream) or []]
    # Acknowledged without deletion: what a settle interrupted between the two would leave.
    await client.xack(stream, GROUP, *entries)
    pending_ids = await store.add(30)
    await broker.publish(pending_ids)
    in_flight = await broker.claim(30, "w1", LEASE_MS, 0.1)
    waiting = await store.add(120)
    await broker.publish(waiting)
    assert len(read) == 450 and len(in_flight) == 30

    removed = await broker.trim()

    assert removed >= 300, "whole nodes of handled entries should go"
    assert await _pending(broker) == {"w1": 1}
    rest = await _claim_all(broker, "w1")
    assert sorted(e.id for e in rest) == sorted(waiting)
    await broker.settle(in_flight + rest)
    await broker.trim()
    assert await broker_len(broker) <= 100  # at most the one node "~" trimming may keep


async def test_depth_counts_events_not_yet_delivered(
    store: Store, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    assert await broker.depth() == 0
    first, rest = await store.add(10), await store.add(2 * IDS_PER_ENTRY + 40)
    await broker.publish(first)
    await broker.publish(rest)  # three entries
    assert await broker.depth() == 10 + len(rest), "depth counts events, not entries"

    claimed = await broker.claim(10, "w1", LEASE_MS, 0.1)  # reads the first entry only

    assert sorted(e.id for e in claimed) == sorted(first)
    assert await broker.depth() == len(rest)
    await broker.settle(claimed)
    assert await broker.depth() == len(rest)
    await broker.client.delete(broker.keys.stream)
    assert await broker.depth() == 0


async def test_depth_heals_a_count_left_by_a_dead_reader(
    store: Store, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    await broker.publish(await store.add(5))
    # A worker read the entry and died before counting it as delivered.
    await broker.client.xreadgroup(GROUP, "dead", {broker.keys.stream: ">"}, count=10)
    assert await broker.client.get(broker.keys.hinted) == "5"

    assert await broker.depth() == 0
    assert await broker.client.get(broker.keys.hinted) == "0"


async def test_a_small_claim_hands_surplus_hints_to_other_workers(
    store: Store, make_broker: BrokerFactory
) -> None:
    slow, idle = await make_broker(), await make_broker()
    ids = await store.add(300)
    await slow.publish(ids)  # one entry

    claimed = await slow.claim(4, "slow", LEASE_MS, 0.1)

    assert len(claimed) == 4
    assert 0 < slow.buffered <= 64, "a worker must not hoard a whole entry"
    taken = await _claim_all(idle, "idle")
    assert len(taken) == 300 - 4 - slow.buffered
    rest = await _claim_all(slow, "slow")
    assert sorted(e.id for e in claimed + taken + rest) == sorted(ids)


async def test_unclaimed_hints_go_back_on_the_stream_at_close(
    store: Store, make_broker: BrokerFactory
) -> None:
    closing, other = await make_broker(), await make_broker()
    ids = await store.add(30)
    await closing.publish(ids)
    claimed = await closing.claim(10, "w1", LEASE_MS, 0.1)
    assert closing.buffered == 20

    await closing.close()

    rest = await _claim_all(other, "w2")
    assert sorted(e.id for e in claimed + rest) == sorted(ids)


async def test_prefixes_keep_deployments_apart(store: Store, make_broker: BrokerFactory) -> None:
    ours, theirs = await make_broker("t" + os.urandom(5).hex()), await make_broker()
    ids = await store.add(3)
    await ours.publish(ids)
    assert await theirs.claim(100, "w2", LEASE_MS, 0.1) == []
    assert len(await ours.claim(100, "w1", LEASE_MS, 0.1)) == 3


async def test_outcomes_then_settle_leave_nothing_behind(
    store: Store, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    ids = await store.add(5)
    await broker.publish(ids)
    claimed = await broker.claim(10, "w1", LEASE_MS, 0.1)
    now = now_ms()
    await store.stores.outcomes.record_outcomes(
        "w1", [Outcome(e.id, e.attempt, Status.COMPLETED, now, now) for e in claimed]
    )
    await broker.settle(claimed)
    # A late duplicate of a finished event is spent without a claim.
    await broker.publish(ids)
    assert await broker.claim(10, "w1", LEASE_MS, 0.1) == []
    assert await broker_len(broker) == 0


async def test_deep_queue_answers_503_until_workers_drain_it(
    fresh_postgres: str, redis_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=fresh_postgres,
        redis_url=redis_url,
        redis_prefix="t" + os.urandom(5).hex(),
        jwt_secret=TEST_SECRET,
        data_dir=tmp_path,
        max_queue_depth=20,
        dispatch_interval_ms=50,
        log_level="warning",
    )

    async def post() -> httpx.Response:
        return await client.post(
            "/api/v1/events", json={"type": "A", "payload": {}}, headers=headers
        )

    async with running_app(settings, run_worker=False) as client:
        headers = await signup(client)
        # No worker runs: the queue grows until the next depth reading refuses more.
        statuses = [(await post()).status_code for _ in range(30)]
        assert statuses == [202] * 30
        refused = await _first_refusal(post, within=5.0)
        assert refused.headers["Retry-After"]
        assert "EVENTFLOW_MAX_QUEUE_DEPTH" in refused.json()["detail"]

        async with open_worker_runtime(settings):
            await wait_for(lambda: _accepted(post), within=10.0, interval=0.2)


async def _first_refusal(
    post: Callable[[], Awaitable[httpx.Response]], within: float
) -> httpx.Response:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        response = await post()
        if response.status_code == 503:
            return response
        assert response.status_code == 202, response.text
        await asyncio.sleep(0.1)
    raise AssertionError(f"no 503 within {within} s")


async def _accepted(post: Callable[[], Awaitable[httpx.Response]]) -> bool:
    response = await post()
    assert response.status_code in (202, 503), response.text
    return response.status_code == 202
