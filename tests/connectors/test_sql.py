"""sql connector on the machine's PostgreSQL and MariaDB."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from connector_helpers import Collector, Running, context, wait_for
from pydantic import ValidationError

from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard_connectors.sql import SqlSource, SqlSourceOptions, SqlTarget, SqlTargetOptions

MARIA_USER, MARIA_PW = "fy_conn_test", "maria-pw-31"


class Db:
    def __init__(self, kind: str, admin: sa.Engine, url: str, secrets: dict[str, str]) -> None:
        self.kind, self.admin, self.url, self.secrets = kind, admin, url, secrets
        self.table = f"fy_{uuid.uuid4().hex[:10]}"

    def sql(self, text: str, **params: Any) -> list[Any]:
        with self.admin.begin() as conn:
            result = conn.execute(sa.text(text), params)
            return list(result) if result.returns_rows else []

    def kill_connections(self, flow: str) -> int:
        if self.kind == "postgresql":
            rows = self.sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :a",
                a=f"flowyard:{flow}",
            )
            return len(rows)
        ids = self.sql("SELECT id FROM information_schema.processlist WHERE user = :u", u=MARIA_USER)
        for (pid,) in ids:
            self.sql(f"KILL {int(pid)}")
        return len(ids)

    def options(self, **extra: Any) -> dict[str, Any]:
        password = {"password": "${secret:DB_PW}"} if self.secrets else {}
        return {"url": self.url, **password, **extra}


@pytest.fixture(params=["postgresql", "mariadb"])
def db(
    request: pytest.FixtureRequest, require_service: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Db]:
    monkeypatch.setenv("FLOWYARD_DATA_DIR", str(tmp_path / "data"))  # the fallback watermark table
    monkeypatch.delenv("FLOWYARD_DATABASE_URL", raising=False)
    kind = request.param
    require_service(kind)
    if kind == "postgresql":
        admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
        database = Db(kind, admin, "postgresql://postgres@127.0.0.1:5432/test", {})
        stamp = "timestamp"
    else:
        admin = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/test")
        database = Db(kind, admin, f"mariadb://{MARIA_USER}@127.0.0.1:3306/test", {"DB_PW": MARIA_PW})
        database.sql(f"CREATE USER IF NOT EXISTS '{MARIA_USER}'@'%' IDENTIFIED BY '{MARIA_PW}'")
        database.sql(f"GRANT ALL ON test.* TO '{MARIA_USER}'@'%'")
        stamp = "datetime"
    database.sql(
        f"CREATE TABLE {database.table} (id integer primary key, po varchar(20) not null, "
        f"qty integer, changed_at {stamp} not null)"
    )
    yield database
    database.sql(f"DROP TABLE IF EXISTS {database.table}")
    admin.dispose()


def insert(db: Db, *rows: tuple[int, str, int, str]) -> None:
    for row in rows:
        db.sql(
            f"INSERT INTO {db.table} (id, po, qty, changed_at) VALUES (:i, :p, :q, :c)",
            i=row[0],
            p=row[1],
            q=row[2],
            c=row[3],
        )


def source(db: Db, tmp_path: Path, flow: str = "po-export", **extra: Any) -> SqlSource:
    options = SqlSourceOptions(
        **db.options(
            query=f"SELECT id, po, qty, changed_at FROM {db.table} WHERE changed_at > :watermark ORDER BY changed_at, id",
            watermark_column="changed_at",
            initial_watermark="2000-01-01 00:00:00",
            poll="200ms",
            **extra,
        )
    )
    return SqlSource(options, context(tmp_path, name=flow, **db.secrets))


def delivered(store: Collector) -> list[int]:
    ids: list[int] = []
    for m in store.messages:
        data = json.loads(m.payload)
        ids += [r["id"] for r in (data if isinstance(data, list) else [data])]
    return ids


async def test_source_batches_and_keeps_the_watermark(db: Db, tmp_path: Path) -> None:
    insert(
        db,
        (1, "PO1", 5, "2026-11-01 08:00:00"),
        (2, "PO2", 1, "2026-11-01 09:00:00"),
        (3, "PO3", 2, "2026-11-01 09:00:00"),
        (4, "PO4", 7, "2026-11-01 09:00:00"),
        (5, "PO5", 3, "2026-11-02 10:00:00"),
    )
    store = Collector()
    src = source(db, tmp_path, batch=2)
    async with Running(src, store):
        await wait_for(lambda: len(delivered(store)) == 5, what="five rows")
        insert(db, (6, "PO6", 9, "2026-11-03 11:00:00"))
        await wait_for(lambda: len(delivered(store)) == 6, what="the new row")
    assert delivered(store) == [1, 2, 3, 4, 5, 6]
    assert [len(json.loads(m.payload)) for m in store.messages] == [2, 2, 1, 1]
    first = json.loads(store.messages[0].payload)[0]
    assert first["po"] == "PO1" and first["changed_at"].startswith("2026-11-01T08:00")
    assert store.messages[0].content_type == "application/json"
    # a new source for the same flow starts from the kept watermark: nothing twice
    store2 = Collector()
    insert(db, (7, "PO7", 1, "2026-11-04 12:00:00"))
    async with Running(source(db, tmp_path, batch=2), store2):
        await wait_for(lambda: len(delivered(store2)) == 1, what="only the new row")
    assert delivered(store2) == [7]


async def test_a_source_stopped_right_after_a_store_keeps_its_watermark(db: Db, tmp_path: Path) -> None:
    """The runtime stops a source by cancelling it; landing just after a message was
    stored, the stop used to skip the watermark's save, and the next start stored the
    same rows again."""
    insert(db, (1, "PO1", 5, "2026-11-01 08:00:00"), (2, "PO2", 1, "2026-11-02 09:00:00"))

    class StopsAfterStoring(Collector):
        async def __call__(self, message: Message) -> None:
            await super().__call__(message)
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # the stop arrives now, with the message stored

    first = source(db, tmp_path, batch=1)
    with pytest.raises(asyncio.CancelledError):
        await first.poll_once(StopsAfterStoring())
    await first.close()
    store = Collector()
    async with Running(source(db, tmp_path, batch=1), store):
        await wait_for(lambda: len(delivered(store)) >= 1, what="the next row")
    assert delivered(store) == [2]


async def test_ties_are_not_skipped_when_the_store_fails_midway(db: Db, tmp_path: Path) -> None:
    insert(
        db, (1, "A", 1, "2026-11-01 09:00:00"), (2, "B", 1, "2026-11-01 09:00:00"), (3, "C", 1, "2026-11-01 09:00:00")
    )

    class FailsOnSecond(Collector):
        async def __call__(self, message: Message) -> None:
            if len(self.messages) == 1 and self.refused == 0:
                self.refused += 1
                raise RuntimeError("store down")
            await super().__call__(message)

    store = FailsOnSecond()
    async with Running(source(db, tmp_path, shape="row"), store):
        await wait_for(lambda: set(delivered(store)) == {1, 2, 3}, what="all three rows")
    ids = delivered(store)
    assert sorted(set(ids)) == [1, 2, 3] and ids[0] == 1 and store.refused == 1
    assert isinstance(json.loads(store.messages[0].payload), dict)  # shape: row


async def test_source_survives_a_killed_connection(db: Db, tmp_path: Path) -> None:
    insert(db, (1, "PO1", 5, "2026-11-01 08:00:00"))
    store = Collector()
    src = source(db, tmp_path, flow="killed-src")
    async with Running(src, store) as running:
        await wait_for(lambda: delivered(store) == [1])
        db.kill_connections("killed-src")
        insert(db, (2, "PO2", 5, "2026-11-01 09:00:00"))
        db.kill_connections("killed-src")
        await wait_for(lambda: delivered(store) == [1, 2], timeout=30, what="the row after reconnecting")
        running.check()
    assert delivered(store) == [1, 2]


async def test_target_upserts_in_one_transaction(db: Db, tmp_path: Path) -> None:
    t = SqlTarget(
        SqlTargetOptions(**db.options(table=db.table, mode="upsert", key=["id"], rows="lines")),
        context(tmp_path, **db.secrets),
    )
    data = {
        "lines": [
            {"id": 1, "po": "PO1", "qty": 2, "changed_at": "2026-11-01 08:00:00"},
            {"id": 2, "po": "PO2", "qty": 3, "changed_at": "2026-11-01 08:00:00"},
        ]
    }
    await t.send(Message(payload=data), "k1")
    data["lines"][0]["qty"] = 20
    detail = await t.send(Message(payload=json.dumps(data).encode(), content_type="application/json"), "k1")
    await t.close()
    assert detail["rows"] == 2
    assert db.sql(f"SELECT id, qty FROM {db.table} ORDER BY id") == [(1, 20), (2, 3)]


async def test_target_all_or_nothing_and_bad_rows_are_refused(db: Db, tmp_path: Path) -> None:
    t = SqlTarget(SqlTargetOptions(**db.options(table=db.table)), context(tmp_path, **db.secrets))
    rows = [
        {"id": 1, "po": "A", "qty": 1, "changed_at": "2026-11-01 08:00:00"},
        {"id": 2, "po": None, "qty": 1, "changed_at": "2026-11-01 08:00:00"},
    ]  # po is NOT NULL
    with pytest.raises(DeliveryError) as caught:
        await t.send(Message(payload=rows), "k")
    assert not caught.value.retryable and "refused the rows" in str(caught.value)
    assert db.sql(f"SELECT count(*) FROM {db.table}") == [(0,)]  # the first row was rolled back
    with pytest.raises(DeliveryError, match=r"has no column\(s\) colour"):
        await t.send(Message(payload={"id": 3, "po": "B", "colour": "red"}), "k")
    with pytest.raises(DeliveryError, match="not JSON rows"):
        await t.send(Message(payload=b"{oops", content_type="application/json"), "k")
    await t.close()


async def test_target_survives_a_killed_connection(db: Db, tmp_path: Path) -> None:
    ctx = context(tmp_path, name="killed-tgt", **db.secrets)
    t = SqlTarget(SqlTargetOptions(**db.options(table=db.table)), ctx)
    await t.send(Message(payload={"id": 1, "po": "A", "qty": 1, "changed_at": "2026-11-01 08:00:00"}), "k1")
    assert db.kill_connections("killed-tgt") >= 1
    await t.send(Message(payload={"id": 2, "po": "B", "qty": 1, "changed_at": "2026-11-01 08:00:00"}), "k2")
    await t.close()
    assert db.sql(f"SELECT id FROM {db.table} ORDER BY id") == [(1,), (2,)]


async def test_bad_credentials_are_clear(db: Db, tmp_path: Path) -> None:
    if db.kind == "postgresql":  # trust authentication here: a missing role is the refusal
        url = "postgresql://no_such_role_fy@127.0.0.1:5432/test"
        secrets: dict[str, str] = {}
    else:
        url, secrets = db.url, {"DB_PW": "wrong-password-x"}
    options = {"url": url, **({"password": "${secret:DB_PW}"} if secrets else {})}
    t = SqlTarget(SqlTargetOptions(**options, table=db.table), context(tmp_path, **secrets))
    with pytest.raises(DeliveryError) as caught:
        await t.send(Message(payload={"id": 1}), "k")
    await t.close()
    assert "refused the credentials" in str(caught.value) and not caught.value.retryable
    assert "wrong-password-x" not in str(caught.value)
    src = SqlSource(
        SqlSourceOptions(**options, query="SELECT 1 AS w WHERE 1 > :watermark", watermark_column="w"),
        context(tmp_path, **secrets),
    )
    async with Running(src, Collector()):
        await wait_for(lambda: src.health.last_error is not None)
    assert "refused the credentials" in (src.health.last_error or "")


async def test_runtime_state_service_is_used_when_offered(db: Db, tmp_path: Path) -> None:
    class MemoryState:
        def __init__(self) -> None:
            self.values: dict[str, str] = {}

        async def get(self, key: str) -> str | None:
            return self.values.get(key)

        async def set(self, key: str, value: str) -> None:
            self.values[key] = value

    state = MemoryState()
    insert(db, (1, "PO1", 5, "2026-11-01 08:00:00"))
    src = source(db, tmp_path)
    src.state.store = state
    store = Collector()
    async with Running(src, store):
        await wait_for(lambda: delivered(store) == [1])
        await wait_for(lambda: bool(state.values))
    assert list(state.values) == ["sql-source:po-export:watermark"]
    assert json.loads(state.values["sql-source:po-export:watermark"]).startswith("2026-11-01T08:00")


def test_options_refuse_passwords_in_urls() -> None:
    with pytest.raises(ValidationError, match="password"):
        SqlTargetOptions(url="postgresql://u:secret@db/x", table="t")
    with pytest.raises(ValidationError, match=":watermark"):
        SqlSourceOptions(url="postgresql://u@db/x", query="SELECT 1", watermark_column="a")


async def test_a_wrong_query_is_reported_as_such(db: Db, tmp_path: Path) -> None:
    src = source(db, tmp_path)
    src.options = src.options.model_copy(update={"query": f"SELECT * FROM {db.table}_missing WHERE id > :watermark"})
    async with Running(src, Collector()):
        await wait_for(lambda: src.health.last_error is not None)
    assert "the query failed" in (src.health.last_error or "") and "_missing" in (src.health.last_error or "")
