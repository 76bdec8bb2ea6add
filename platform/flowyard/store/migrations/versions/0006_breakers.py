"""fy_breakers: circuit breakers shared by the workers of one store

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 01:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fy_breakers",
        sa.Column("endpoint", sa.String(length=500), nullable=False),
        sa.Column("open_until", sa.Float(), nullable=False),
        sa.Column("cooldown", sa.Float(), nullable=False),
        sa.Column("opened_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("endpoint", name=op.f("pk_fy_breakers")),
    )


def downgrade() -> None:
    op.drop_table("fy_breakers")
