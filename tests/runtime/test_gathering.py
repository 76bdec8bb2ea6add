"""Batches grow while messages keep arriving (`RuntimeConfig.gather`): after a claim that
found some messages but not a whole batch, a processing loop waits before claiming
again, so the per-batch costs are shared; a message after a quiet spell is claimed at
once. The claims are the store's own (`queue.claim_messages`), counted as they return."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from rthelp import order, runtime_for, until, write_flow

from flowyard.message import Message
from flowyard.runtime.runtime import RuntimeConfig
from flowyard.store import queue
from flowyard.store.api import Store


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every non-empty claim the runtime makes."""
    sizes: list[int] = []
    claim = queue.claim_messages

    def counted(*args: Any, **kwargs: Any) -> list[queue.ClaimedMessage]:
        got = claim(*args, **kwargs)
        if got:
            sizes.append(len(got))
        return got

    monkeypatch.setattr(queue, "claim_messages", counted)
    return sizes


async def trickle(store: Store, runtime: Any, count: int, every: float) -> None:
    """`count` messages stored one at a time, `every` seconds apart."""
    version = runtime.flows.current["orders"].version
    for n in range(count):
        message = Message(payload=order(n), content_type="application/json", flow="orders",
                          flow_version=version)
        await asyncio.to_thread(store.accept, message)
        await asyncio.sleep(every)


@pytest.mark.parametrize(("gather", "batches"), [(1.0, "few"), (0.0, "many")])
async def test_a_loop_lets_its_batch_grow_while_messages_arrive(
        tmp_path: Path, sqlite_store: Store, claims: list[int], gather: float, batches: str) -> None:
    flows = tmp_path / "flows"
    write_flow(flows)
    runtime = runtime_for(sqlite_store, RuntimeConfig(
        flows_dir=flows, processors=1, idle_poll=0.05, rescan=0.2, grace=5.0, gather=gather))
    await runtime.start()
    try:
        await until(lambda: "orders" in runtime.flows.current, what="the flow running")
        await trickle(sqlite_store, runtime, 40, every=0.015)  # about 0.6 s of arrivals
        await until(lambda: sqlite_store.count_messages(state="done") == 40, what="40 done")
    finally:
        await runtime.stop()
    assert sum(claims) == 40
    if batches == "few":  # a small first claim, then the rest after the wait
        assert len(claims) <= 3, claims
    else:  # claimed as they come, at every idle poll
        assert len(claims) >= 5, claims


async def test_a_message_after_a_quiet_spell_is_claimed_at_once(
        tmp_path: Path, sqlite_store: Store, claims: list[int]) -> None:
    flows = tmp_path / "flows"
    write_flow(flows)
    runtime = runtime_for(sqlite_store, RuntimeConfig(
        flows_dir=flows, processors=1, idle_poll=0.05, rescan=0.2, grace=5.0, gather=30.0))
    await runtime.start()
    try:
        await until(lambda: "orders" in runtime.flows.current, what="the flow running")
        await asyncio.sleep(0.3)  # idle: its last claims found nothing
        stored = time.monotonic()
        await trickle(sqlite_store, runtime, 1, every=0)
        await until(lambda: sqlite_store.count_messages(state="done") == 1, timeout=20,
                    every=0.02, what="the lone message done")
        waited = time.monotonic() - stored
    finally:
        await runtime.stop()
    assert claims == [1]
    assert waited < 10, waited  # not held for the 30 s gathering wait
