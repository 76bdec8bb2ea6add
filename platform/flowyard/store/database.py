"""The store's database: one SQLAlchemy declarative base for every module's tables.

SQLite (WAL, synchronous=FULL) under the data directory is the embedded default;
PostgreSQL is used when FLOWYARD_DATABASE_URL says so. Modules define their tables on
`Base` (runtime store, X12 control numbers, UI users...) and the Alembic migrations in
`flowyard.store.migrations` create them; `flowyard.store.engines` hands out engines with
their schema up to date.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

from ..errors import FlowyardError

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def data_dir() -> Path:
    """Where the embedded store, secrets and runtime state live (FLOWYARD_DATA_DIR)."""
    return Path(os.environ.get("FLOWYARD_DATA_DIR", ".flowyard")).resolve()


def database_url() -> str:
    url = os.environ.get("FLOWYARD_DATABASE_URL")
    if url:
        return url
    directory = data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'flowyard.db'}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit survives power loss, at the cost of one more fsync per commit.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_encode_json = msgspec.json.Encoder(enc_hook=str).encode
_decode_json = msgspec.json.decode


def json_text(value: Any) -> str:
    """JSON columns are written with msgspec: every message, delivery and attempt carries
    a few of them, and json.dumps was a visible part of a worker's CPU. Compact UTF-8;
    anything that is not JSON is written as its text."""
    return _encode_json(value).decode()


def json_value(text: str | bytes) -> Any:
    """JSON columns are read with msgspec too: a claim reads two per message (source and
    headers), and json.loads took 4.5-6 us for each against 0.2-0.4. What msgspec
    refuses goes to json.loads, which also reads what json.dumps wrote before (NaN)."""
    try:
        return _decode_json(text)
    except msgspec.DecodeError:
        return json.loads(text)


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    url = url or database_url()
    kwargs.setdefault("json_serializer", json_text)
    kwargs.setdefault("json_deserializer", json_value)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True, **kwargs)
    except ModuleNotFoundError as exc:
        extra = "postgresql" if url.startswith("postgresql") else "sql"
        raise FlowyardError(
            f"the store at {url.split('://', 1)[0]}:// needs the database driver {exc.name!r}, which is not "
            f"installed: pip install 'flowyard[{extra}]'"
        ) from exc
