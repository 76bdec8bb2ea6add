"""fy_source_keys: upstream item identities, so a re-sent item is stored once

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 01:30:00
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
        "fy_source_keys",
        sa.Column("flow", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("flow", "key", name=op.f("pk_fy_source_keys")),
    )
    op.create_index(op.f("ix_fy_source_keys_created_at"), "fy_source_keys", ["created_at"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_fy_source_keys_created_at"), table_name="fy_source_keys")
    op.drop_table("fy_source_keys")
