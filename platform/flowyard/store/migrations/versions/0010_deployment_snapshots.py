"""deployments are snapshots: the files a flow uses (content-addressed), the git commit,
the last refused deploy per flow, and what each worker runs

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 01:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fy_deploy_files",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_fy_deploy_files")),
    )
    with op.batch_alter_table("fy_deployments") as batch:
        batch.add_column(sa.Column("files", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("flow_file", sa.String(length=500), nullable=False, server_default=""))
        batch.add_column(sa.Column("git_commit", sa.String(length=64), nullable=False, server_default=""))
    with op.batch_alter_table("fy_flows") as batch:
        batch.add_column(sa.Column("refused", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("refused_at", sa.Float(), nullable=True))
    op.create_table(
        "fy_flow_runs",
        sa.Column("worker", sa.String(length=200), nullable=False),
        sa.Column("flow", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("worker", "flow", name=op.f("pk_fy_flow_runs")),
    )


def downgrade() -> None:
    op.drop_table("fy_flow_runs")
    with op.batch_alter_table("fy_flows") as batch:
        batch.drop_column("refused_at")
        batch.drop_column("refused")
    with op.batch_alter_table("fy_deployments") as batch:
        batch.drop_column("git_commit")
        batch.drop_column("flow_file")
        batch.drop_column("files")
    op.drop_table("fy_deploy_files")
