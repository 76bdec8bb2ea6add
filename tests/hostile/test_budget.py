"""Issue 17 item 1 against a real `flowyard worker` process: a step that would loop for a
minute (a JMESPath expression that doubles a list twelve times and looks at each of the
four million items in Python; the issue's `to_int("1e9999999999")` ran >10 min the same
way, on the event loop) is stopped at its flow's budget and dead-lettered on its first
occurrence while another flow delivers; and SIGTERM ends the worker within its grace
period while a step with an hour's budget is still running (before: SIGTERM was ignored
while a step held the event loop)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

RUNTIME_TESTS = str(Path(__file__).resolve().parents[1] / "runtime")
if RUNTIME_TESTS not in sys.path:  # --import-mode=importlib: the helpers' folder by hand
    sys.path.insert(0, RUNTIME_TESTS)

from rthelp import wait_sync  # noqa: E402

from flowyard.operations.deployments import deploy_paths  # noqa: E402
from flowyard.store.api import Store  # noqa: E402
from flowyard.store.database import make_engine  # noqa: E402
from flowyard.store.migrations import upgrade  # noqa: E402
from flowyard.store.models import StoredMessage  # noqa: E402

FLOWYARD = str(Path(sys.executable).parent / "flowyard")
SPIN = "a" + " | [@,@][]" * 12 + " | [?to_string(@) == 'x'] | length(@)"

FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata: {{name: {name}}}
{budget}source: {{file: {{path: ../in/{name}, poll: 100ms, settle: 0s}}}}
steps:
  - json.parse: {{}}
  - name: {step}
    jmespath: "{expression}"
targets:
  - file: {{path: ../out/{name}}}
"""


def write_flow(root: Path, name: str, expression: str, budget: str = "", step: str = "pick") -> None:
    (root / "flows").mkdir(parents=True, exist_ok=True)
    (root / "in" / name).mkdir(parents=True)
    (root / "flows" / f"{name}.yaml").write_text(
        FLOW.format(name=name, budget=f"budget: {budget}\n" if budget else "", step=step,
                    expression=expression), encoding="utf-8")


def start_worker(root: Path, grace: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLOWYARD_DATA_DIR": str(root / ".flowyard")}
    env.pop("FLOWYARD_DATABASE_URL", None)
    return subprocess.Popen([FLOWYARD, "worker", "--flows", str(root / "flows"),
                             "--grace", str(grace), "--log-file", str(root / "worker.log")],
                            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def claimed(store: Store, flow: str) -> bool:
    with store.session() as session:
        return session.scalar(select(StoredMessage.id).where(
            StoredMessage.flow == flow, StoredMessage.lease_owner.is_not(None))) is not None


def outputs(root: Path, flow: str) -> int:
    folder = root / "out" / flow
    return len(list(folder.glob("*"))) if folder.is_dir() else 0


@contextlib.contextmanager
def worker_log_on_failure(log: Path, store: Store) -> Iterator[None]:
    """A failed wait shows the worker's log and the messages' states (a CI failure
    here could not be told apart from a slow machine without them)."""
    try:
        yield
    except AssertionError as exc:
        tail = log.read_text(encoding="utf-8", errors="replace")[-6000:] if log.is_file() else "(none)"
        states = [(m.flow, m.state) for m in store.list_messages(limit=20)]
        raise AssertionError(f"{exc}\nmessages: {states}\nthe worker's log, its end:\n{tail}") from exc


def test_a_worker_stops_a_looping_step_at_its_budget_and_exits_on_sigterm_during_one(
        tmp_path: Path) -> None:
    write_flow(tmp_path, "hog", SPIN, budget="{time: 2s}", step="spin")
    write_flow(tmp_path, "endless", SPIN, budget="{time: 1h}", step="spin")
    write_flow(tmp_path, "orders", "{n: n}")
    (tmp_path / ".flowyard").mkdir()
    engine = make_engine(f"sqlite:///{tmp_path / '.flowyard' / 'flowyard.db'}")
    upgrade(engine)
    store = Store(engine)
    deploy_paths(store, [tmp_path / "flows"], who="test")  # as `flowyard deploy` does
    worker = start_worker(tmp_path, grace=2.0)
    log = tmp_path / "worker.log"
    try:
        with worker_log_on_failure(log, store):
            wait_sync(lambda: log.is_file() and "started with 3 flows" in log.read_text(), timeout=90,
                      what="the worker up")
            hog = json.dumps({"a": list(range(1000))})
            (tmp_path / "in" / "hog" / "loop.json").write_text(hog)
            wait_sync(lambda: claimed(store, "hog"), timeout=30, what="the hog claimed")
            for n in range(5):
                (tmp_path / "in" / "orders" / f"o{n}.json").write_text(json.dumps({"n": n}))
            wait_sync(lambda: outputs(tmp_path, "orders") == 5, timeout=30,
                      what="the other flow's 5 messages delivered")
            [dead] = wait_sync(lambda: store.dead_letters(), timeout=30, what="the hog dead-lettered")
            assert dead.flow == "hog" and dead.step == "spin"
            assert "exceeded its time budget in step spin (2s)" in dead.reason
            detail = store.message(dead.message_id)
            assert detail is not None and detail.summary.state == "dead"
            [process] = [a for a in detail.attempts if a.kind == "process"]  # the first occurrence
            assert process.duration < 2 + 1, process.duration  # unbounded: a minute

            # SIGTERM while a step with an hour's budget runs: the worker exits within its grace
            (tmp_path / "in" / "endless" / "loop.json").write_text(hog)
            wait_sync(lambda: claimed(store, "endless"), timeout=30, what="the endless step claimed")
            time.sleep(0.5)
            signalled = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=2 + 30)  # grace plus generous slack for the hand-back and exit
            took = time.monotonic() - signalled
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0
    assert took < 2 + 10, took
    # the message was handed back, not failed: it runs again (within its budget) next start
    assert not claimed(store, "endless")
    [endless] = store.list_messages(flow="endless")
    assert endless.state not in ("dead", "done")
    assert "Traceback" not in log.read_text()
