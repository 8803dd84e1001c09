"""SQLite's ingest store: a group of new events in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from eventflow.db.ingest import (
    NEW_COLUMNS,
    EventIngest,
    answers,
    first_by_key,
    insert_keyed,
    new_row,
)
from eventflow.db.rows import NewEvent, StoredEvent
from eventflow.db.sqlite.database import SqliteDatabase
from eventflow.db.sqlite.inserts import insert_rows, insert_statements, run_statements
from eventflow.db.tables import events


class SqliteIngest(EventIngest):
    _db: SqliteDatabase

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db)

    async def insert_many(
        self, new: Sequence[NewEvent], written: Callable[[], None] | None = None
    ) -> list[StoredEvent]:
        plain = [new_row(e) for e in new if e.idempotency_key is None]
        first = first_by_key(new)
        if not first:
            # The usual group, without idempotency keys: one trip to SQLite's thread.
            statements = insert_statements(self._db.engine.dialect, events, NEW_COLUMNS, plain)

            def insert(db: sqlite3.Connection) -> None:
                run_statements(db, statements)
                if written is not None:
                    written()

            await self._db.transact(insert)
            return answers(new, first, {})
        existing = {}
        async with self._db.write() as conn:
            if plain:
                await insert_rows(conn, events, NEW_COLUMNS, plain)
            if first:
                existing = await insert_keyed(self._db, conn, list(first.values()))
            if written is not None:
                written()
        return answers(new, first, existing)
