"""Engines with their schema up to date: one per database URL per process, and a
throw-away store for trying flows."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import Engine

from .database import database_url, make_engine
from .migrations import upgrade

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    """One engine per URL per process, with the schema brought up to date once."""
    url = url or database_url()
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = make_engine(url)
            ensure_schema(engine)
            _engines[url] = engine
        return engine


def ensure_schema(engine: Engine) -> None:
    """Bring the database schema up to date (the Alembic migrations)."""
    upgrade(engine)


@contextmanager
def scratch_store() -> Iterator[str]:
    """Point the process at a throw-away SQLite store for the duration.

    `flowyard test` and `flowyard run --dry-run` use it, so trying a flow never spends
    the real X12 control numbers nor records interchanges as already received.
    """
    previous = os.environ.get("FLOWYARD_DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="flowyard-scratch-") as folder:
        url = f"sqlite:///{Path(folder) / 'scratch.db'}"
        os.environ["FLOWYARD_DATABASE_URL"] = url
        try:
            yield url
        finally:
            dispose_engine(url)
            if previous is None:
                os.environ.pop("FLOWYARD_DATABASE_URL", None)
            else:
                os.environ["FLOWYARD_DATABASE_URL"] = previous


def dispose_engine(url: str) -> None:
    """Close and forget the engine `get_engine` made for `url`, if any."""
    with _lock:
        engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()
