"""Sessions that can end and accounts operators control.

``users`` gains ``token_generation`` (tokens carry it; bumping it ends every older token),
``disabled_at``, ``deleted_at`` (a deleted account stays as a tombstone) and ``updated_at``,
which every API process polls to learn about changes made elsewhere. ``revoked_tokens`` holds
signed-out sessions until their token would have expired anyway. Existing accounts keep their
sessions: their tokens carry no generation, which counts as generation 0.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_Id = sa.Uuid(as_uuid=False)


def upgrade() -> None:
    # Plain ADD COLUMNs (server defaults for the NOT NULL ones): no table rebuild on SQLite,
    # which would have to copy every user and re-check the events' foreign key.
    op.add_column(
        "users", sa.Column("token_generation", sa.Integer, nullable=False, server_default="0")
    )
    op.add_column("users", sa.Column("disabled_at", sa.BigInteger, nullable=True))
    op.add_column("users", sa.Column("deleted_at", sa.BigInteger, nullable=True))
    op.add_column(
        "users", sa.Column("updated_at", sa.BigInteger, nullable=False, server_default="0")
    )
    op.execute("UPDATE users SET updated_at = created_at")
    op.create_index("ix_users_updated_at", "users", ["updated_at"])
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("user_id", _Id, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("jti", name="pk_revoked_tokens"),
    )
    op.create_index("ix_revoked_tokens_revoked_at", "revoked_tokens", ["revoked_at"])
    op.create_index("ix_revoked_tokens_expires_at", "revoked_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_table("revoked_tokens")
    op.drop_index("ix_users_updated_at", table_name="users")
    # Plain DROP COLUMNs (SQLite 3.35+): a batch rebuild would drop ``users`` on SQLite, and
    # its foreign key cascades to every event.
    for column in ("updated_at", "deleted_at", "disabled_at", "token_generation"):
        op.drop_column("users", column)
