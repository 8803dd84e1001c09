"""The query plans of what a store call really sends, for tests that check indexes are used."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine


async def query_plans(engine: AsyncEngine, call: Callable[[], Awaitable[object]]) -> list[str]:
    """The query plan of every statement ``call`` runs, with the parameters it sent: SQLite's
    ``EXPLAIN QUERY PLAN`` or PostgreSQL's ``EXPLAIN``, one string per statement, its steps
    joined by `` | ``."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            sent.append((statement, params))

    sa.event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        await call()
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert sent, "the call ran no query"
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    plans = []
    async with engine.connect() as conn:
        for statement, params in sent:
            rows = await conn.exec_driver_sql(explain + statement, params)
            plans.append(" | ".join(str(row[-1]).strip() for row in rows))
    return plans
