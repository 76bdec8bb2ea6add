"""The runtime in one process on SQLite: persist-before-ack, steps, per-target
deliveries with idempotency keys, retries, circuit breaker, dead letters, replay,
graceful shutdown, deploy/undeploy without restart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rthelp import FILE_TARGET, HTTP_TARGET, RecordingServer, order, runtime_for, until, write_flow

from flowyard.operations import deployments
from flowyard.operations.replay import replay
from flowyard.runtime.runtime import RuntimeConfig
from flowyard.store.api import Store


def config(flows: Path, **kw: object) -> RuntimeConfig:
    base: dict[str, object] = dict(flows_dir=flows, rescan=0.2, idle_poll=0.05, lease_ttl=10.0,
                                   grace=10.0, breaker_cooldown=0.3)
    base.update(kw)
    return RuntimeConfig(**base)  # type: ignore[arg-type]


async def run_until_done(store: Store, flows: Path, done: int) -> None:
    """Run the flows until `done` messages are done, then stop."""
    runtime = runtime_for(store, config(flows))
    await runtime.start()
    try:
        await until(lambda: store.count_messages(state="done") == done, what=f"{done} done")
    finally:
        await runtime.stop()


def outputs(folder: Path) -> dict[int, dict[str, int]]:
    found: dict[int, dict[str, int]] = {}
    for path in folder.glob("*.json") if folder.is_dir() else []:
        data = json.loads(path.read_text())
        assert data["order"] not in found, f"order {data['order']} delivered twice"
        found[data["order"]] = data
    return found


async def test_files_in_are_stored_processed_and_delivered_once(
        tmp_path: Path, sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    write_flow(flows)
    for n in range(40):
        (flows / "inbox" / f"o{n}.json").write_bytes(order(n))
    runtime = runtime_for(sqlite_store, config(flows))
    await runtime.start()
    try:
        await until(lambda: len(outputs(flows / "out")) == 40, what="40 outputs")
        await until(lambda: sqlite_store.count_messages(state="done") == 40, what="40 done")
    finally:
        await runtime.stop()
    got = outputs(flows / "out")
    assert sorted(got) == list(range(40))
    assert got[5] == {"order": 5, "qty": 6}
    # acknowledged upstream only after storing: every input file was archived
    assert sorted(p.name for p in (flows / "inbox" / "archive").iterdir()) == sorted(
        f"o{n}.json" for n in range(40))
    # deterministic, key-derived file names: MESSAGE.OUTPUT.TARGET
    message = sqlite_store.list_messages(limit=1)[0]
    detail = sqlite_store.message(message.id)
    assert detail is not None
    assert [d.idempotency_key for d in detail.deliveries] == [f"{message.id}.0.file-1"]
    assert (flows / "out" / f"orders-{message.id}.0.file-1.json").is_file()
    assert [t.step for t in detail.traces] == ["1-json.parse", "pick", "render"]
    assert '"order"' in detail.traces[-1].snapshot
    assert next(e.kind for e in detail.timeline) == "received"
    assert message.plant == "MX01" and message.partner == "ACME"
    deployments = sqlite_store.deployments("orders")
    assert len(deployments) == 1 and deployments[0].action == "deploy"


async def test_bad_data_goes_to_dead_letters_and_replay_on_current_version_shows_the_diff(
        tmp_path: Path, sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    path = write_flow(flows)
    (flows / "inbox" / "good.json").write_bytes(order(1))
    (flows / "inbox" / "bad.json").write_bytes(b'{"id": 2, "qty": ')
    runtime = runtime_for(sqlite_store, config(flows))
    await runtime.start()
    try:
        await until(lambda: sqlite_store.dead_letters(), what="a dead letter")
        await until(lambda: sqlite_store.count_messages(state="done") == 1, what="good done")
        [dead] = sqlite_store.dead_letters(with_input=True)
        assert dead.kind == "step" and dead.step == "1-json.parse"
        assert "invalid JSON" in dead.reason and "line 1" in dead.reason
        assert dead.input_text == '{"id": 2, "qty": '
        failed_version = dead.flow_version
        [group] = sqlite_store.dead_letter_groups()
        assert group.count == 1 and group.flow == "orders"
        # the analyst fixes the data in place? no: the flow is changed (a new version),
        # which runs once it is deployed
        path.write_text(path.read_text().replace('"qty": {{ qty }}', '"qty": {{ qty }}, "v": 2'))
        deployments.deploy(sqlite_store, path, who="ana")
        await until(lambda: runtime.current["orders"].version != failed_version,
                    what="new version deployed")
        # the bad input still fails on the current version; replay a good message instead
        good = sqlite_store.list_messages(state="done")[0]
        [result] = replay(sqlite_store, [good.id], version="current", who="ana")
        assert result.error is None and result.message_id
        assert '-  "qty": 2\n' in result.diff or '"v": 2' in result.diff
        await until(lambda: (m := sqlite_store.message(result.message_id or "")) is not None
                    and m.summary.state == "done", what="replay done")
        replayed = sqlite_store.message(result.message_id or "")
        assert replayed is not None
        assert replayed.summary.correlation_id == good.correlation_id
        assert replayed.summary.replay_of == good.id
        assert '"v": 2' in replayed.deliveries[0].payload_text
        history = sqlite_store.deployments("orders")
        assert [h.version for h in history][1] == failed_version
    finally:
        await runtime.stop()


async def test_target_down_then_back_retries_with_the_same_key_and_loses_nothing(
        tmp_path: Path, sqlite_store: Store, http_target: RecordingServer) -> None:
    flows = tmp_path / "flows"
    targets = HTTP_TARGET.format(url=http_target.url, timeout="5s", attempts=50)
    write_flow(flows, targets=targets)
    http_target.down = True
    for n in range(30):
        (flows / "inbox" / f"o{n}.json").write_bytes(order(n))
    runtime = runtime_for(sqlite_store, config(flows, breaker_threshold=3))
    await runtime.start()
    try:
        await until(lambda: sqlite_store.count_messages(state="delivering") == 30,
                    what="all 30 waiting for the target")
        breaker = runtime.breakers.get(runtime.current["orders"].targets[0].endpoint)
        assert breaker.state in ("open", "half-open")
        http_target.down = False
        await until(lambda: sqlite_store.count_messages(state="done") == 30, what="30 done")
    finally:
        await runtime.stop()
    assert len(http_target.applied) == 30
    bodies = sorted(json.loads(b)["order"] for b in http_target.applied.values())
    assert bodies == list(range(30))
    assert not sqlite_store.dead_letters()
    # the breaker held most messages back: far fewer attempts than messages x retries
    detail = sqlite_store.message(sqlite_store.list_messages(limit=1)[0].id)
    assert detail is not None and detail.deliveries[0].state == "done"


async def test_last_attempt_makes_a_dead_letter_and_replay_resends_with_the_same_key(
        tmp_path: Path, sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the target folder should be")
    write_flow(flows, targets=FILE_TARGET.format(path=str(blocked / "out"), attempts=2)
               + FILE_TARGET.format(path="archive-out", attempts=2))
    (flows / "inbox" / "o1.json").write_bytes(order(1))
    runtime = runtime_for(sqlite_store, config(flows))
    await runtime.start()
    try:
        await until(lambda: sqlite_store.count_messages(state="dead") == 1, what="dead")
        [dead] = sqlite_store.dead_letters()
        assert dead.kind == "delivery" and dead.target == "file-1"
        assert "after 2 attempts" in dead.reason
        detail = sqlite_store.message(dead.message_id)
        assert detail is not None
        states = {d.target: (d.state, d.attempts) for d in detail.deliveries}
        assert states == {"file-1": ("dead", 2), "file-2": ("done", 1)}
        blocked.unlink()  # the target is repaired
        [result] = replay(sqlite_store, [dead.id], who="ana")
        assert result.message_id == dead.message_id  # same message, same key
        await until(lambda: sqlite_store.count_messages(state="done") == 1, what="done")
    finally:
        await runtime.stop()
    key = detail.deliveries[0].idempotency_key
    assert (blocked / "out" / f"orders-{key}.json").is_file()
    assert len(list((flows / "archive-out").iterdir())) == 1  # the other target: once
    assert sqlite_store.dead_letters(status="replayed")[0].id == dead.id


async def test_undeploy_and_deploy_without_restart(tmp_path: Path, sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    path = write_flow(flows)
    runtime = runtime_for(sqlite_store, config(flows))
    await runtime.start()
    try:
        await until(lambda: "orders" in runtime.sources, what="source running")
        deployments.undeploy(sqlite_store, "orders", who="ana", note="maintenance")
        await until(lambda: "orders" not in runtime.current, what="stopped")
        (flows / "inbox" / "o1.json").write_bytes(order(1))
        await until(lambda: "orders" not in runtime.sources, what="source stopped")
        assert (flows / "inbox" / "o1.json").exists()  # nobody took it
        deployments.deploy(sqlite_store, path, who="ana", note="back")
        await until(lambda: outputs(flows / "out"), what="processed after deploy")
        assert [d.action for d in sqlite_store.deployments("orders")] == [
            "deploy", "undeploy", "deploy"]
    finally:
        await runtime.stop()


async def test_graceful_stop_hands_back_claimed_work(tmp_path: Path, sqlite_store: Store) -> None:
    from flowyard.message import Message
    from flowyard.store import queue

    flows = tmp_path / "flows"
    write_flow(flows)
    runtime = runtime_for(sqlite_store, config(flows, processors=0))
    await runtime.start()
    version = runtime.current["orders"].version
    sqlite_store.accept_many([Message(payload=order(n), content_type="application/json",
                                      flow="orders", flow_version=version) for n in range(5)])
    claimed = queue.claim_messages(sqlite_store.engine, runtime.worker, ["orders"], 3, 30)
    assert len(claimed) == 3
    await runtime.stop()
    assert sqlite_store.count_messages(state="received") == 5
    assert sqlite_store.count_messages(state="processing") == 0
    shutil.rmtree(flows / "inbox")


async def test_a_batchs_first_deliveries_run_at_each_targets_own_concurrency(
        tmp_path: Path, sqlite_store: Store, http_target: RecordingServer) -> None:
    """The file target takes a whole batch at once, so its writes share one flush; an
    HTTP endpoint gets at most the runtime's `send_concurrency` requests at a time."""
    from flowyard.message import Message
    from flowyard.store import queue

    flows = tmp_path / "flows"
    write_flow(flows, targets=FILE_TARGET.format(path="out", attempts=3)
               + HTTP_TARGET.format(url=http_target.url, attempts=3, timeout="10s"))
    http_target.delay = 0.02
    runtime = runtime_for(sqlite_store, config(flows, processors=0, send_concurrency=8))
    await runtime.start()
    try:
        loaded = runtime.current["orders"]
        sqlite_store.accept_many([Message(payload=order(n), content_type="application/json",
                                          flow="orders", flow_version=loaded.version)
                                  for n in range(100)])
        claimed = queue.claim_messages(sqlite_store.engine, runtime.worker, ["orders"], 100, 30)
        await runtime.process_batch(claimed)
    finally:
        await runtime.stop()
    assert sqlite_store.count_messages(state="done") == 100
    assert len(outputs(flows / "out")) == 100
    assert len(http_target.applied) == 100
    assert loaded.targets[0].target.commits.batches == 1  # one flush for the batch
    assert 2 <= http_target.most_inflight <= 8


async def test_split_fans_out_each_part_to_each_target_whose_condition_holds(
        tmp_path: Path, sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "inbox").mkdir()
    (flows / "lines.yaml").write_text("""\
apiVersion: flowyard/v1
kind: Flow
metadata: {name: lines}
source:
  file: {path: inbox, pattern: "*.json", poll: 50ms, settle: 0s}
steps:
  - json.parse: {}
  - split: lines
targets:
  - file: {path: all}
  - name: big-only
    file: {path: big}
    when: "qty > `5`"
""")
    (flows / "inbox" / "o.json").write_text(
        '{"lines": [{"n": 1, "qty": 2}, {"n": 2, "qty": 9}, {"n": 3, "qty": 7}]}')
    await run_until_done(sqlite_store, flows, 1)
    [message] = sqlite_store.list_messages()
    detail = sqlite_store.message(message.id)
    assert detail is not None and detail.summary.outputs == 3
    keys = sorted(d.idempotency_key for d in detail.deliveries)
    assert keys == sorted([f"{message.id}.0.file-1", f"{message.id}.1.file-1",
                           f"{message.id}.2.file-1", f"{message.id}.1.big-only",
                           f"{message.id}.2.big-only"])
    assert len(list((flows / "all").iterdir())) == 3
    big = sorted(json.loads(p.read_text())["n"] for p in (flows / "big").iterdir())
    assert big == [2, 3]


async def test_a_delivery_keeps_the_data_for_its_retries_only(
        tmp_path: Path, sqlite_store: Store) -> None:
    """The data behind an output travels with a delivery that will be retried (a name
    template reads it), and is not stored with one that is finished."""
    from sqlalchemy import select

    from flowyard.store.models import Delivery

    flows = tmp_path / "flows"
    blocked = tmp_path / "out"
    blocked.write_text("a file where the target's folder should be")
    write_flow(flows, targets=f"""\
  - file: {{path: {blocked}, name: "order-{{{{ data.id }}}}.json"}}
    retry: {{attempts: 50, backoff: 50ms, max_backoff: 100ms}}
""")
    (flows / "inbox" / "o1.json").write_bytes(order(1))
    runtime = runtime_for(sqlite_store, config(flows))
    await runtime.start()
    try:
        await until(lambda: sqlite_store.count_messages(state="delivering") == 1,
                    what="the delivery waiting for a retry")
        with sqlite_store.session() as session:
            waiting = session.scalars(select(Delivery.meta)).one()
        assert waiting["last_data"] == {"id": 1, "qty": 2}
        blocked.unlink()
        await until(lambda: sqlite_store.count_messages(state="done") == 1, what="delivered")
    finally:
        await runtime.stop()
    assert json.loads((blocked / "order-1.json").read_bytes()) == {"order": 1, "qty": 2}
    (flows / "inbox" / "o2.json").write_bytes(order(2))
    await run_until_done(sqlite_store, flows, 2)
    with sqlite_store.session() as session:
        metas = list(session.scalars(select(Delivery.meta).order_by(Delivery.id)))
    assert "last_data" not in metas[1] and metas[1]["id"]  # done at once: no data kept


async def test_a_dead_letter_is_replayed_once_and_a_forced_repeat_keeps_its_key(
        tmp_path: Path, sqlite_store: Store, http_target: RecordingServer) -> None:
    flows = tmp_path / "flows"
    path = write_flow(flows, targets=HTTP_TARGET.format(url=http_target.url, timeout="5s", attempts=1))
    http_target.down = True
    (flows / "inbox" / "o1.json").write_bytes(order(1))
    runtime = runtime_for(sqlite_store, config(flows))
    await runtime.start()
    try:
        await until(lambda: sqlite_store.dead_letters(), what="a dead delivery")
        [dead] = sqlite_store.dead_letters()
        http_target.down = False
        path.write_text(path.read_text().replace('"qty": {{ qty }}', '"qty": {{ qty }}, "v": 2'))
        deployments.deploy(sqlite_store, path, who="ana")  # replayed on another version: a new message
        [first] = replay(sqlite_store, [dead.id], version="current", who="ana")
        assert first.error is None and first.message_id != dead.message_id
        await until(lambda: len(http_target.applied) == 1, what="the replay delivered")
        [again] = replay(sqlite_store, [dead.id], version="current", who="bo")
        assert again.message_id is None
        assert again.error == (f"dead letter {dead.id} was replayed already (as message {first.message_id}); "
                               "replay it again with --force")
        [forced] = replay(sqlite_store, [dead.id], version="current", who="bo", force=True)
        assert forced.error is None and forced.message_id not in (None, first.message_id)
        await until(lambda: sum(http_target.requests.values()) == 2, what="the forced replay sent")
    finally:
        await runtime.stop()
    [key] = http_target.requests  # both replays went out with one key: the target saw the repeat
    assert key.startswith(f"{first.message_id}.0.") and http_target.requests[key] == 2
    assert len(http_target.applied) == 1
