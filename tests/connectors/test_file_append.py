"""The file target's append mode on real files and real processes: lines land once and in
order, sends in flight share a commit, a retried key writes nothing (also after a
restart or a SIGKILL), recovery cuts what was never acknowledged, two processes share
one file, and a failing write loses nothing already written."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flowyard.engine import Pipeline
from flowyard.errors import DeliveryError
from flowyard.loader import check_flow, load_flow
from flowyard.message import Message
from flowyard.runner import input_message
from flowyard.step import FlowContext
from flowyard.testing import run_tests
from flowyard_connectors import appendlog
from flowyard_connectors.file import FileTarget, FileTargetOptions

ROOT = Path(__file__).resolve().parents[2]

# Appends keys given on the command line (or PREFIX0..PREFIX{N-1}) in chunks sent
# concurrently, printing each chunk's keys once acknowledged, or the error.
SENDER = r"""
import asyncio, json, os, resource, signal, sys, time
from pathlib import Path
from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard.runner import input_message
from flowyard.step import FlowContext
from flowyard_connectors.file import FileTarget, FileTargetOptions

folder, keys, chunk, go, limit = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

async def main():
    options = FileTargetOptions.model_validate({"path": folder, "name": "log.jsonl", "append": True})
    target = FileTarget(options, FlowContext(flow_file=Path(folder).parent / "flow.yaml"))
    while go and not os.path.exists(go):
        time.sleep(0.005)
    for start in range(0, len(keys), chunk):
        part = keys[start:start + chunk]
        results = await asyncio.gather(*(
            target.send(Message(payload=line(k), content_type="application/json"), k) for k in part
        ), return_exceptions=True)
        for k, r in zip(part, results):
            print(json.dumps({"key": k, "error": str(r)} if isinstance(r, Exception) else {"key": k}), flush=True)

def line(key):
    return json.dumps({"key": key, "pad": "x" * 100}).encode()

asyncio.run(main())
"""


def sender(folder: Path, keys: list[str], chunk: int, go: Path | None = None, limit: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SENDER, str(folder), ",".join(keys), str(chunk), str(go or ""), str(limit)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )


def line(key: str) -> bytes:
    return json.dumps({"key": key, "pad": "x" * 100}).encode()


def target(tmp_path: Path, **options: object) -> FileTarget:
    opts = FileTargetOptions.model_validate({"path": "out", "name": "log.jsonl", "append": True, **options})
    return FileTarget(opts, FlowContext(flow_file=tmp_path / "flow.yaml"))


def keys_in(path: Path) -> list[str]:
    return [json.loads(raw)["key"] for raw in path.read_bytes().splitlines()]


def index_lines(path: Path) -> list[str]:
    return appendlog.index_path(path).read_text().splitlines()


async def send_all(tgt: FileTarget, keys: list[str]) -> list[dict[str, object]]:
    results = await asyncio.gather(*(tgt.send(Message(payload=line(k), content_type="application/json"), k) for k in keys))
    return [r or {} for r in results]


async def test_lines_land_in_order_once_each_with_the_separator_added_only_when_missing(tmp_path: Path) -> None:
    tgt = target(tmp_path, name="{{ message.flow }}-day.jsonl")
    first = await tgt.send(Message(payload=b'{"n":1}', content_type="application/json", flow="counts"), "k1")
    await tgt.send(Message(payload=b'{"n":2}\n', content_type="application/json", flow="counts"), "k2")
    await tgt.send(Message(payload={"n": 3, "name": "Prensa ñ"}, flow="counts"), "k3")  # data: one line
    path = tmp_path / "out" / "counts-day.jsonl"
    assert path.read_bytes() == '{"n":1}\n{"n":2}\n{"n":3,"name":"Prensa ñ"}\n'.encode()
    assert first == {"file": str(path), "bytes": 8, "end": 8}
    assert [entry.split(" ")[1] for entry in index_lines(path)] == ["8", "16", str(path.stat().st_size)]
    assert sorted(os.listdir(tmp_path / "out")) == [".counts-day.jsonl.keys", "counts-day.jsonl"]


async def test_csv_rows_with_their_own_separator(tmp_path: Path) -> None:
    tgt = target(tmp_path, name="rows.csv", separator="\r\n")
    for i, row in enumerate([b"MX01,L1,40", b"MX01,L2,38\r\n", b"MX01,L3,0"]):
        await tgt.send(Message(payload=row, content_type="text/csv"), f"r{i}")
    assert (tmp_path / "out" / "rows.csv").read_bytes() == b"MX01,L1,40\r\nMX01,L2,38\r\nMX01,L3,0\r\n"


async def test_sends_in_flight_share_commits(tmp_path: Path) -> None:
    tgt = target(tmp_path)
    keys = [f"K{i}" for i in range(300)]
    results = await send_all(tgt, keys)
    path = tmp_path / "out" / "log.jsonl"
    assert keys_in(path) == keys  # in the order sent, each once
    assert [r["end"] for r in results] == [int(e.split()[1]) for e in index_lines(path)]
    assert appendlog.logs()[path].batches < 300  # grouped: fewer commits than sends


async def test_a_retried_key_writes_nothing_also_after_a_restart(tmp_path: Path) -> None:
    tgt = target(tmp_path)
    await send_all(tgt, ["a", "b"])
    again = await tgt.send(Message(payload=b"changed"), "a")
    path = tmp_path / "out" / "log.jsonl"
    assert again == {"file": str(path), "bytes": 0, "already_written": True}
    log = appendlog.logs()[path]
    await tgt.close()
    assert path not in appendlog.logs()  # forgotten with its last target
    restarted = target(tmp_path)
    results = await asyncio.gather(*(restarted.send(Message(payload=b"again"), k) for k in ["b", "a", "c", "c"]))
    assert appendlog.logs()[path] is not log  # read from the index, not remembered
    assert [r["bytes"] for r in results] == [0, 0, 6, 0]  # the twin "c" in the same batch is written once
    assert path.read_bytes().splitlines() == [line("a"), line("b"), b"again"]
    assert len(index_lines(path)) == 3


async def test_keys_with_spaces_and_newlines_do_not_break_the_index(tmp_path: Path) -> None:
    tgt = target(tmp_path)
    keys = ["a b", "a\nb", "a%20b", "ROOT-3 7\r", "ü/ä"]
    await send_all(tgt, keys)
    await tgt.close()
    path = tmp_path / "out" / "log.jsonl"
    assert all(len(entry.split(" ")) == 2 for entry in index_lines(path))
    again = target(tmp_path)
    assert [r["bytes"] for r in await send_all(again, keys)] == [0] * 5
    assert keys_in(path) == keys
    with pytest.raises(DeliveryError, match="empty idempotency key") as refused:
        await again.send(Message(payload=b"x"), "")
    assert not refused.value.retryable


async def test_recovery_cuts_unacknowledged_data_and_a_torn_index_line(tmp_path: Path) -> None:
    tgt = target(tmp_path)
    await send_all(tgt, ["K0", "K1"])
    await tgt.close()
    path = tmp_path / "out" / "log.jsonl"
    with path.open("ab") as data:  # a crash after the data flush, before the index line
        data.write(line("K2") + b"\n" + b'{"key": "K3", "pa')
    with appendlog.index_path(path).open("ab") as index:  # and a torn index line
        index.write(b"K2 99")
    again = target(tmp_path)
    await send_all(again, ["K1", "K2", "K3"])
    assert keys_in(path) == ["K0", "K1", "K2", "K3"]
    assert [e.split()[0] for e in index_lines(path)] == ["K0", "K1", "K2", "K3"]
    assert int(index_lines(path)[-1].split()[1]) == path.stat().st_size


async def test_opening_cuts_data_past_the_index_even_when_every_key_is_known(tmp_path: Path) -> None:
    tgt = target(tmp_path)
    await send_all(tgt, ["K0"])
    await tgt.close()
    path = tmp_path / "out" / "log.jsonl"
    with path.open("ab") as data:
        data.write(b"never acknowledged\n")
    assert (await target(tmp_path).send(Message(payload=b"x"), "K0"))["bytes"] == 0
    assert keys_in(path) == ["K0"]


async def test_a_data_file_cut_outside_flowyard_is_reported(tmp_path: Path) -> None:
    tgt = target(tmp_path)
    await send_all(tgt, ["K0", "K1"])
    await tgt.close()
    path = tmp_path / "out" / "log.jsonl"
    path.write_bytes(b"")
    with pytest.raises(DeliveryError, match=r"log\.jsonl holds 0 bytes but its index .log\.jsonl\.keys says"):
        await target(tmp_path).send(Message(payload=b"x"), "K2")


async def test_two_targets_in_one_process_share_the_file(tmp_path: Path) -> None:
    one, two = target(tmp_path), target(tmp_path, separator="\n")
    keys = [f"K{i}" for i in range(40)]
    await asyncio.gather(send_all(one, keys), send_all(two, keys[20:] + [f"L{i}" for i in range(20)]))
    path = tmp_path / "out" / "log.jsonl"
    assert sorted(keys_in(path)) == sorted(keys + [f"L{i}" for i in range(20)])
    assert appendlog.logs()[path].users == {id(one), id(two)}
    await one.close()
    assert path in appendlog.logs()  # still used by the other target
    await two.close()
    assert path not in appendlog.logs()


async def test_an_idle_file_is_forgotten_and_read_again(tmp_path: Path) -> None:
    tgt = target(tmp_path)
    await send_all(tgt, ["K0"])
    path = tmp_path / "out" / "log.jsonl"
    assert appendlog.sweep(idle=3600) == []
    assert appendlog.sweep(idle=0) == [path]
    assert (await tgt.send(Message(payload=b"x"), "K0"))["bytes"] == 0
    assert keys_in(path) == ["K0"]


async def test_a_name_that_is_a_folder_fails_with_the_file_named(tmp_path: Path) -> None:
    (tmp_path / "out" / "blocked.jsonl").mkdir(parents=True)
    tgt = target(tmp_path, name="{{ data.file }}")
    await tgt.send(Message(payload={"file": "ok.jsonl"}), "k1")
    with pytest.raises(DeliveryError) as failed:
        await tgt.send(Message(payload={"file": "blocked.jsonl"}), "k2")
    assert str(failed.value) == f"cannot append to {tmp_path / 'out' / 'blocked.jsonl'}: Is a directory"
    assert failed.value.retryable and not tgt.health.connected
    await tgt.send(Message(payload={"file": "ok.jsonl"}), "k3")
    assert (tmp_path / "out" / "ok.jsonl").read_bytes() == b'{"file":"ok.jsonl"}\n' * 2
    assert tgt.health.connected


async def test_the_path_guard_still_applies(tmp_path: Path) -> None:
    tgt = target(tmp_path, name="../{{ key }}.jsonl")
    with pytest.raises(DeliveryError, match="would leave the target folder") as refused:
        await tgt.send(Message(payload=b"x"), "k")
    assert not refused.value.retryable
    assert not (tmp_path / "k.jsonl").exists()


def test_a_write_past_the_file_size_limit_fails_its_batch_and_loses_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    keys = [f"K{i}" for i in range(100)]
    size = len(line("K10")) + 1
    run = sender(folder, keys, 10, limit=size * 65)  # the 7th batch of 10 would cross it
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    results = [json.loads(raw) for raw in out.splitlines()]
    acked = [r["key"] for r in results if "error" not in r]
    failed = [r["error"] for r in results if "error" in r]
    path = folder / "log.jsonl"
    assert acked == keys[:60] and len(failed) == 40
    assert set(failed) == {f"cannot append to {path}: File too large"}
    assert keys_in(path) == acked  # no partial line left behind
    assert len(index_lines(path)) == 60

    async def resend() -> None:
        await send_all(target(tmp_path), keys)

    asyncio.run(resend())
    assert keys_in(path) == keys


def test_a_sigkilled_writer_leaves_each_line_once_after_the_resend(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    keys = [f"K{i}" for i in range(3000)]
    run = sender(folder, keys, 20)
    acked: list[str] = []
    assert run.stdout is not None
    for raw in run.stdout:  # kill it while it appends
        acked.append(json.loads(raw)["key"])
        if len(acked) >= 200:
            break
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    assert run.returncode == -signal.SIGKILL
    path = folder / "log.jsonl"
    indexed = [e.split()[0] for e in index_lines(path)]
    assert indexed == keys[: len(indexed)] and len(indexed) >= len(acked)  # every acknowledged line is indexed

    async def resend() -> list[dict[str, object]]:
        tgt = target(tmp_path)
        results = []
        for start in range(0, len(keys), 500):
            results += await send_all(tgt, keys[start:start + 500])
        return results

    results = asyncio.run(resend())
    assert keys_in(path) == keys  # each line once, in key order
    assert sum(1 for r in results if r.get("already_written")) == len(indexed)


def test_two_processes_append_to_one_file(tmp_path: Path) -> None:
    folder, go = tmp_path / "out", tmp_path / "go"
    shared = [f"S{i}" for i in range(100)]
    mine = [f"A{i}" for i in range(300)]
    theirs = [f"B{i}" for i in range(300)]

    def interleave(own: list[str]) -> list[str]:  # three own keys, then a shared one
        return [k for pair in zip(own[::3], own[1::3], own[2::3], shared, strict=True) for k in pair]

    runs = [sender(folder, interleave(mine), 8, go), sender(folder, interleave(theirs), 8, go)]
    go.touch()
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert all("error" not in json.loads(raw) for raw in out.splitlines())
    written = keys_in(folder / "log.jsonl")
    assert sorted(written) == sorted(mine + theirs + shared)  # every key exactly once
    assert [k for k in written if k[0] == "A"] == mine  # each process's own lines in its order
    ends = [int(e.split()[1]) for e in index_lines(folder / "log.jsonl")]
    assert ends == sorted(ends) and ends[-1] == (folder / "log.jsonl").stat().st_size


EXAMPLES = sorted((ROOT / "examples" / "file-append").glob("*.yaml"))


@pytest.mark.parametrize("flow_file", EXAMPLES, ids=[p.stem for p in EXAMPLES])
async def test_the_examples_are_valid_and_append_their_test_input_once(flow_file: Path, tmp_path: Path) -> None:
    assert [str(i) for i in check_flow(flow_file)] == []
    flow = load_flow(flow_file)
    assert [r.passed for r in run_tests(flow)] == [True] * len(flow.tests)
    case = flow.tests[0]
    [output] = Pipeline(flow).run(input_message(flow, (flow_file.parent / case.input).read_bytes(), case.input)).outputs
    options = flow.targets[0].options.model_copy(update={"path": str(tmp_path)})
    tgt = FileTarget(options, FlowContext(flow_file=flow_file))
    first = await tgt.send(output, "delivery-1")
    assert (await tgt.send(output, "delivery-1"))["bytes"] == 0  # a retry adds nothing
    written = Path(str(first["file"])).read_bytes()
    expected = (flow_file.parent / str(case.expect)).read_bytes()
    if flow_file.stem.endswith("jsonl"):
        assert written.count(b"\n") == 1 and json.loads(written) == json.loads(expected)
    else:
        assert written == expected
