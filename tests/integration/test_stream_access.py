"""Spent tickets and stream places on real Redis and real databases, as several processes see
them: each process has its own engine or Redis connection, and they share only the store."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.api.stream_access import MAX_STREAMS_PER_USER, RedisStreamSlots
from eventflow.auth.tickets import SPENT_MARGIN_MS, RedisSpentTickets, StreamTickets
from eventflow.auth.tokens import TokenClaims
from eventflow.broker.keys import RedisKeys
from eventflow.db.engine import create_engine
from eventflow.db.migrate import migrate
from eventflow.db.spent_tickets import SqlSpentTickets
from eventflow.db.stores import build_stores
from eventflow.db.tables import spent_tickets
from eventflow.errors import Unauthorized
from tests.conftest import TEST_SECRET, SettingsFactory

USER = "01900000-0000-7000-8000-000000000001"
SESSION = TokenClaims(USER, "01900000-0000-7000-8000-0000000000ff", 0, 0)


@pytest.fixture
async def engines(make_settings: SettingsFactory) -> AsyncIterator[list[AsyncEngine]]:
    """Two engines on one migrated database: two API processes' connection pools."""
    url = make_settings().effective_database_url
    pair = [create_engine(url), create_engine(url)]
    try:
        await migrate(pair[0])
        yield pair
    finally:
        for engine in pair:
            await engine.dispose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def keys() -> RedisKeys:
    return RedisKeys("t" + os.urandom(6).hex())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_the_database_refuses_a_ticket_spent_through_another_engine(
    engines: list[AsyncEngine],
) -> None:
    a, b = (StreamTickets(TEST_SECRET, build_stores(engine).spent_tickets) for engine in engines)
    ticket = a.issue(SESSION)
    await b.redeem(ticket)
    with pytest.raises(Unauthorized, match="already used"):
        await a.redeem(ticket)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_concurrent_redemptions_in_the_database_admit_exactly_one(
    engines: list[AsyncEngine],
) -> None:
    records = [build_stores(engine).spent_tickets for engine in engines]
    keep_until = int(time.time() * 1000) + 60_000
    for round_ in range(5):
        nonce = f"nonce-{round_}"
        won = await asyncio.gather(*(records[i % 2].spend(nonce, keep_until) for i in range(8)))
        assert won.count(True) == 1, won


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_expired_rows_are_deleted_lazily(engines: list[AsyncEngine]) -> None:
    now = time.time()
    record = SqlSpentTickets(build_stores(engines[0]).database, clock=lambda: now)
    for n in range(20):
        assert await record.spend(f"old-{n}", int(now * 1000) - 1)
    assert await record.spend("live", int(now * 1000) + 60_000)
    later = SqlSpentTickets(build_stores(engines[1]).database, clock=lambda: now + 1)
    assert await later.spend("next", int(now * 1000) + 60_000)
    async with engines[0].connect() as conn:
        left = set((await conn.execute(sa.select(spent_tickets.c.nonce))).scalars())
    assert left == {"live", "next"}


async def test_redis_refuses_a_ticket_spent_through_another_connection(
    redis_url: str, keys: RedisKeys
) -> None:
    clients = [Redis.from_url(redis_url, decode_responses=True) for _ in range(2)]
    try:
        a, b = (StreamTickets(TEST_SECRET, RedisSpentTickets(c, keys)) for c in clients)
        ticket = a.issue(SESSION)
        await b.redeem(ticket)
        with pytest.raises(Unauthorized, match="already used"):
            await a.redeem(ticket)
        won = await asyncio.gather(
            *(RedisSpentTickets(clients[i % 2], keys).spend("raced", 2**50) for i in range(8))
        )
        assert won.count(True) == 1
    finally:
        for client in clients:
            await client.aclose()


async def test_a_spent_key_expires_after_the_ticket_and_its_margin(
    redis: Redis, keys: RedisKeys
) -> None:
    tickets = StreamTickets(TEST_SECRET, RedisSpentTickets(redis, keys))
    ticket = tickets.issue(SESSION)
    await tickets.redeem(ticket)
    [key] = [k async for k in redis.scan_iter(match=keys.spent_ticket("*"))]
    assert key.startswith(keys.tag + ":")
    ttl_ms = int(await redis.pttl(key))
    # The ticket's 30 s, plus the margin for replicas whose clocks run behind; never forever.
    assert 30_000 + SPENT_MARGIN_MS - 5_000 < ttl_ms <= 30_000 + SPENT_MARGIN_MS


async def test_redis_places_cap_a_user_across_connections(redis_url: str, keys: RedisKeys) -> None:
    clients = [Redis.from_url(redis_url, decode_responses=True) for _ in range(2)]
    try:
        slots = [RedisStreamSlots(c, keys) for c in clients]
        taken = await asyncio.gather(
            *(slots[i % 2].acquire(USER) for i in range(MAX_STREAMS_PER_USER + 4))
        )
        held = [t for t in taken if t is not None]
        assert len(held) == MAX_STREAMS_PER_USER
        await slots[0].release(USER, held[0])
        await slots[0].release(USER, held[0])  # twice: still one place
        assert await slots[1].acquire(USER) is not None
        assert await slots[1].acquire(USER) is None
        assert await slots[1].acquire("another user") is not None
    finally:
        for client in clients:
            await client.aclose()


async def test_unrenewed_places_lapse_and_renewed_ones_stay(redis: Redis, keys: RedisKeys) -> None:
    slots = RedisStreamSlots(redis, keys, limit=2, lease_ms=400)
    kept, dropped = await slots.acquire(USER), await slots.acquire(USER)
    assert kept is not None
    assert dropped is not None
    assert await slots.acquire(USER) is None
    for _ in range(4):
        await asyncio.sleep(0.2)
        await slots.renew(USER, kept)
    # ``dropped`` was not renewed (its replica died): its place is free again, ``kept``'s not.
    assert await slots.acquire(USER) is not None
    assert await slots.acquire(USER) is None
    # Nothing is left behind once every stream is gone.
    await asyncio.sleep(0.5)
    assert await redis.exists(keys.open_streams(USER)) == 0
