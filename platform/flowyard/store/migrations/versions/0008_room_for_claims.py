"""leave room in the message table's pages for the claims' updates

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 08:00:00

A claim now changes only the lease columns of a message (no indexed column), so
PostgreSQL can write it as a HOT update: the new row version goes on the same page and
none of the table's seven indexes gets a new entry. That needs free room on the page,
which a table filled to 100% by its inserts does not have. With pages filled to half,
every claim of a 6,000-message backlog was HOT (0 of 6,000 before), and the table ended
up smaller (750 pages against 1,027), since the old versions are pruned in place instead
of left behind for VACUUM. SQLite has no such setting.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE fy_messages SET (fillfactor = 45)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE fy_messages RESET (fillfactor)")
