"""PostgreSQL's ingest store: plain groups by COPY, keyed events by INSERT … ON CONFLICT."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from eventflow.db.ingest import (
    NEW_COLUMNS,
    EventIngest,
    answers,
    first_by_key,
    insert_keyed,
    new_row,
)
from eventflow.db.postgres.database import driver_connection
from eventflow.db.rows import NewEvent, StoredEvent


class PostgresIngest(EventIngest):
    async def insert_many(
        self, new: Sequence[NewEvent], written: Callable[[], None] | None = None
    ) -> list[StoredEvent]:
        plain = [e for e in new if e.idempotency_key is None]
        first = first_by_key(new)
        if not first:
            # A COPY is a transaction of its own: two round trips, where BEGIN, COPY and COMMIT
            # would take four.
            async with self._db.one_statement() as conn:
                await _copy(conn, plain)
            return [StoredEvent(e.id, e.status, e.created_at) for e in new]
        existing = {}
        async with self._db.write() as conn:
            if plain:
                # The SELECT makes SQLAlchemy open its transaction on the connection first, so
                # the COPY commits or rolls back with everything else in the group.
                await conn.exec_driver_sql("SELECT 1")
                await _copy(conn, plain)
            existing = await insert_keyed(self._db, conn, list(first.values()))
            if written is not None:
                written()
        return answers(new, first, existing)


async def _copy(conn: AsyncConnection, rows: list[NewEvent]) -> None:
    # COPY is several times faster than a multi-row INSERT and needs no statement prepared per
    # batch size.
    await (await driver_connection(conn)).copy_records_to_table(
        "events", columns=NEW_COLUMNS, records=[new_row(e) for e in rows]
    )
