"""The queue's scans use their partial indexes on SQLite, with the parameters really sent, and
retention's purge its index on both databases.

SQLite uses a partial index only when the query repeats the index's condition with the same
constants; a bound parameter never qualifies. A query that misses its index still answers
correctly, only slower as the history grows, so the plans are checked here directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.db.engine import create_engine
from eventflow.db.rows import Status
from eventflow.db.stores import build_stores
from eventflow.db.tables import users as users_table
from eventflow.ids import new_id
from tests.integration.plans import query_plans


async def test_claims_and_dispatch_scans_use_the_partial_indexes(
    sqlite_engine: AsyncEngine,
) -> None:
    stores = build_stores(sqlite_engine)
    queue, upkeep = stores.queue, stores.upkeep
    checks: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("ix_events_ready", lambda: queue.claim_due(100, "w", 1000)),
        ("ix_events_scheduled", lambda: upkeep.promote_scheduled()),
        ("ix_events_unhinted", lambda: upkeep.take_unhinted()),
        ("ix_events_ready", lambda: upkeep.take_overdue(1000)),
        ("ix_events_ready", queue.queue_depth),
        ("ix_events_ready", stores.ingest.queue_depth),
        ("ix_events_ready", lambda: queue.backlog(1000)),
        ("ix_events_lease", lambda: upkeep.reclaim_expired(5)),
        ("ix_events_lease", lambda: queue.release("w")),
    ]
    for index, call in checks:
        plans = await query_plans(sqlite_engine, call)
        assert any(index in plan for plan in plans), plans
        # A scan of the partial index is fine (it holds only the waiting or running rows).
        assert not any(step == "SCAN events" for p in plans for step in p.split(" | ")), plans


# Old completed events among newer ones and waiting ones, each with one attempt; ANALYZEd on
# PostgreSQL so that its planner weighs a real table, not an empty one.
_HISTORY = [
    """INSERT INTO events (id, user_id, type, payload, status, available_at, created_at,
           updated_at, completed_at)
       SELECT {uuid}, {user}, 'A', '{{}}', CASE WHEN g % 10 = 0 THEN 'queued' ELSE 'completed'
           END, g, g, g, CASE WHEN g % 10 = 0 THEN NULL ELSE g END
       FROM {series}""",
    """INSERT INTO attempts (event_id, number, outcome, worker, started_at, finished_at)
       SELECT id, 1, 'completed', 'w', 0, 0 FROM events""",
]
_SQLITE_SERIES = "(WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < {rows}) SELECT g FROM n) AS s"  # noqa: E501


async def _purge_plans(engine: AsyncEngine) -> list[str]:
    upkeep = build_stores(engine).upkeep
    plans = await query_plans(engine, lambda: upkeep.purge_finished(Status.COMPLETED, 2_000, 100))
    assert len(plans) == 2, "the events and their attempts"
    return plans


async def test_the_retention_purge_uses_the_finished_index_on_sqlite(
    sqlite_engine: AsyncEngine,
) -> None:
    user = new_id()
    async with sqlite_engine.begin() as conn:
        await conn.execute(
            sa.insert(users_table).values(
                id=user, email="p@example.com", password_hash="x", created_at=0
            )
        )
        for statement in _HISTORY:
            await conn.exec_driver_sql(
                statement.format(
                    uuid="lower(hex(randomblob(16)))",
                    user=f"'{user.replace('-', '')}'",
                    series=_SQLITE_SERIES.format(rows=5_000),
                )
            )
    purge, history = await _purge_plans(sqlite_engine)
    assert "SEARCH events USING INDEX ix_events_finished" in purge, purge
    assert "SCAN events" not in purge.split(" | "), purge
    assert "ix_attempts_event_id_number" in history, history


async def test_the_retention_purge_uses_the_finished_index_on_postgres(
    fresh_postgres: str,
) -> None:
    conn = await asyncpg.connect(fresh_postgres)
    try:
        for statement in _HISTORY:
            await conn.execute(
                statement.format(
                    uuid="gen_random_uuid()",
                    user=f"'{new_id()}'::uuid",
                    series="generate_series(1, 50000) AS s(g)",
                )
            )
        await conn.execute("ANALYZE events; ANALYZE attempts")
    finally:
        await conn.close()
    engine = create_engine(fresh_postgres.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        purge, history = await _purge_plans(engine)
    finally:
        await engine.dispose()
    # The oldest finished rows come off the index once (an InitPlan), then each row by its key.
    assert "InitPlan" in purge and "Index Scan using ix_events_finished" in purge, purge
    assert "Index Scan on pk_events" in purge or "Index Scan using pk_events" in purge, purge
    assert "Seq Scan" not in purge, purge
    assert "ix_attempts_event_id_number" in history and "Seq Scan" not in history, history
