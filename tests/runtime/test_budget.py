"""Issue 17 item 1: every message runs within its flow's budget. A step that loops (a
JMESPath expression that doubles a list twelve times, then looks at each of its four
million items in Python) or that eats memory is stopped, its message dead-lettered at
once with "exceeded its time/memory budget in step X", while another flow's messages keep
flowing (the steps run off the event loop) and the hog's batch neighbours are processed."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from pydantic import Field
from rthelp import order, runtime_for, until, write_flow

from flowyard import registry
from flowyard.budget import Budget, BudgetExceeded, Watch, Watchdog, parse_size
from flowyard.message import Message
from flowyard.options import Options
from flowyard.runtime.runtime import RuntimeConfig
from flowyard.step import Step
from flowyard.store.api import Store

# 1,000 items doubled 12 times, then a Python-level filter over each of the 4 million:
# about a minute of pure Python on this machine, with little memory (32 MB of pointers)
SPIN = "a" + " | [@,@][]" * 12 + " | [?to_string(@) == 'x'] | length(@)"
# 100 items doubled 24 times: 13 GB if nothing stops it
EAT = "a" + " | [@,@][]" * 24 + " | length(@)"

HOG = """\
apiVersion: flowyard/v1
kind: Flow
metadata: {{name: {name}}}
budget: {budget}
source:
  file: {{path: hog-in, pattern: "*.json", poll: 50ms, settle: 0s}}
steps:
  - json.parse: {{}}
  - name: spin
    jmespath: "{expression}"
targets:
  - file: {{path: hog-out}}
"""


def config(flows: Path, **kw: object) -> RuntimeConfig:
    base: dict[str, object] = dict(flows_dir=flows, rescan=0.2, idle_poll=0.05, lease_ttl=30.0,
                                   grace=5.0)
    base.update(kw)
    return RuntimeConfig(**base)  # type: ignore[arg-type]


def write_hog(flows: Path, budget: str, expression: str, name: str = "hog") -> Path:
    (flows / "hog-in").mkdir(parents=True, exist_ok=True)
    path = flows / f"{name}.yaml"
    path.write_text(HOG.format(name=name, budget=budget, expression=expression), encoding="utf-8")
    return path


def attempt_seconds(store: Store, message_id: str) -> float:
    detail = store.message(message_id)
    assert detail is not None
    [process] = [a for a in detail.attempts if a.kind == "process"]
    return float(process.duration)


def test_budget_options_are_typed() -> None:
    assert Budget.model_validate({"time": "2s", "memory": "256MB"}).memory == 256_000_000
    assert parse_size("1GiB") == 1024 ** 3 and parse_size(4096) == 4096
    for bad in ("lots", 0, "-1MB"):
        try:
            Budget.model_validate({"memory": bad})
        except ValueError as exc:
            assert "size" in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted as a memory budget")


async def test_a_looping_step_is_stopped_at_its_budget_while_another_flow_flows(
        tmp_path: Path, sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    write_flow(flows)  # "orders": json.parse, jmespath, jinja, file target
    write_hog(flows, "{time: 4s}", SPIN)
    runtime = runtime_for(sqlite_store, config(flows))
    await runtime.start()
    try:
        (flows / "hog-in" / "loop.json").write_text(json.dumps({"a": list(range(1000))}))
        await until(lambda: runtime.watchdog.running, what="the hog running its steps")
        hog_started = time.monotonic()
        # meanwhile another flow's messages go through, one after the other
        latencies = []
        for n in range(5):
            written = time.monotonic()
            (flows / "inbox" / f"o{n}.json").write_bytes(order(n))
            await until(lambda n=n: list((flows / "out").glob("*.json"))[n:], every=0.02,
                        what=f"order {n} delivered")
            latencies.append(time.monotonic() - written)
        assert not sqlite_store.dead_letters(), "the orders went through while the hog still ran"
        assert time.monotonic() - hog_started < 4.0
        # a loop on the event loop would have held every order for the hog's whole minute
        assert max(latencies) < 2.0, latencies
        [dead] = await until(lambda: sqlite_store.dead_letters(with_input=True), timeout=30,
                             what="the hog dead-lettered")
    finally:
        await runtime.stop()
    assert dead.flow == "hog" and dead.kind == "step" and dead.step == "spin"
    assert "exceeded its time budget in step spin (4s)" in dead.reason
    assert json.loads(dead.input_text) == {"a": list(range(1000))}  # as it entered the step
    # stopped within its budget plus a second (the runtime's own measure of the steps)
    assert 4.0 <= attempt_seconds(sqlite_store, dead.message_id) < 5.0
    [hog] = sqlite_store.list_messages(flow="hog")
    assert hog.state == "dead"  # on the first occurrence: one claim, no retry
    assert sqlite_store.count_messages(state="done") == 5
    assert runtime.watchdog.stopped == 1 and runtime.watchdog.abandoned == 0


async def test_a_memory_hungry_step_is_stopped_and_its_batch_goes_on(
        tmp_path: Path, sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    write_hog(flows, "{memory: 50MB}", EAT)
    (flows / "hog-in" / "eat.json").write_text(json.dumps({"a": list(range(100))}))
    (flows / "hog-in" / "small.json").write_text(json.dumps({"a": []}))
    runtime = runtime_for(sqlite_store, config(flows, processors=1))
    await runtime.start()
    try:
        [dead] = await until(lambda: sqlite_store.dead_letters(), timeout=30,
                             what="the hungry message dead-lettered")
        # its neighbour (nothing to double) runs the same steps within the budget
        await until(lambda: sqlite_store.count_messages(state="done") == 1, timeout=30,
                    what="the other message done")
    finally:
        await runtime.stop()
    assert dead.step == "spin" and "exceeded its memory budget in step spin (50MB)" in dead.reason
    assert sqlite_store.count_messages(state="dead") == 1
    assert runtime.watchdog.abandoned == 0


def test_a_thread_stuck_in_one_c_call_is_given_up_and_stopped_when_the_call_returns() -> None:
    """`time.sleep` is one C call: the stop waits for it, so the watchdog reports the
    message stuck (the runtime then dead-letters it and abandons the thread); when the
    call returns, the stop lands and the thread goes no further."""
    watchdog = Watchdog(every=0.05, stuck_after=0.3)
    watchdog.start()
    stuck: list[Watch] = []
    events: list[str] = []

    def step() -> None:
        watch = watchdog.begin("m1", 0.2, 0, stuck.append)
        try:
            time.sleep(1.5)
            events.append("went on after the call")  # never: the stop lands first
        except BudgetExceeded as exc:
            events.append(exc.reason("sleepy"))
        finally:
            watchdog.end(watch)

    thread = threading.Thread(target=step, daemon=True)
    began = time.monotonic()
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not stuck and time.monotonic() < deadline:
            time.sleep(0.02)
        given_up = time.monotonic() - began
        thread.join(10)
    finally:
        watchdog.stop()
    assert [w.key for w in stuck] == ["m1"] and stuck[0].stuck
    assert given_up < 1.5, given_up  # before the call returned
    assert events == ["exceeded its time budget in step sleepy (0.2s); the step was stopped"]
    assert watchdog.abandoned == 1 and watchdog.running == []


class BlockOptions(Options):
    seconds: float = Field(description="how long one call blocks")


class Block(Step):
    """Blocks in one C call (`time.sleep`), the way a step waiting in a library does: the
    watchdog's exception cannot get in until the call returns."""

    kind = "test.block"
    Options = BlockOptions
    main_option = "seconds"

    def process(self, message: Message) -> Message:
        if message.payload.get("block"):
            time.sleep(self.options.seconds)
        return message


class Registered:
    """An entry point found in the `flowyard.steps` group, as an installed package gives."""

    def __init__(self, cls: type[Step]) -> None:
        self.cls, self.dist = cls, None

    def load(self) -> type[Step]:
        return self.cls


async def test_a_step_stuck_in_one_call_is_dead_lettered_and_its_batch_goes_on(
        tmp_path: Path, sqlite_store: Store) -> None:
    steps = registry._group(registry.STEP_GROUP)
    steps["test.block"] = Registered(Block)
    try:
        flows = tmp_path / "flows"
        (flows / "in").mkdir(parents=True)
        (flows / "blocking.yaml").write_text(
            "apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: blocking}\nbudget: {time: 500ms}\n"
            "source: {file: {path: in, poll: 50ms, settle: 0s}}\nsteps:\n  - json.parse: {}\n"
            "  - name: wait\n    test.block: 8\ntargets:\n  - file: {path: out}\n")
        for n, block in enumerate((False, True, False, False)):  # one batch (one loop)
            (flows / "in" / f"m{n}.json").write_text(json.dumps({"n": n, "block": block}))
        runtime = runtime_for(sqlite_store, config(flows, processors=1, run_sources=False))
        version = sqlite_store.deployments("blocking")[0].version
        sqlite_store.accept_many([
            Message(payload=(flows / "in" / f"m{n}.json").read_bytes(), content_type="application/json",
                    flow="blocking", flow_version=version) for n in range(4)])
        await runtime.start()
        began = time.monotonic()
        try:
            [dead] = await until(lambda: sqlite_store.dead_letters(with_input=True), timeout=30,
                                 what="the stuck one")
            await until(lambda: sqlite_store.count_messages(state="done") == 3, timeout=30,
                        what="the three others done")
            took = time.monotonic() - began
        finally:
            await runtime.stop()
    finally:
        del steps["test.block"]
    assert dead.step == "wait" and json.loads(dead.input_text)["n"] == 1
    assert dead.reason == ("step 'wait': exceeded its time budget in step wait (0.5s); the step was "
                           "stopped (it did not give way: stuck in a call that cannot be interrupted)")
    assert took < 8, took  # the others did not wait for the call to return
    assert runtime.watchdog.abandoned == 1
