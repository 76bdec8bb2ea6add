"""connector state (the sql source's watermark), declared by flowyard.store.connector_state

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 00:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Databases made before this revision may hold the table already: the store created
    # undeclared-by-migration tables from their model until now.
    if sa.inspect(op.get_bind()).has_table("connector_state"):
        return
    op.create_table(
        "connector_state",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_connector_state")),
    )


def downgrade() -> None:
    op.drop_table("connector_state")
