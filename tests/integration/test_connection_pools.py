"""EVENTFLOW_DB_POOL_SIZE and EVENTFLOW_DB_MAX_OVERFLOW bound each process's PostgreSQL
connections under load, the API's and the worker's alike."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import orjson

from tests.integration.procs import (
    TESTS_APPLICATION,
    cluster,
    login,
    post_many,
    wait_until_settled,
)

POOL_SIZE, MAX_OVERFLOW = 1, 1
EVENTS = 3000


async def _sample_connections(database_url: str, stop: asyncio.Event) -> int:
    """The most connections EventFlow's processes held at once: client connections to the
    database besides the tests' own (this one, and the polls of ``wait_until_settled``);
    autovacuum's workers show in ``pg_stat_activity`` too, and are not clients."""
    peak = 0
    conn = await asyncpg.connect(
        database_url, server_settings={"application_name": TESTS_APPLICATION}
    )
    try:
        while not stop.is_set():
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND application_name <> $1",
                TESTS_APPLICATION,
            )
            peak = max(peak, int(count))
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    return peak


async def test_each_process_holds_no_more_than_its_pool_and_overflow(
    fresh_postgres: str, redis_url: str, tmp_path: Path
) -> None:
    with cluster(
        fresh_postgres,
        redis_url,
        tmp_path,
        db_pool_size=POOL_SIZE,
        db_max_overflow=MAX_OVERFLOW,
        # Commits wait for a connection here: give them time on a busy machine.
        commit_timeout_ms=10_000,
    ) as group:
        api, _ = group.api(), group.worker()
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            headers = await login(client)
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_connections(fresh_postgres, stop))
        bodies = [
            orjson.dumps({"type": "ORDER_CREATED", "payload": {"n": n}}) for n in range(EVENTS)
        ]
        await post_many([api.url], headers, bodies)
        await wait_until_settled(fresh_postgres, EVENTS, within=120, cluster=group)
        stop.set()
        peak = await sampler

    # Two processes, each with its pool and overflow; and both did use the database.
    assert 2 <= peak <= 2 * (POOL_SIZE + MAX_OVERFLOW)
