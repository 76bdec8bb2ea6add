"""The file connector on real folders: complete files only, after-actions, atomic writes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard.step import FlowContext
from flowyard_connectors.file import FileSource, FileSourceOptions, FileTarget, FileTargetOptions


def source(tmp_path: Path, **options: object) -> FileSource:
    opts = FileSourceOptions.model_validate({"path": "in", "pattern": "*.csv", "settle": "0.2s", **options})
    return FileSource(opts, FlowContext(flow_file=tmp_path / "flow.yaml"))


async def collect(src: FileSource) -> list[Message]:
    got: list[Message] = []

    async def accept(message: Message) -> None:
        got.append(message)

    await src.poll_once(accept)
    return got


async def test_a_file_is_taken_only_once_it_stopped_changing(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    src = source(tmp_path)
    growing = tmp_path / "in" / "a.csv"
    growing.write_text("a,b\n")
    assert await collect(src) == []  # first sighting: not settled yet
    await asyncio.sleep(0.1)
    with growing.open("a") as handle:
        handle.write("1,2\n")  # still being written
    assert await collect(src) == []  # changed since the last look: the settle time restarts
    await asyncio.sleep(0.3)
    got = await collect(src)
    assert [m.payload for m in got] == [b"a,b\n1,2\n"]
    assert got[0].content_type == "text/csv" and got[0].source["file"] == "a.csv"
    assert (tmp_path / "in" / "archive" / "a.csv").read_bytes() == b"a,b\n1,2\n"
    assert not growing.exists()


@pytest.mark.parametrize("after", ["delete", "keep"])
async def test_after_delete_and_keep(tmp_path: Path, after: str) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.csv").write_text("x")
    (tmp_path / "in" / "ignored.txt").write_text("y")
    src = source(tmp_path, after=after, settle="0s")
    assert len(await collect(src)) == 1
    assert (tmp_path / "in" / "x.csv").exists() == (after == "keep")
    assert await collect(src) == []  # never taken twice
    assert (tmp_path / "in" / "ignored.txt").exists()


async def test_a_failed_accept_leaves_the_file_in_place(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.csv").write_text("x")
    src = source(tmp_path, settle="0s")

    async def store_down(message: Message) -> None:
        raise OSError("database is locked")

    with pytest.raises(OSError):
        await src.poll_once(store_down)
    assert (tmp_path / "in" / "x.csv").read_text() == "x"  # nothing lost: taken again next poll
    assert len(await collect(src)) == 1


def target(tmp_path: Path, **options: object) -> FileTarget:
    opts = FileTargetOptions.model_validate({"path": "out", **options})
    return FileTarget(opts, FlowContext(flow_file=tmp_path / "flow.yaml"))


async def test_target_writes_atomically_with_an_idempotent_name(tmp_path: Path) -> None:
    tgt = target(tmp_path)
    message = Message(payload=b"<a/>", content_type="application/xml", flow="f1")
    first = await tgt.send(message, "k1")
    again = await tgt.send(message, "k1")  # a retried delivery rewrites its own file
    assert first["file"] == again["file"] == str(tmp_path / "out" / "f1-k1.xml")
    assert sorted(os.listdir(tmp_path / "out")) == ["f1-k1.xml"]  # no temp file left behind
    assert (tmp_path / "out" / "f1-k1.xml").read_bytes() == b"<a/>"


async def test_target_name_template_uses_the_data(tmp_path: Path) -> None:
    tgt = target(tmp_path, name="{{ data.plant }}/po-{{ data.po }}{{ ext }}")
    message = Message(payload={"plant": "MX01", "po": "4500"}, content_type="application/json")
    await tgt.send(message, "k")
    assert (tmp_path / "out" / "MX01" / "po-4500.json").is_file()


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd-copy", "a/../../b.txt"])
async def test_target_refuses_names_that_leave_the_folder(tmp_path: Path, name: str) -> None:
    tgt = target(tmp_path, name=name)
    with pytest.raises(DeliveryError, match=r"must be relative|would leave"):
        await tgt.send(Message(payload=b"x"), "k")
    assert not (tmp_path / "escape.txt").exists()


async def test_target_refuses_a_symlink_out_of_the_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    tgt = target(tmp_path, name="link/x.txt")
    with pytest.raises(DeliveryError, match="would leave"):
        await tgt.send(Message(payload=b"x"), "k")
    assert list((tmp_path / "elsewhere").iterdir()) == []


async def test_target_reports_a_failed_write(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file where the folder should be")
    tgt = target(tmp_path)
    with pytest.raises(DeliveryError, match="cannot write"):
        await tgt.send(Message(payload=b"x"), "k")
    assert tgt.health.last_error


async def test_target_refuses_a_file_name_that_is_a_symlink_out_of_the_folder(tmp_path: Path) -> None:
    """A plain one-part name takes a fast path; a symlink by that name must still be caught."""
    (tmp_path / "out").mkdir()
    (tmp_path / "secret.txt").write_text("keep")
    (tmp_path / "out" / "po.txt").symlink_to(tmp_path / "secret.txt")
    tgt = target(tmp_path, name="po.txt")
    with pytest.raises(DeliveryError, match="would leave"):
        await tgt.send(Message(payload=b"x"), "k")
    assert (tmp_path / "secret.txt").read_text() == "keep"
