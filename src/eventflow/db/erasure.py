"""Removing a deleted account's events and their attempts, in small transactions."""

from __future__ import annotations

import sqlalchemy as sa

from eventflow.db.database import Database
from eventflow.db.rows import Status
from eventflow.db.tables import attempts, events

_CHUNK = 2000


class EventErasure:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def erase(self, user_id: str) -> int:
        """Delete the account's events that no worker holds, with their history; answers how many.

        An event in ``processing`` stays until its worker has recorded the outcome: deleting it
        under the worker would make the outcome's history insert fail on SQLite (its foreign
        key), and with it the whole batch of outcomes, other accounts' included. A later pass
        finds it settled.
        """
        erased = 0
        while True:
            # One chunk per transaction: SQLite's single write lock is never held for long.
            async with self._db.write() as conn:
                chunk = (
                    sa.select(events.c.id)
                    .where(events.c.user_id == user_id, events.c.status != Status.PROCESSING.value)
                    .limit(_CHUNK)
                )
                rows = await conn.execute(
                    sa.delete(events)
                    .where(
                        events.c.id.in_(chunk.scalar_subquery()),
                        # Checked again on the row: a claim may have taken it since the SELECT.
                        events.c.status != Status.PROCESSING.value,
                    )
                    .returning(events.c.id)
                )
                ids = [str(row.id) for row in rows]
                if ids:
                    # PostgreSQL has no foreign key to cascade (migration 0003).
                    await conn.execute(sa.delete(attempts).where(attempts.c.event_id.in_(ids)))
            erased += len(ids)
            if len(ids) < _CHUNK:
                return erased

    async def remaining(self, user_id: str) -> int:
        async with self._db.read() as conn:
            value = await conn.scalar(
                sa.select(sa.func.count()).select_from(events).where(events.c.user_id == user_id)
            )
        return int(value or 0)
