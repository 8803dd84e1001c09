"""The scans of waiting and running events, stated so that both databases use their indexes."""

from __future__ import annotations

import sqlalchemy as sa

from eventflow.db.database import Database
from eventflow.db.rows import Status
from eventflow.db.tables import ACTIVE, PROCESSING, events

CLAIMABLE = (Status.QUEUED.value, Status.RETRYING.value)
# The exact conditions of the partial indexes ix_events_due and ix_events_lease, as literal SQL.
# SQLite uses a partial index only when the query repeats its WHERE term with the same constants
# (it cannot prove that "IN (a, b)" implies "IN (a, b, c)", and a bound parameter never matches),
# so every due or lease scan states them too; without them each claim scans the whole table.
USES_DUE_INDEX = sa.text(ACTIVE)
USES_LEASE_INDEX = sa.text(PROCESSING)


def due_ids(
    db: Database,
    status: sa.ColumnElement[bool],
    now: int,
    limit: int,
    *also: sa.ColumnElement[bool],
) -> sa.ColumnElement[bool]:
    """The row is one of up to ``limit`` rows in ``status`` that are due at ``now``, oldest due
    first: the condition of an ``UPDATE`` that concurrent updaters may run at once, which never
    takes more than ``limit`` rows (``Database.taken_once``)."""
    query = (
        sa.select(events.c.id)
        .where(USES_DUE_INDEX, status, events.c.available_at <= now, *also)
        .order_by(events.c.available_at)
        .limit(limit)
    )
    return db.taken_once(events.c.id, query)


def is_claimable() -> sa.ColumnElement[bool]:
    return events.c.status.in_(CLAIMABLE)
