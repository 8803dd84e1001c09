"""On SQLite a group of new events, and a batch of outcomes' history, is inserted a few dozen
rows per statement: each statement SQLite runs (an ``executemany`` runs one per row) is a round
of the GIL between its thread and the event loop's, which under load waits up to the
interpreter's switch interval."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.clock import now_ms
from eventflow.db.engine import create_engine
from eventflow.db.migrate import migrate
from eventflow.db.rows import NewEvent, Outcome, Status
from eventflow.db.stores import build_stores
from eventflow.db.tables import users
from eventflow.ids import new_id

EVENTS = 200


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'inserts.db'}")
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


def _executions(engine: AsyncEngine) -> list[str]:
    """Every statement SQLite runs from now on, once per set of parameters (an
    ``executemany`` runs its statement once per row)."""
    ran: list[str] = []

    def count(_c: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        ran.extend([statement] * (len(params) if many else 1))

    sa.event.listen(engine.sync_engine, "before_cursor_execute", count)
    return ran


async def test_a_group_and_its_history_take_a_statement_per_few_dozen_rows(
    engine: AsyncEngine,
) -> None:
    stores = build_stores(engine)
    user = new_id()
    async with engine.begin() as conn:
        values = {"id": user, "email": "i@example.com", "password_hash": "x", "created_at": 0}
        await conn.execute(sa.insert(users).values(**values))
    at = now_ms()
    group = [
        NewEvent(new_id(), user, "A", f'{{"n": {n}}}', Status.QUEUED, at, at) for n in range(EVENTS)
    ]
    ran = _executions(engine)

    await stores.ingest.insert_many(group)
    claimed = await stores.queue.claim_ids([e.id for e in group], "w", 30_000)
    done = now_ms()
    await stores.outcomes.record_outcomes(
        "w", [Outcome(c.id, c.attempt, Status.COMPLETED, at, done, "{}") for c in claimed]
    )

    inserts = [s for s in ran if s.startswith("INSERT INTO events ")]
    history = [s for s in ran if s.startswith("INSERT INTO attempts ")]
    assert len(inserts) == 3, "200 rows of 13 values in 999 parameters or fewer each"
    assert len(history) == 2, "200 rows of 7 values"
    # Stored as the ordinary way stores them: what was sent is what is read back.
    assert len(claimed) == EVENTS
    row = await stores.reading.get(user, group[7].id)
    assert row is not None
    assert (row.status, row.payload, row.attempts) == (Status.COMPLETED, '{"n": 7}', 1)
