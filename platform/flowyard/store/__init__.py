"""The durable store: deployments, messages, deliveries, attempts, step traces and dead
letters, on SQLite (embedded default) or PostgreSQL (FLOWYARD_DATABASE_URL).

`flowyard.store.models` declares the tables on `flowyard.store.database.Base`; `flowyard.store.api`
is the query and command API the runtime, the CLI and the web UI share;
`flowyard.store.migrations` brings any database up to date with Alembic.
"""
