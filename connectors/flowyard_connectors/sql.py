"""sql: read new rows by a watermark column, insert or upsert rows (SQLAlchemy).

Source: runs `query` every `poll` with the bind parameter `:watermark` set to the last
value seen, for example `SELECT ... WHERE changed_at > :watermark ORDER BY changed_at`.
Rows become messages of `batch` rows each (a JSON array), or one message per row with
`shape: row`. The watermark is saved (see `state`) after a message is stored and only
where the watermark value changes between two rows, so rows sharing a value are never
skipped after a restart; at worst a few are delivered again.

Target: inserts or upserts the rows of a message (the data itself, or what `rows`
selects from it) into `table`, all rows of one message in one transaction: either the
whole message is in the database or none of it. Upsert uses the database's own statement
(PostgreSQL ON CONFLICT, MariaDB/MySQL ON DUPLICATE KEY, SQLite ON CONFLICT).

The URL names the database without a password (`postgresql://erp@db.plant:5432/erp`,
`mariadb://mes@db/mes`); the password is a secret reference.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import decimal
import json
import uuid
from datetime import timedelta
from typing import Any, Literal

import jmespath
import sqlalchemy as sa
from pydantic import Field, field_validator
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url

from flowyard.connector import Accept, Connector, Source, Target
from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard.options import Duration, Options, SecretRef
from flowyard.secrets import redactor
from flowyard.services import SourceState
from flowyard.step import FlowContext

from .backoff import keep_running

DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mariadb": "mysql+pymysql",
    "mysql": "mysql+pymysql",
}
AUTH_HINTS = ("password authentication failed", "access denied", "authentication failed", 'role "')


class SqlConnection(Options):
    url: str = Field(description="database URL without password, e.g. postgresql://erp@db:5432/erp")
    password: SecretRef | None = Field(None, description="the database password, as ${secret:NAME}")
    connect_timeout: Duration = Field(timedelta(seconds=10), description="time allowed to connect")

    @field_validator("url")
    @classmethod
    def _no_password(cls, value: str) -> str:
        try:
            url = make_url(value)
        except Exception as exc:
            raise ValueError(f"not a database URL: {exc}") from exc
        if url.password:
            raise ValueError("do not write the password in the URL; use password: ${secret:NAME}")
        if url.get_backend_name() not in (*DRIVERS, "sqlite"):
            raise ValueError("the URL must be postgresql://, mariadb://, mysql:// or sqlite://")
        return value


class SqlSourceOptions(SqlConnection):
    query: str = Field(description="SELECT with :watermark, ordered by the watermark column")
    watermark_column: str = Field(description="column whose largest value seen is remembered")
    initial_watermark: str | int | float = Field(0, description="watermark before the first row was read")
    batch: int = Field(100, ge=1, le=100_000, description="rows per message (shape: rows)")
    shape: Literal["rows", "row"] = Field("rows", description="rows: a JSON array per batch; row: one message per row")
    poll: Duration = Field(timedelta(seconds=60), description="how often to run the query")
    state_key: str | None = Field(None, description="name under which the watermark is kept (default: the flow's name)")
    content_type: Literal["application/json"] = Field("application/json", description="rows are JSON")

    @field_validator("query")
    @classmethod
    def _has_watermark(cls, value: str) -> str:
        if ":watermark" not in value:
            raise ValueError("the query must use :watermark, e.g. WHERE changed_at > :watermark ORDER BY changed_at")
        return value


class SqlTargetOptions(SqlConnection):
    table: str = Field(description="table to write to (schema.table allowed)")
    mode: Literal["insert", "upsert"] = Field("insert", description="insert, or upsert on the key columns")
    key: list[str] = Field(default_factory=list, description="key columns for upsert (a unique or primary key)")
    rows: str | None = Field(None, description="JMESPath selecting the rows from the data (default: the data)")

    @field_validator("rows")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                jmespath.compile(value)
            except jmespath.exceptions.JMESPathError as exc:
                raise ValueError(f"rows: {exc}") from exc
        return value


def make_engine(options: SqlConnection, context: FlowContext) -> Engine:
    url: URL = make_url(options.url)
    backend = url.get_backend_name()
    if url.drivername in DRIVERS:
        url = url.set(drivername=DRIVERS[url.drivername])
    if options.password:
        url = url.set(password=context.secrets.resolve(options.password))
    timeout = max(1, int(options.connect_timeout.total_seconds()))
    connect_args: dict[str, Any] = {}
    if backend in ("postgresql", "postgres"):
        connect_args = {"connect_timeout": timeout, "application_name": f"flowyard:{context.flow_name}"[:63]}
    elif backend in ("mariadb", "mysql"):
        connect_args = {"connect_timeout": timeout}
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, connect_args=connect_args)


def to_json(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)  # keeps every digit of an amount
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID | dt.timedelta):
        return str(value)
    return value


def describe(exc: BaseException, options: SqlConnection, reading: bool = False) -> tuple[str, bool]:
    """An analyst-readable text and whether trying again may help."""
    url = make_url(options.url)
    where = f"{url.get_backend_name()} database {url.database or ''} on {url.host or 'localhost'}"
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = redactor.redact(text)
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        if any(h in text.lower() for h in AUTH_HINTS):
            return f"{where} refused the credentials of user {url.username!r}: {text}", False
        return f"cannot reach the {where}: {text}", True
    if isinstance(exc, sa.exc.IntegrityError | sa.exc.DataError | sa.exc.ProgrammingError):
        if reading:
            return f"the query failed on the {where}: {text}", False
        return f"the {where} refused the rows: {text}", False
    if isinstance(exc, sa.exc.NoSuchTableError):
        return f"there is no table {exc} in the {where}", False
    return f"{where}: {type(exc).__name__}: {text}", True


# ------------------------------------------------------------------------- source


class SqlSource(Source[SqlSourceOptions]):
    def __init__(self, options: SqlSourceOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.engine: Engine | None = None
        self.state = SourceState(context.services)
        self.key = f"sql-source:{options.state_key or context.flow_name}:watermark"
        self.health.details["watermark_store"] = self.state.kind

    async def watermark(self) -> Any:
        stored = await self.state.get(self.key)
        return self.options.initial_watermark if stored is None else json.loads(stored)

    async def poll_once(self, accept: Accept) -> int:
        """Run the query once; hand over every row; returns the number of rows."""
        if self.engine is None:
            self.engine = await asyncio.to_thread(make_engine, self.options, self.context)
        engine = self.engine
        mark = await self.watermark()
        column = self.options.watermark_column
        size = 1 if self.options.shape == "row" else self.options.batch
        conn = await asyncio.to_thread(engine.connect)
        result: sa.CursorResult[Any] | None = None
        try:
            result = await asyncio.to_thread(
                lambda: conn.execution_options(stream_results=True).execute(
                    sa.text(self.options.query), {"watermark": mark}
                )
            )
            self.health.ok()
            names = list(result.keys())
            if column not in names:
                raise DeliveryError(
                    f"the query gives no column {column!r} (it gives {', '.join(names)})", retryable=False
                )
            rows = _Lookahead(result, size)
            count = 0
            previous: Any = None
            while True:
                chunk = await asyncio.to_thread(rows.take)
                if not chunk:
                    break
                records = [{k: to_json(v) for k, v in row.items()} for row in chunk]
                for record in records:
                    value = record[column]
                    if previous is not None and value is not None and value < previous:
                        raise DeliveryError(
                            f"the query must ORDER BY {column}: {value!r} came after {previous!r}", retryable=False
                        )
                    previous = value
                payload: Any = records[0] if self.options.shape == "row" else records
                message = Message(
                    payload=json.dumps(payload, ensure_ascii=False).encode(),
                    content_type="application/json",
                    source={"connector": "sql", "rows": len(records), "watermark": previous},
                )
                nxt = await asyncio.to_thread(rows.peek_value, column)
                await accept(message)
                count += len(records)
                if nxt is _END or nxt != previous:  # a tie group is complete: safe to move on
                    await self.keep_watermark(previous)
            return count
        finally:
            await asyncio.to_thread(_close, result, conn)

    async def keep_watermark(self, value: Any) -> None:
        """Save the watermark of rows just stored, even when the source is being stopped
        (cancelled) meanwhile: the save finishes first. Cancelled between the store and
        the save, the next start read those rows again and stored them twice."""
        save = asyncio.ensure_future(self.state.set(self.key, json.dumps(value)))
        try:
            await asyncio.shield(save)
        except asyncio.CancelledError:
            await save
            raise

    async def session(self, accept: Accept) -> None:
        while True:
            await self.poll_once(accept)
            self.health.ok()
            await asyncio.sleep(self.options.poll.total_seconds())

    async def run(self, accept: Accept) -> None:
        await keep_running(
            lambda: self.session(accept), self.health, lambda e: describe(e, self.options, reading=True)[0]
        )

    async def close(self) -> None:
        if self.engine is not None:
            await asyncio.to_thread(self.engine.dispose)
            self.engine = None
        self.health.connected = False


_END = object()


def _close(result: sa.CursorResult[Any] | None, conn: sa.Connection) -> None:
    try:
        if result is not None:
            result.close()  # drains an unfinished streamed result before the connection goes
    finally:
        conn.close()


class _Lookahead:
    """Fetches rows in chunks, keeping the next row to see whether a tie goes on."""

    def __init__(self, result: sa.CursorResult[Any], size: int) -> None:
        self.result = result
        self.size = size
        self.buffer: list[dict[str, Any]] = []

    def _fill(self, want: int) -> None:
        while len(self.buffer) < want:
            more = self.result.mappings().fetchmany(max(want - len(self.buffer), self.size))
            if not more:
                break
            self.buffer.extend(dict(m) for m in more)

    def take(self) -> list[dict[str, Any]]:
        self._fill(self.size)
        chunk, self.buffer = self.buffer[: self.size], self.buffer[self.size :]
        return chunk

    def peek_value(self, column: str) -> Any:
        self._fill(1)
        return to_json(self.buffer[0][column]) if self.buffer else _END


# ------------------------------------------------------------------------- target


class SqlTarget(Target[SqlTargetOptions]):
    def __init__(self, options: SqlTargetOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.engine: Engine | None = None
        self.table: sa.Table | None = None
        self.rows_expr = jmespath.compile(options.rows) if options.rows else None

    def prepare(self) -> tuple[Engine, sa.Table]:
        if self.engine is None:
            self.engine = make_engine(self.options, self.context)
        if self.table is None:
            schema, _, name = self.options.table.rpartition(".")
            self.table = sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=self.engine)
            missing = [k for k in self.options.key if k not in self.table.c]
            if missing:
                raise DeliveryError(
                    f"key column(s) {', '.join(missing)} not in table {self.options.table}", retryable=False
                )
        return self.engine, self.table

    def rows_of(self, message: Message) -> list[dict[str, Any]]:
        data = message.payload
        if message.is_bytes:
            try:
                data = json.loads(message.payload)
            except ValueError as exc:
                raise DeliveryError(f"the message is not JSON rows: {exc}", retryable=False) from exc
        if self.rows_expr is not None:
            data = self.rows_expr.search(data)
        rows = [data] if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DeliveryError("the rows must be an object or a list of objects (column: value)", retryable=False)
        return rows

    def statement(self, table: sa.Table, columns: list[str]) -> Any:
        if self.options.mode == "insert":
            return table.insert()
        key = self.options.key or [c.name for c in table.primary_key.columns]
        if not key:
            raise DeliveryError(
                f"upsert needs `key` columns: table {self.options.table} has no primary key", retryable=False
            )
        dialect = self.engine.dialect.name if self.engine else ""
        update = [c for c in columns if c not in key]
        if dialect == "postgresql" or dialect == "sqlite":
            module: Any = postgresql if dialect == "postgresql" else sqlite
            stmt = module.insert(table)
            if not update:
                return stmt.on_conflict_do_nothing(index_elements=key)
            return stmt.on_conflict_do_update(index_elements=key, set_={c: stmt.excluded[c] for c in update})
        if dialect in ("mysql", "mariadb"):
            stmt = mysql.insert(table)
            update = update or key
            return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in update})
        raise DeliveryError(f"upsert is not supported on {dialect}", retryable=False)

    def write(self, rows: list[dict[str, Any]]) -> int:
        engine, table = self.prepare()
        unknown = sorted({c for r in rows for c in r} - set(table.c.keys()))
        if unknown:
            raise DeliveryError(f"table {self.options.table} has no column(s) {', '.join(unknown)}", retryable=False)
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(sorted(row)), []).append(row)
        with engine.begin() as conn:  # one transaction for the whole message
            for columns, group in groups.items():
                conn.execute(self.statement(table, list(columns)), group)
        return len(rows)

    async def send(self, message: Message, idempotency_key: str) -> dict[str, Any]:
        rows = self.rows_of(message)
        try:
            written = await asyncio.to_thread(self.write, rows)
        except DeliveryError as exc:
            self.health.failed(str(exc))
            raise
        except sa.exc.SQLAlchemyError as exc:
            text, retryable = describe(exc, self.options)
            if retryable:
                self.table = None  # look at the table again after reconnecting
            self.health.failed(text)
            raise DeliveryError(text, retryable=retryable) from exc
        self.health.ok()
        return {"table": self.options.table, "rows": written, "mode": self.options.mode}

    async def close(self) -> None:
        if self.engine is not None:
            await asyncio.to_thread(self.engine.dispose)
            self.engine = None


class SqlConnector(Connector):
    """SQL databases: a watermark query as a source, insert or upsert as a target."""

    kind = "sql"
    SourceOptions = SqlSourceOptions
    TargetOptions = SqlTargetOptions
    source_class = SqlSource
    target_class = SqlTarget
