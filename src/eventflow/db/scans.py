"""The scans of waiting and running events, stated so that both databases use their indexes."""

from __future__ import annotations

import sqlalchemy as sa

from eventflow.db.database import Database
from eventflow.db.rows import Status
from eventflow.db.tables import PROCESSING, READY, SCHEDULED, events

CLAIMABLE = (Status.QUEUED.value, Status.RETRYING.value)
# The exact conditions of the partial indexes on waiting and running rows, as literal SQL.
# SQLite uses a partial index only when the query repeats its WHERE terms with the same
# constants (a bound parameter never matches), so every scan states them; without them each
# claim scans the whole table.
USES_READY_INDEX = (sa.text(READY),)
USES_SCHEDULED_INDEX = (sa.text(SCHEDULED),)
USES_UNHINTED_INDEX = (sa.text("dispatched_at IS NULL"), sa.text(READY))
USES_LEASE_INDEX = sa.text(PROCESSING)


def due_ids(
    db: Database,
    index: tuple[sa.TextClause, ...],
    due_at: int,
    limit: int,
    *also: sa.ColumnElement[bool],
) -> sa.ColumnElement[bool]:
    """The row is one of up to ``limit`` rows of the partial ``index`` (one of the ``USES_…``
    conditions above) that are due at ``due_at``, oldest due first: the condition of an
    ``UPDATE`` that concurrent updaters may run at once, which never takes more than ``limit``
    rows (``Database.taken_once``)."""
    query = (
        sa.select(events.c.id)
        .where(*index, events.c.available_at <= due_at, *also)
        .order_by(events.c.available_at)
        .limit(limit)
    )
    return db.taken_once(events.c.id, query)


def is_claimable() -> sa.ColumnElement[bool]:
    return events.c.status.in_(CLAIMABLE)
