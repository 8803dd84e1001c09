"""Leaner event indexes: fewer index entries for every row version the queue writes.

Each claim and each outcome writes a new row version, and PostgreSQL enters every version in every
index whose predicate it meets (the status changes, so no update is HOT). The indexes that only
serve rare lookups now skip the rows that never need them:

- the idempotency key index holds only events sent with a key;
- the (user, status, id) index holds only ``failed``, ``retrying`` and ``scheduled`` rows, the
  ones a listing must find among a long history: completed rows are nearly all of it, and queued
  and processing rows are the newest, so a newest-first walk of (user, id) finds either at once;
- the (user, completed_at) index holds only finished rows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_HAS_KEY = sa.text("idempotency_key IS NOT NULL")
_RARE = sa.text("status IN ('failed', 'retrying', 'scheduled')")
_FINISHED = sa.text("completed_at IS NOT NULL")


def upgrade() -> None:
    op.drop_index("uq_events_user_id_idempotency_key", table_name="events")
    op.create_index(
        "uq_events_user_id_idempotency_key",
        "events",
        ["user_id", "idempotency_key"],
        unique=True,
        postgresql_where=_HAS_KEY,
        sqlite_where=_HAS_KEY,
    )
    op.drop_index("ix_events_user_id_status_id", table_name="events")
    op.create_index(
        "ix_events_user_id_status_id",
        "events",
        ["user_id", "status", "id"],
        postgresql_where=_RARE,
        sqlite_where=_RARE,
    )
    op.drop_index("ix_events_user_id_completed_at", table_name="events")
    op.create_index(
        "ix_events_user_id_completed_at",
        "events",
        ["user_id", "completed_at"],
        postgresql_where=_FINISHED,
        sqlite_where=_FINISHED,
    )


def downgrade() -> None:
    op.drop_index("ix_events_user_id_completed_at", table_name="events")
    op.create_index("ix_events_user_id_completed_at", "events", ["user_id", "completed_at"])
    op.drop_index("ix_events_user_id_status_id", table_name="events")
    op.create_index("ix_events_user_id_status_id", "events", ["user_id", "status", "id"])
    op.drop_index("uq_events_user_id_idempotency_key", table_name="events")
    op.create_index(
        "uq_events_user_id_idempotency_key", "events", ["user_id", "idempotency_key"], unique=True
    )
