"""Redeemed stream tickets in the database, for deployments without Redis."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError

from eventflow.db.database import Database
from eventflow.db.tables import spent_tickets

# Expired rows only take space (an expired ticket is refused before this table is asked), so a
# sweep now and then keeps the table at a few minutes' worth of tickets.
_PURGE_EVERY_S = 60.0


class SqlSpentTickets:
    """One row per redeemed nonce; the primary key refuses the second one in any process."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._next_purge = 0.0

    async def spend(self, nonce: str, keep_until_ms: int) -> bool:
        now = self._clock()
        if now >= self._next_purge:
            self._next_purge = now + _PURGE_EVERY_S
            async with self._db.write() as conn:
                await conn.execute(
                    spent_tickets.delete().where(spent_tickets.c.expires_at < int(now * 1000))
                )
        try:
            async with self._db.write() as conn:
                await conn.execute(
                    spent_tickets.insert().values(nonce=nonce, expires_at=keep_until_ms)
                )
        except IntegrityError:
            return False
        return True
