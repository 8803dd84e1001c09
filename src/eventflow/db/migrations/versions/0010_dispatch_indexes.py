"""The dispatcher's scans read the work they find, not the whole waiting queue.

``ix_events_due`` held every waiting row (queued, retrying and scheduled) by ``available_at``.
Each dispatcher pass (four a second) asked it two questions whose answers are usually "none":
which scheduled events have come due, and which ready events have no hint in the broker. With
a backlog of 100,000 queued events each of those scans walked all 100,000 entries to prove
there were none: 15 ms and 20 ms of PostgreSQL's time every pass, growing with the backlog
(a million queued events kept a core busy with it).

It is split, and one index is added, so that every pass reads only rows it acts on:

- ``ix_events_ready`` (``available_at``) holds the claimable rows, queued and retrying: what
  workers claim (the ``sql`` broker) and the queue depth counts.
- ``ix_events_scheduled`` (``available_at``) holds the delayed rows: what a promotion moves.
- ``ix_events_unhinted`` (``available_at``) holds the claimable rows with no hint stamped:
  retries, promoted and released events, and those whose publish failed. A new event is stamped
  in the transaction that stores it, so ingest writes no entry here.

A row is in at most one of the first two, as it was in ``ix_events_due``, and in the third only
between losing its hint and being published again.

On PostgreSQL ``CREATE INDEX`` blocks writes to ``events`` while it builds (seconds per few
million waiting rows; completed rows are in none of these indexes). Where that pause matters,
build the three beforehand without blocking writes and this migration keeps them::

    CREATE INDEX CONCURRENTLY ix_events_ready ON events (available_at)
        WHERE status IN ('queued', 'retrying');
    CREATE INDEX CONCURRENTLY ix_events_scheduled ON events (available_at)
        WHERE status = 'scheduled';
    CREATE INDEX CONCURRENTLY ix_events_unhinted ON events (available_at)
        WHERE dispatched_at IS NULL AND status IN ('queued', 'retrying');

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_READY = "status IN ('queued', 'retrying')"
_INDEXES = {
    "ix_events_ready": _READY,
    "ix_events_scheduled": "status = 'scheduled'",
    "ix_events_unhinted": f"dispatched_at IS NULL AND {_READY}",
}
_DUE = sa.text("status IN ('queued', 'retrying', 'scheduled')")


def upgrade() -> None:
    for name, where in _INDEXES.items():
        op.create_index(
            name,
            "events",
            ["available_at"],
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
            if_not_exists=True,
        )
    op.drop_index("ix_events_due", table_name="events", if_exists=True)


def downgrade() -> None:
    op.create_index(
        "ix_events_due", "events", ["available_at"], postgresql_where=_DUE, sqlite_where=_DUE
    )
    for name in _INDEXES:
        op.drop_index(name, table_name="events")
