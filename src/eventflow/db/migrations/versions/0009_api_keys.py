"""API keys, and who sent each event.

``api_keys`` holds each key's SHA-256 (never the key), its scope, the prefix shown to its owner,
and ``revoked_at``, which every API process polls. ``events`` gains ``source``: NULL for an
event sent with a user's token, else JSON naming the key. Both are plain additions: a new table,
and a nullable column without a default (no table rewrite on PostgreSQL, no rebuild on SQLite).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_Id = sa.Uuid(as_uuid=False)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", _Id, nullable=False),
        sa.Column("user_id", _Id, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("last_used_at", sa.BigInteger, nullable=True),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_api_keys_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("uq_api_keys_hash", "api_keys", ["hash"], unique=True)
    op.create_index("ix_api_keys_user_id_id", "api_keys", ["user_id", "id"])
    op.create_index("ix_api_keys_revoked_at", "api_keys", ["revoked_at"])
    op.add_column("events", sa.Column("source", sa.Text, nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+): a batch rebuild would copy every event.
    op.drop_column("events", "source")
    op.drop_table("api_keys")
