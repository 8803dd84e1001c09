"""Initial schema: users, events, attempts.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_Id = sa.Uuid(as_uuid=False)
_BigSerial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_ACTIVE = sa.text("status IN ('queued', 'retrying', 'scheduled')")
_PROCESSING = sa.text("status = 'processing'")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", _Id, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_table(
        "events",
        sa.Column("id", _Id, nullable=False),
        sa.Column("user_id", _Id, nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempt_base", sa.Integer, nullable=False, server_default="0"),
        sa.Column("available_at", sa.BigInteger, nullable=False),
        sa.Column("lease_until", sa.BigInteger, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("dispatched_at", sa.BigInteger, nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("completed_at", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_events_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_events_user_id_id", "events", ["user_id", "id"])
    op.create_index("ix_events_user_id_status_id", "events", ["user_id", "status", "id"])
    op.create_index("ix_events_user_id_type_id", "events", ["user_id", "type", "id"])
    op.create_index("ix_events_user_id_completed_at", "events", ["user_id", "completed_at"])
    op.create_index(
        "uq_events_user_id_idempotency_key",
        "events",
        ["user_id", "idempotency_key"],
        unique=True,
    )
    op.create_index(
        "ix_events_due",
        "events",
        ["available_at"],
        postgresql_where=_ACTIVE,
        sqlite_where=_ACTIVE,
    )
    op.create_index(
        "ix_events_lease",
        "events",
        ["lease_until"],
        postgresql_where=_PROCESSING,
        sqlite_where=_PROCESSING,
    )
    op.create_table(
        "attempts",
        sa.Column("id", _BigSerial, nullable=False, autoincrement=True),
        sa.Column("event_id", _Id, nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_attempts"),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name="fk_attempts_event_id_events", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_attempts_event_id_number", "attempts", ["event_id", "number"])


def downgrade() -> None:
    op.drop_table("attempts")
    op.drop_table("events")
    op.drop_table("users")
