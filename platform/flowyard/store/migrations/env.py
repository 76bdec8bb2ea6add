"""Alembic environment: runs on the connection `flowyard.store.migrations.upgrade`
passes in, against the metadata of every module that declares tables on Base."""

from __future__ import annotations

from alembic import context

from flowyard.store.database import Base
from flowyard.store.migrations import VERSION_TABLE, import_models

import_models()
connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
