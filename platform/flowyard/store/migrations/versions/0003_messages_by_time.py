"""index fy_messages.created_at (the runs page lists newest first, unfiltered)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 23:35:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fy_messages", schema=None) as batch_op:
        batch_op.create_index("ix_fy_messages_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fy_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_fy_messages_created_at")
