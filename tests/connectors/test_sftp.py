"""sftp connector against asyncssh's own SFTP server, started by the test on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from brokers import PASSWORD, SftpServer
from connector_helpers import JSON_FLOW, Collector, Running, context, pipeline_result, wait_for
from pydantic import ValidationError

from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard_connectors.sftp import SftpSource, SftpSourceOptions, SftpTarget, SftpTargetOptions


@pytest.fixture
async def server(tmp_path: Path) -> Any:
    root = tmp_path / "remote"
    (root / "outbound").mkdir(parents=True)
    (root / "inbound").mkdir()
    srv = await SftpServer(root, asyncssh.generate_private_key("ssh-ed25519")).start()
    yield srv
    await srv.stop()


def conn(srv: SftpServer, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": srv.port,
        "username": "mx01",
        "password": "${secret:SFTP_PW}",
        "host_key": srv.host_key_line,
        **extra,
    }


def source(srv: SftpServer, tmp_path: Path, pw: str = PASSWORD, **extra: Any) -> SftpSource:
    values = {"path": "/outbound", "pattern": "*.856", "poll": "100ms", "settle": "200ms", **extra}
    options = SftpSourceOptions(**conn(srv, **values))
    return SftpSource(options, context(tmp_path, SFTP_PW=pw))


async def test_source_takes_settled_files_and_archives_after_accept(server: SftpServer, tmp_path: Path) -> None:
    out = server.root / "outbound"
    (out / "a.856").write_bytes(b"ISA*first~")
    (out / "b.txt").write_bytes(b"not matching")
    (out / ".c.856").write_bytes(b"hidden temp")
    os.symlink(server.root / "inbound", out / "link.856")
    store = Collector()
    async with Running(source(server, tmp_path), store):
        await wait_for(lambda: len(store.messages) == 1, what="the first file")
        (out / "z.856").write_bytes(b"ISA*second~")
        await wait_for(lambda: len(store.messages) == 2, what="the second file")
        await wait_for(lambda: (out / "archive" / "z.856").exists(), what="the archive")
    assert store.payloads == [b"ISA*first~", b"ISA*second~"]
    assert store.messages[0].source["file"] == "/outbound/a.856"
    assert store.messages[0].content_type == "application/edi-x12"
    assert sorted(p.name for p in (out / "archive").iterdir()) == ["a.856", "z.856"]
    assert (out / "b.txt").exists() and (out / ".c.856").exists()


async def test_source_waits_for_a_growing_file(server: SftpServer, tmp_path: Path) -> None:
    out = server.root / "outbound"
    growing = out / "big.856"
    growing.write_bytes(b"part1")
    store = Collector()
    src = source(server, tmp_path, settle="1s", after="delete")
    async with Running(src, store):
        for i in range(4):  # keeps changing for longer than settle
            await asyncio.sleep(0.4)
            with growing.open("ab") as handle:
                handle.write(f"-more{i}".encode())
        await wait_for(lambda: len(store.messages) == 1, what="the settled file")
        await wait_for(lambda: not growing.exists(), what="the delete")
    assert store.payloads == [b"part1-more0-more1-more2-more3"]
    assert not growing.exists()


async def test_store_down_leaves_the_file_then_takes_it(server: SftpServer, tmp_path: Path) -> None:
    out = server.root / "outbound"
    (out / "a.856").write_bytes(b"one")
    store = Collector()
    store.fail = True
    src = source(server, tmp_path)
    async with Running(src, store):
        await wait_for(lambda: store.refused >= 1, what="a refused hand-over")
        assert (out / "a.856").exists()  # not archived while not stored
        store.fail = False
        await wait_for(lambda: len(store.messages) == 1, what="the file after the store came back")
        await wait_for(lambda: (out / "archive" / "a.856").exists(), what="the archive")
    assert store.payloads == [b"one"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["archive", "archive/a.856"]


async def test_server_goes_away_and_comes_back_nothing_lost(server: SftpServer, tmp_path: Path) -> None:
    out = server.root / "outbound"
    store = Collector()
    src = source(server, tmp_path)
    async with Running(src, store) as running:
        (out / "1.856").write_bytes(b"one")
        await wait_for(lambda: (out / "archive" / "1.856").exists())
        await server.stop()
        (out / "2.856").write_bytes(b"two")
        await wait_for(lambda: src.health.connected is False, what="the source to notice")
        await asyncio.sleep(0.5)
        await server.start()
        await wait_for(lambda: len(store.messages) == 2, timeout=30, what="the file after the restart")
        running.check()
        assert src.health.connected and src.health.last_error is not None
    assert store.payloads == [b"one", b"two"]


async def test_bad_password_and_unknown_host_key_are_clear(server: SftpServer, tmp_path: Path) -> None:
    store = Collector()
    src = source(server, tmp_path, pw="wrong-password")
    async with Running(src, store):
        await wait_for(lambda: src.health.last_error is not None)
    assert "refused the credentials of user 'mx01'" in src.health.last_error
    assert "wrong-password" not in src.health.last_error
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    t = SftpTarget(
        SftpTargetOptions(**conn(server, path="/inbound", host_key=other)), context(tmp_path, SFTP_PW=PASSWORD)
    )
    with pytest.raises(DeliveryError) as caught:
        await t.send(Message(payload=b"x"), "k")
    await t.close()
    assert "host key" in str(caught.value) and "not trusted" in str(caught.value)
    assert not caught.value.retryable
    assert list((server.root / "inbound").iterdir()) == []


async def test_target_uploads_atomically_with_key_auth(server: SftpServer, tmp_path: Path) -> None:
    key_text = server.client_key.export_private_key().decode()
    options = SftpTargetOptions(
        **conn(server, path="/inbound", password=None, private_key="${secret:KEY}", name="{{ data.po }}.850")
    )
    t = SftpTarget(options, context(tmp_path, KEY=key_text))
    message = Message(payload=b"ISA*850~", content_type="application/edi-x12")
    message.last_data = {"po": "PO-77"}
    detail = await t.send(message, "key-1")
    again = await t.send(message, "key-1")  # a retried delivery rewrites the same file
    await t.close()
    assert detail["file"] == again["file"] == "/inbound/PO-77.850"
    assert [p.name for p in (server.root / "inbound").iterdir()] == ["PO-77.850"]  # no temp left
    assert (server.root / "inbound" / "PO-77.850").read_bytes() == b"ISA*850~"


async def test_target_names_cannot_escape(server: SftpServer, tmp_path: Path) -> None:
    os.symlink(server.root / "outbound", server.root / "inbound" / "elsewhere")
    for name in ["../outbound/x.edi", "/etc/passwd", "a/../../x", "elsewhere/x.edi"]:
        options = SftpTargetOptions(**conn(server, path="/inbound", name=name))
        t = SftpTarget(options, context(tmp_path, SFTP_PW=PASSWORD))
        with pytest.raises(DeliveryError) as caught:
            await t.send(Message(payload=b"x"), "k")
        await t.close()
        assert not caught.value.retryable, name
        assert "leave" in str(caught.value) or "relative" in str(caught.value) or "link" in str(caught.value)
    assert list((server.root / "outbound").iterdir()) == []


async def test_target_server_down_is_retryable_then_delivers(server: SftpServer, tmp_path: Path) -> None:
    t = SftpTarget(
        SftpTargetOptions(**conn(server, path="/inbound", name="x.edi", connect_timeout="3s")),
        context(tmp_path, SFTP_PW=PASSWORD),
    )
    await t.send(Message(payload=b"v1"), "k1")
    await server.stop()
    with pytest.raises(DeliveryError) as caught:
        await t.send(Message(payload=b"v2"), "k2")
    assert caught.value.retryable
    await server.start()
    await t.send(Message(payload=b"v2"), "k2")
    await t.close()
    assert (server.root / "inbound" / "x.edi").read_bytes() == b"v2"


async def test_malformed_file_is_handed_over_for_the_dead_letters(server: SftpServer, tmp_path: Path) -> None:
    out = server.root / "outbound"
    (out / "bad.json").write_bytes(b"{not json")
    store = Collector()
    src = SftpSource(
        SftpSourceOptions(**conn(server, path="/outbound", pattern="*.json", poll="100ms", settle=0)),
        context(tmp_path, SFTP_PW=PASSWORD),
    )
    async with Running(src, store):
        await wait_for(lambda: (out / "archive" / "bad.json").exists())
    result = pipeline_result(JSON_FLOW, tmp_path, store.messages[0])
    assert "invalid JSON" in str(result.failures[0].error)
    assert (out / "archive" / "bad.json").exists()  # taken once, not re-read forever


def test_options_need_a_credential_reference() -> None:
    with pytest.raises(ValidationError, match="password"):
        SftpSourceOptions(host="h", username="u", path="/x")
    with pytest.raises(ValidationError, match="secret"):
        SftpSourceOptions(host="h", username="u", path="/x", password="plain-text")


async def test_connection_lost_between_store_and_archive_is_not_delivered_twice(
    server: SftpServer, tmp_path: Path
) -> None:
    out = server.root / "outbound"
    (out / "a.856").write_bytes(b"once")

    class StopsServerAfterStoring(Collector):
        async def __call__(self, message: Message) -> None:
            await super().__call__(message)
            if len(self.messages) == 1:
                await server.stop()  # the archive step that follows fails

    store = StopsServerAfterStoring()
    src = source(server, tmp_path)
    async with Running(src, store):
        await wait_for(lambda: src.health.connected is False and len(store.messages) == 1)
        await server.start()
        await wait_for(lambda: (out / "archive" / "a.856").exists(), timeout=30, what="the archive")
    assert store.payloads == [b"once"]
