"""Listings by status stay index-backed however long the history: (user, status, id) for every
status but ``completed``.

Migration 0002 left ``queued`` and ``processing`` rows out of the (user, status, id) index,
expecting a newest-first walk of (user, id) to find them among the newest events. It does when
there are enough of them; but the walk proves there are no more only by reaching the user's
oldest event, and a healthy queue holds none: listing ``queued`` (and the live feed's in-flight
seed, every time a dashboard opens) read the user's whole history, ten million rows for a user
with ten million events. A replay also queues events under their old ids, deep in the history.
The new index holds every status but ``completed``: one more index entry per ingested event and
per claim, none per completion.

Its predicate is written as equalities joined by ``OR``: SQLite uses a partial index only when it
can prove the query implies the predicate, and it proves ``status = 'queued'`` implies an ``OR``
of which it is one arm, never an ``IN`` list.

On PostgreSQL ``CREATE INDEX`` blocks writes to ``events`` while it builds (seconds per few
million rows). Where that pause matters, build the index beforehand without blocking writes,
``CREATE INDEX CONCURRENTLY ix_events_user_status ON events (user_id, status, id) WHERE status =
'scheduled' OR status = 'queued' OR status = 'processing' OR status = 'retrying' OR status =
'failed'``, and this migration keeps it (docs/performance.md, *Reads at scale*).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_LISTED = sa.text(
    "status = 'scheduled' OR status = 'queued' OR status = 'processing'"
    " OR status = 'retrying' OR status = 'failed'"
)
_RARE = sa.text("status IN ('failed', 'retrying', 'scheduled')")


def upgrade() -> None:
    op.create_index(
        "ix_events_user_status",
        "events",
        ["user_id", "status", "id"],
        postgresql_where=_LISTED,
        sqlite_where=_LISTED,
        if_not_exists=True,
    )
    op.drop_index("ix_events_user_id_status_id", table_name="events", if_exists=True)


def downgrade() -> None:
    op.create_index(
        "ix_events_user_id_status_id",
        "events",
        ["user_id", "status", "id"],
        postgresql_where=_RARE,
        sqlite_where=_RARE,
    )
    op.drop_index("ix_events_user_status", table_name="events")
