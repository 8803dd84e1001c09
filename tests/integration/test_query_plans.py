"""The queue's scans use their partial indexes on SQLite, with the parameters really sent.

SQLite uses a partial index only when the query repeats the index's condition with the same
constants; a bound parameter never qualifies. A query that misses its index still answers
correctly, only slower as the history grows, so the plans are checked here directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.db.engine import create_engine
from eventflow.db.migrate import migrate
from eventflow.db.rows import PageQuery, Status
from eventflow.db.stores import build_stores
from eventflow.ids import new_id

Statement = tuple[str, Any]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}")
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _plans(engine: AsyncEngine, call: Callable[[], Awaitable[object]]) -> list[str]:
    """The query plan of every statement ``call`` runs, with the parameters it sent."""
    sent: list[Statement] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE")):
            sent.append((statement, params))

    sa.event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        await call()
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert sent, "the call ran no query"
    plans = []
    async with engine.connect() as conn:
        for statement, params in sent:
            rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            plans.append(" | ".join(str(row[-1]) for row in rows))
    return plans


async def test_claims_and_dispatch_scans_use_the_partial_indexes(engine: AsyncEngine) -> None:
    stores = build_stores(engine)
    queue, upkeep = stores.queue, stores.upkeep
    checks: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("ix_events_due", lambda: queue.claim_due(100, "w", 1000)),
        ("ix_events_due", lambda: upkeep.promote_scheduled()),
        ("ix_events_due", lambda: upkeep.take_undispatched(1000)),
        ("ix_events_due", queue.queue_depth),
        ("ix_events_due", stores.ingest.queue_depth),
        ("ix_events_due", lambda: queue.backlog(1000)),
        ("ix_events_lease", lambda: upkeep.reclaim_expired(5)),
        ("ix_events_lease", lambda: queue.release("w")),
    ]
    for index, call in checks:
        plans = await _plans(engine, call)
        assert any(index in plan for plan in plans), plans
        # A scan of the partial index is fine (it holds only the waiting or running rows).
        assert not any(step == "SCAN events" for p in plans for step in p.split(" | ")), plans


async def test_status_listings_use_the_partial_status_index(engine: AsyncEngine) -> None:
    stores = build_stores(engine)
    queries, feed = stores.reading, stores.feed
    user = new_id()

    def listing(status: Status) -> Callable[[], Awaitable[object]]:
        return lambda: queries.page(user, PageQuery(limit=10, status=status))

    for status in (Status.FAILED, Status.RETRYING, Status.SCHEDULED):
        (plan,) = await _plans(engine, listing(status))
        assert "ix_events_user_id_status_id" in plan, plan
    # The other statuses are not in that index: their listings walk (user_id, id) newest first.
    for status in (Status.QUEUED, Status.PROCESSING, Status.COMPLETED):
        (plan,) = await _plans(engine, listing(status))
        assert "ix_events_user_id_id" in plan, plan
    plans = await _plans(engine, lambda: feed.in_flight(user, 5))
    assert all("ix_events_user_id_" in plan and "SCAN events" not in plan for plan in plans)
