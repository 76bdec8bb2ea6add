"""The file target's group commit, on real folders: sends in flight share flushes, each
send returns only with its file in place, and a failure reaches only its own send."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard.step import FlowContext
from flowyard_connectors import groupcommit
from flowyard_connectors.file import FileTarget, FileTargetOptions
from flowyard_connectors.groupcommit import GroupCommit, Write, commit, write_temporary


def target(tmp_path: Path, **options: object) -> FileTarget:
    opts = FileTargetOptions.model_validate({"path": "out", **options})
    return FileTarget(opts, FlowContext(flow_file=tmp_path / "flow.yaml"))


async def test_concurrent_sends_share_flushes_and_all_land(tmp_path: Path) -> None:
    tgt = target(tmp_path, name="{{ key }}.json")
    results = await asyncio.gather(
        *(tgt.send(Message(payload={"n": i}, content_type="application/json"), f"k{i}") for i in range(200))
    )
    assert len(results) == 200
    assert sorted(os.listdir(tmp_path / "out")) == sorted(f"k{i}.json" for i in range(200))  # no .part left
    assert json.loads((tmp_path / "out" / "k7.json").read_text()) == {"n": 7}
    assert tgt.commits.batches < 200  # grouped: fewer flushes than sends


async def test_each_send_returns_with_its_file_in_place(tmp_path: Path) -> None:
    tgt = target(tmp_path, name="{{ key }}.txt")
    seen: list[bool] = []

    async def send(i: int) -> None:
        await tgt.send(Message(payload=f"m{i}".encode(), content_type="text/plain"), f"k{i}")
        path = tmp_path / "out" / f"k{i}.txt"
        seen.append(path.is_file() and path.read_bytes() == f"m{i}".encode())

    await asyncio.gather(*(send(i) for i in range(50)))
    assert seen == [True] * 50


async def test_a_failed_file_fails_only_its_own_send(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "blocked").write_text("a file where a folder should be")
    tgt = target(tmp_path, name="{{ data.dir }}/{{ key }}.json")
    sends = [
        tgt.send(Message(payload={"dir": "blocked" if i == 3 else "ok"}, content_type="application/json"), f"k{i}")
        for i in range(8)
    ]
    results = await asyncio.gather(*sends, return_exceptions=True)
    assert isinstance(results[3], DeliveryError) and "cannot write" in str(results[3])
    assert [isinstance(r, dict) for i, r in enumerate(results) if i != 3] == [True] * 7
    assert sorted(os.listdir(tmp_path / "out" / "ok")) == sorted(f"k{i}.json" for i in range(8) if i != 3)


async def test_overwrite_off_never_replaces_a_file_written_in_the_same_batch(tmp_path: Path) -> None:
    tgt = target(tmp_path, name="same.txt", overwrite=False)
    results = await asyncio.gather(
        *(tgt.send(Message(payload=f"v{i}".encode(), content_type="text/plain"), f"k{i}") for i in range(5)),
        return_exceptions=True,
    )
    ok = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, DeliveryError)]
    assert len(ok) == 1 and len(refused) == 4
    assert all("exists and overwrite is off" in str(r) for r in refused)
    assert os.listdir(tmp_path / "out") == ["same.txt"]


async def test_new_sub_folders_are_created_and_the_mode_is_applied(tmp_path: Path) -> None:
    tgt = target(tmp_path, name="a/b/{{ key }}.bin", mode=0o600)
    await tgt.send(Message(payload=b"x"), "k")
    path = tmp_path / "out" / "a" / "b" / "k.bin"
    assert path.read_bytes() == b"x"
    assert path.stat().st_mode & 0o777 == 0o600


def test_commit_without_a_batch_partner_uses_its_own_fsync(tmp_path: Path) -> None:
    write = Write(tmp_path / "one.txt", b"payload", 0o640)
    write_temporary(write)
    assert write.tmp is not None and Path(write.tmp).exists() and not write.path.exists()
    commit([write])
    assert write.error is None and write.tmp is None and write.fd is None
    assert write.path.read_bytes() == b"payload"
    assert sorted(os.listdir(tmp_path)) == ["one.txt"]


async def test_a_cancelled_sender_does_not_lose_the_others(tmp_path: Path) -> None:
    commits = GroupCommit()
    tasks = [asyncio.create_task(commits.write(Write(tmp_path / f"{i}.txt", b"x", 0o640))) for i in range(10)]
    await asyncio.sleep(0)
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(r is None for r in results[1:])
    assert {f"{i}.txt" for i in range(1, 10)} <= set(os.listdir(tmp_path))
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".part")]


@pytest.mark.parametrize("mode", [0o644, 0o600])
def test_temporary_files_are_named_beside_their_target(tmp_path: Path, mode: int) -> None:
    write = Write(tmp_path / "sub" / "x.json", b"{}", mode)
    write_temporary(write)
    assert write.tmp is not None
    tmp = Path(write.tmp)
    assert tmp.parent == tmp_path / "sub" and tmp.name.startswith(".x.json.") and tmp.name.endswith(".part")
    commit([write])
    assert (tmp_path / "sub" / "x.json").stat().st_mode & 0o777 == mode


async def test_a_folder_removed_between_sends_is_made_again(tmp_path: Path) -> None:
    tgt = target(tmp_path, name="sub/{{ key }}.txt")
    await tgt.send(Message(payload=b"1", content_type="text/plain"), "a")
    (tmp_path / "out" / "sub" / "a.txt").unlink()
    (tmp_path / "out" / "sub").rmdir()  # the target remembered it as existing
    await tgt.send(Message(payload=b"2", content_type="text/plain"), "b")
    assert (tmp_path / "out" / "sub" / "b.txt").read_bytes() == b"2"


async def test_the_event_loop_never_waits_for_the_file_system(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating, flushing and renaming happen in worker threads: a slow file system (a
    network share, a disk just after a mass deletion) must not stop the HTTP intake."""
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    for name in ("write_temporary", "flush_data", "rename", "flush_folders"):
        real = getattr(groupcommit, name)

        def spy(*args: object, _real: Any = real) -> Any:
            threads.add(threading.get_ident())
            return _real(*args)

        monkeypatch.setattr(groupcommit, name, spy)
    tgt = target(tmp_path, name="{{ key }}.json")
    await asyncio.gather(*(tgt.send(Message(payload={"n": i}, content_type="application/json"), f"k{i}")
                           for i in range(50)))
    assert len(list((tmp_path / "out").glob("*.json"))) == 50
    assert threads and loop_thread not in threads


async def test_stopping_mid_write_acknowledges_nothing_and_cleans_up_after_the_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelled while its thread writes, the stage fails every send of the batch at
    once, and removes the temporary files only when the thread is done with them."""
    real = groupcommit.write_temporary

    def slow(write: Write, folders: Any = None) -> None:
        time.sleep(0.1)
        real(write, folders)

    monkeypatch.setattr(groupcommit, "write_temporary", slow)
    commits = GroupCommit()
    writes = [Write(tmp_path / f"f{i}.json", b"{}", 0o644) for i in range(3)]
    sends = [asyncio.ensure_future(commits.write(w)) for w in writes]
    await asyncio.sleep(0.05)  # the thread is in the first write
    assert commits.writer is not None
    commits.writer.cancel()
    results = await asyncio.gather(*sends, return_exceptions=True)
    assert all(isinstance(r, OSError) and "interrupted" in str(r) for r in results), results
    assert any(w.error is None for w in writes)  # acknowledged as failed while the thread works
    deadline = time.monotonic() + 10
    while any(w.error is None for w in writes) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert all(w.fd is None and w.tmp is None for w in writes)
    assert os.listdir(tmp_path) == []  # no temporary file left, nothing renamed
