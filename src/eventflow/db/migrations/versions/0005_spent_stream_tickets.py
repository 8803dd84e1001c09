"""Spent stream tickets, so a ticket is redeemed once in every process on the database.

Deployments with Redis record spent tickets there instead and leave this table empty.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spent_tickets",
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("nonce", name="pk_spent_tickets"),
    )


def downgrade() -> None:
    op.drop_table("spent_tickets")
