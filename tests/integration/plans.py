"""The query plans of what a store call really sends, for tests that check indexes are used."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.db.sqlite import database as sqlite_database


async def query_plans(engine: AsyncEngine, call: Callable[[], Awaitable[object]]) -> list[str]:
    """The query plan of every statement ``call`` runs, with the parameters it sent: SQLite's
    ``EXPLAIN QUERY PLAN`` or PostgreSQL's ``EXPLAIN``, one string per statement, its steps
    joined by `` | ``."""
    sent = await statements_sent(engine, call)
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    plans = []
    async with engine.connect() as conn:
        for statement, params in sent:
            rows = await conn.exec_driver_sql(explain + statement, params)
            plans.append(" | ".join(str(row[-1]).strip() for row in rows))
    return plans


async def rows_read(engine: AsyncEngine, call: Callable[[], Awaitable[object]]) -> int:
    """How many rows of ``events`` PostgreSQL reads to run again every statement ``call`` ran,
    with the parameters it sent: the rows its scans return plus those their filters drop, from
    ``EXPLAIN ANALYZE`` in a transaction that is rolled back."""
    sent = await statements_sent(engine, call)
    read = 0
    async with engine.connect() as conn:
        for statement, params in sent:
            transaction = await conn.begin()
            explain = "EXPLAIN (ANALYZE, FORMAT JSON) " + statement
            (document,) = (await conn.exec_driver_sql(explain, params)).one()
            await transaction.rollback()
            plan = json.loads(document) if isinstance(document, str) else document
            read += _rows_of_events(plan[0]["Plan"])
    return read


def _rows_of_events(node: dict[str, Any]) -> int:
    read = 0
    if node.get("Relation Name") == "events" and "Scan" in node["Node Type"]:
        kept = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
        read += kept * node["Actual Loops"]
    return read + sum(_rows_of_events(child) for child in node.get("Plans", []))


async def statements_sent(
    engine: AsyncEngine, call: Callable[[], Awaitable[object]]
) -> list[tuple[str, Any]]:
    """The queries (``SELECT``, ``UPDATE``, ``DELETE``) ``call`` sent, with their parameters:
    through SQLAlchemy, and on SQLite also straight to the driver (``SqliteDatabase.transact``)."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            sent.append((statement, params))

    transaction = sqlite_database._transaction

    def noted(driver: Any, work: Callable[[Any], Any]) -> Any:
        return transaction(driver, lambda db: work(_Noting(db, capture)))

    sa.event.listen(engine.sync_engine, "before_cursor_execute", capture)
    sqlite_database._transaction = noted
    try:
        await call()
    finally:
        sqlite_database._transaction = transaction
        sa.event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert sent, "the call ran no query"
    return sent


class _Noting:
    """A sqlite3 connection that hands each statement it runs to ``note`` first."""

    def __init__(self, db: sqlite3.Connection, note: Callable[..., None]) -> None:
        self._db = db
        self._note = note

    def execute(self, statement: str, params: Any = ()) -> sqlite3.Cursor:
        self._note(None, None, statement, params)
        return self._db.execute(statement, params)
