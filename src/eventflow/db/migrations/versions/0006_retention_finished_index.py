"""Retention: an index of finished events by status and finish time.

Retention (``EVENTFLOW_RETENTION_DAYS``) deletes ``completed`` and ``failed`` events whose
``completed_at`` is older than a cutoff, the oldest first, a batch at a time; this partial index
makes each batch one range of ``(status, completed_at)`` instead of a scan of the history. Only
finished rows are in it, so a claim or a retry writes no entry; an outcome writes one.

On PostgreSQL ``CREATE INDEX`` blocks writes to ``events`` while it builds (seconds per few
million rows). Where that pause matters, build the index beforehand without blocking writes,
``CREATE INDEX CONCURRENTLY ix_events_finished ON events (status, completed_at)
WHERE status IN ('completed', 'failed')``, and this migration keeps it (docs/retention.md).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_FINISHED = sa.text("status IN ('completed', 'failed')")


def upgrade() -> None:
    op.create_index(
        "ix_events_finished",
        "events",
        ["status", "completed_at"],
        postgresql_where=_FINISHED,
        sqlite_where=_FINISHED,
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_events_finished", table_name="events")
