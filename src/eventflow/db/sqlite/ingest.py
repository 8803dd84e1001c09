"""SQLite's ingest store: a group of new events in one transaction."""

from __future__ import annotations

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
from eventflow.db.sqlite.inserts import insert_rows
from eventflow.db.tables import events


class SqliteIngest(EventIngest):
    async def insert_many(
        self, new: Sequence[NewEvent], written: Callable[[], None] | None = None
    ) -> list[StoredEvent]:
        plain = [new_row(e) for e in new if e.idempotency_key is None]
        first = first_by_key(new)
        existing = {}
        async with self._db.write() as conn:
            if plain:
                await insert_rows(conn, events, NEW_COLUMNS, plain)
            if first:
                existing = await insert_keyed(self._db, conn, list(first.values()))
            if written is not None:
                written()
        return answers(new, first, existing)
