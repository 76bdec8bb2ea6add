"""Real processes, real kills: `flowyard worker` processes share one store; one is
SIGKILLed midway; every stored message must reach the idempotent target exactly once
(distinct idempotency keys applied = messages) and none may be lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rthelp import HTTP_TARGET, RecordingServer, order, wait_sync, write_flow
from sqlalchemy import func, select

from flowyard.message import Message
from flowyard.operations.snapshots import take
from flowyard.store.api import Store
from flowyard.store.models import Attempt

FLOWYARD = str(Path(sys.executable).parent / "flowyard")

pytestmark = pytest.mark.slow


class Workers:
    def __init__(self, tmp: Path, url: str, flows: Path) -> None:
        self.tmp, self.url, self.flows = tmp, url, flows
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "FLOWYARD_DATABASE_URL": self.url,
               "FLOWYARD_DATA_DIR": str(self.tmp / "data")}
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            [FLOWYARD, "worker", "--deploy-new", "--flows", str(self.flows), "--no-sources", "--lease", "3",
             "--batch", "50", *extra], env=env, stdout=log, stderr=log)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Workers]]:
    made: list[Workers] = []
    yield made
    for w in made:
        w.stop_all()


def seed(store: Store, flow_path: Path, count: int) -> None:
    version = take(flow_path).version
    for start in range(0, count, 1000):
        store.accept_many([
            Message(payload=order(n), content_type="application/json", flow="orders",
                    flow_version=version, headers={"labels": {"plant": "MX01"}})
            for n in range(start, min(count, start + 1000))
        ])


def check_exactly_once(store: Store, server: RecordingServer, count: int) -> None:
    assert store.count_messages(state="done") == count
    assert store.count_messages() == count
    assert len(server.applied) == count  # one effect per idempotency key
    delivered = sorted(json.loads(body)["order"] for body in server.applied.values())
    assert delivered == list(range(count))  # none lost, none applied twice
    assert store.dead_letters() == []


def run_kill_test(tmp_path: Path, store: Store, url: str, server: RecordingServer,
                  workers: list[Workers], *, count: int, processes: int, kill_at: int) -> None:
    flows = tmp_path / "flows"
    path = write_flow(flows, targets=HTTP_TARGET.format(url=server.url, timeout="10s",
                                                         attempts=20))
    seed(store, path, count)
    group = Workers(tmp_path, url, flows)
    workers.append(group)
    procs = [group.start(f"w{i}") for i in range(processes)]
    wait_sync(lambda: store.count_messages(state="done") >= kill_at, timeout=240,
              what=f"{kill_at} messages done")
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    done_at_kill = store.count_messages(state="done")
    assert done_at_kill < count, "the kill came too late to prove anything"
    if processes == 1:
        group.start("w-restarted")  # the crashed worker's host restarts it
    wait_sync(lambda: store.count_messages(state="done") == count, timeout=300,
              what=f"all {count} done")
    check_exactly_once(store, server, count)
    with store.session() as session:
        by_worker = dict(session.execute(
            select(Attempt.worker, func.count()).where(Attempt.kind == "deliver")
            .group_by(Attempt.worker)).all())
    assert len(by_worker) == 2  # the killed one did part, the other (or its restart) the rest
    repeated = sum(1 for n in server.requests.values() if n > 1)
    print(f"\n{count} messages, killed at {done_at_kill} done; requests {sum(server.requests.values())}"
          f", keys sent more than once {repeated}, applied {len(server.applied)}; "
          f"delivery attempts by worker {sorted(by_worker.values())}")


def test_two_postgresql_workers_one_sigkilled_deliver_5000_exactly_once(
        tmp_path: Path, pg_store: Store, pg_url: str, http_target: RecordingServer,
        workers: list[Workers]) -> None:
    run_kill_test(tmp_path, pg_store, pg_url, http_target, workers, count=5000, processes=2,
                  kill_at=1500)


def test_sqlite_worker_sigkilled_mid_batch_and_restarted_loses_nothing(
        tmp_path: Path, sqlite_store: Store, sqlite_url: str, http_target: RecordingServer,
        workers: list[Workers]) -> None:
    run_kill_test(tmp_path, sqlite_store, sqlite_url, http_target, workers, count=1500,
                  processes=1, kill_at=400)
