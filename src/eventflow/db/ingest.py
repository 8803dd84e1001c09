"""Storing new events: what both databases' ingest stores share (rows, keyed inserts, answers)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from eventflow.db.database import Database
from eventflow.db.queue import queue_depth
from eventflow.db.rows import NewEvent, Status, StoredEvent
from eventflow.db.scans import is_claimable
from eventflow.db.tables import events

Key = tuple[str, str]

#: The columns a new row sets, in the order of ``new_row``.
NEW_COLUMNS = (
    "id",
    "user_id",
    "type",
    "payload",
    "status",
    "attempts",
    "attempt_base",
    "available_at",
    "dispatched_at",
    "idempotency_key",
    "created_at",
    "updated_at",
    "source",
)


class EventIngest(ABC):
    """What the group-commit writer asks of the database; ``insert_many`` differs per database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @abstractmethod
    async def insert_many(
        self, new: Sequence[NewEvent], written: Callable[[], None] | None = None
    ) -> list[StoredEvent]:
        """Store ``new`` in one transaction; answers in input order.

        An event whose (user, idempotency key) already exists is not stored again: its answer is
        the original event, marked ``duplicate``. ``written`` is called when only the commit
        remains (not at all when one statement is the whole transaction).
        """

    async def forget_dispatch(self, ids: Sequence[str]) -> None:
        """These hints never reached the broker: let the dispatcher publish them first thing."""
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(events)
                .where(events.c.id.in_(ids), is_claimable())
                .values(dispatched_at=None)
            )

    async def queue_depth(self) -> int:
        """Events ready to run now, across all users."""
        return await queue_depth(self._db)


def new_row(e: NewEvent) -> tuple[object, ...]:
    """A new row in ``NEW_COLUMNS`` order."""
    # The writer publishes a hint right after commit, so a queued row counts as dispatched.
    dispatched = e.created_at if e.status is Status.QUEUED else None
    return (
        e.id,
        e.user_id,
        e.type,
        e.payload,
        e.status,  # a StrEnum member is its text
        0,
        0,
        e.available_at,
        dispatched,
        e.idempotency_key,
        e.created_at,
        e.created_at,
        e.source,
    )


def new_values(e: NewEvent) -> dict[str, Any]:
    return dict(zip(NEW_COLUMNS, new_row(e), strict=True))


def first_by_key(new: Sequence[NewEvent]) -> dict[Key, NewEvent]:
    """The first event of each (user, idempotency key) in ``new``: the one that may be stored."""
    first: dict[Key, NewEvent] = {}
    for e in new:
        if e.idempotency_key is not None:
            first.setdefault((e.user_id, e.idempotency_key), e)
    return first


async def insert_keyed(
    db: Database, conn: AsyncConnection, keyed: list[NewEvent]
) -> dict[Key, StoredEvent]:
    """Insert ``keyed`` unless their key exists; answers the originals of those that lost."""
    # The unique index is partial (keyed events only): the conflict target names it.
    stmt = db.insert_or_skip(
        events, ["user_id", "idempotency_key"], events.c.idempotency_key.is_not(None)
    ).returning(events.c.id)
    result = await conn.execute(stmt, [new_values(e) for e in keyed])
    inserted = {str(row.id) for row in result}
    losers = [e for e in keyed if e.id not in inserted]
    found: dict[Key, StoredEvent] = {}
    for user_id in {e.user_id for e in losers}:
        keys = [e.idempotency_key for e in losers if e.user_id == user_id]
        rows = await conn.execute(
            sa.select(
                events.c.id, events.c.status, events.c.created_at, events.c.idempotency_key
            ).where(events.c.user_id == user_id, events.c.idempotency_key.in_(keys))
        )
        for row in rows:
            found[(user_id, row.idempotency_key)] = StoredEvent(
                str(row.id), Status(row.status), row.created_at, True
            )
    return found


def answers(
    new: Sequence[NewEvent], first: dict[Key, NewEvent], existing: dict[Key, StoredEvent]
) -> list[StoredEvent]:
    """What each of ``new`` is answered, in input order: itself, or the original of its key."""
    out: list[StoredEvent] = []
    for e in new:
        if e.idempotency_key is None:
            out.append(StoredEvent(e.id, e.status, e.created_at))
            continue
        key = (e.user_id, e.idempotency_key)
        original = existing.get(key)
        if original is not None:
            out.append(original)
        elif first[key] is e:
            out.append(StoredEvent(e.id, e.status, e.created_at))
        else:
            f = first[key]
            out.append(StoredEvent(f.id, f.status, f.created_at, True))
    return out
