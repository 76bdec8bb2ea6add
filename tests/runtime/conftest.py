"""Fixtures for the runtime tests: a store on SQLite in a temporary folder, or on the
machine's PostgreSQL in a database this test session creates and drops, and a recording
HTTP target. Plain helpers live in rthelp.py (this folder is put on sys.path)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rthelp import PG_ADMIN, RecordingServer

from flowyard.store.api import Store
from flowyard.store.database import make_engine
from flowyard.store.migrations import upgrade


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own data directory (source locks, materialized deployments)."""
    folder = tmp_path / "data"
    monkeypatch.setenv("FLOWYARD_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    yield Store(engine)
    engine.dispose()


class PgDatabases:
    """Databases created by this session on the local PostgreSQL, dropped at its end."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def create(self) -> str:
        import psycopg

        name = f"fy_rt_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN.replace("postgresql://", "postgresql://"),
                             autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return f"postgresql://postgres@127.0.0.1:5432/{name}"

    def drop_all(self) -> None:
        import psycopg

        try:
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                for name in self.names:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.OperationalError:
            pass


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    dbs = PgDatabases()
    yield dbs
    dbs.drop_all()


@pytest.fixture
def pg_url(require_service: Callable[[str], Any], pg_databases: PgDatabases) -> str:
    require_service("postgresql")
    return pg_databases.create()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    engine = make_engine(pg_url)
    upgrade(engine)
    yield Store(engine)
    engine.dispose()


@pytest.fixture
def http_target() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


