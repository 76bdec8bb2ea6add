"""cheaper writes of messages and deliveries on PostgreSQL

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 08:00:00

- Room in the message table's pages for the claims' updates. A claim now changes only
  the lease columns of a message (no indexed column), so PostgreSQL can write it as a
  HOT update: the new row version goes on the same page and none of the table's seven
  indexes gets a new entry. That needs free room on the page, which a table filled to
  100% by its inserts does not have. With pages filled to 45%, every claim of a
  6,000-message backlog was HOT (none before), and the table ended up smaller (858
  pages against 1,027), since old versions are pruned in place instead of left for
  VACUUM.
- Partial indexes where nearly every row had an entry it never needed: `replay_of` is
  looked up by value only (most messages are no replay, and each of their row versions
  put a NULL into the index), and the deliveries' (state, next_at) index serves only the
  open deliveries (pending or sending; a done delivery is never looked up by state).

SQLite keeps its full indexes: its planner uses a partial index only where a query
states the index's condition literally.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PARTIAL = (
    ("ix_fy_messages_replay_of", "fy_messages", "replay_of", "replay_of IS NOT NULL"),
    ("ix_fy_deliveries_state_next", "fy_deliveries", "state, next_at",
     "state IN ('pending', 'sending')"),
)


def upgrade() -> None:
    _set(fillfactor="SET (fillfactor = 45)", partial=True)


def downgrade() -> None:
    _set(fillfactor="RESET (fillfactor)", partial=False)


def _set(fillfactor: str, partial: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE fy_messages {fillfactor}")
    for name, table, columns, where in PARTIAL:
        op.execute(f"DROP INDEX {name}")
        op.execute(f"CREATE INDEX {name} ON {table} ({columns})" + (f" WHERE {where}" if partial else ""))
