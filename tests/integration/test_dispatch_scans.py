"""The dispatcher's scans read the rows they act on, not the queue waiting behind them.

A pass runs four times a second. Each scan that walked a long queue to prove it had nothing to
do cost tens of milliseconds of PostgreSQL's time per pass, growing with the queue (migration
0010); here a queue of fresh events waits while each scan runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.clock import now_ms
from eventflow.db.engine import create_engine
from eventflow.db.stores import build_stores
from tests.integration.plans import rows_read

QUEUE = 30_000
WINDOW_MS = 60_000
# The queue: fresh events, hinted now; then a few unhinted, scheduled and long-hinted ones.
_LOAD = """
INSERT INTO events (id, user_id, type, payload, status, available_at, dispatched_at,
    created_at, updated_at)
SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'T', '{{}}', status,
    at, CASE WHEN g <= 3 OR status = 'scheduled' THEN NULL ELSE at END, at, at
FROM (SELECT g, CASE WHEN g BETWEEN 4 AND 5 THEN 'scheduled' ELSE 'queued' END AS status,
    CASE WHEN g BETWEEN 6 AND 7 THEN {now} - 2 * {window} ELSE {now} - g END AS at
    FROM generate_series(1, {rows}) AS s(g)) AS queue
"""


@pytest.fixture
async def engine(fresh_postgres: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_postgres.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.begin() as conn:
            load = _LOAD.format(now=now_ms(), window=WINDOW_MS, rows=QUEUE)
            await conn.execute(sa.text(load))
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE events")
        yield engine
    finally:
        await engine.dispose()


async def test_each_scan_reads_only_the_rows_it_takes(engine: AsyncEngine) -> None:
    upkeep = build_stores(engine).upkeep
    assert await upkeep.promote_scheduled() == 2
    assert len(await upkeep.take_unhinted()) == 3 + 2, "the unhinted and the promoted"
    assert len(await upkeep.take_overdue(WINDOW_MS)) == 2

    # Nothing is left to do, and each scan finds that out without reading the queue.
    for scan in (
        upkeep.promote_scheduled,
        upkeep.take_unhinted,
        lambda: upkeep.take_overdue(WINDOW_MS),
    ):
        assert await rows_read(engine, scan) < 20, "reads the queue"
