"""Issue 15 item 7: a message's timeline is in the order things happened. A processing
attempt starts before its steps; sorted by that start, a failed attempt showed above the
steps it ran. The message here is processed by the real runtime."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

from litestar import Litestar

from flowyard.message import Message
from flowyard.operations.deployments import deploy_paths
from flowyard.runtime.runtime import Runtime, RuntimeConfig

from .conftest import UiClient

FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata:
  name: tl-orders
  labels: {plant: MX01, partner: ERP}
source:
  file: {path: inbox/tl-orders, pattern: "*.json", poll: 1s, settle: 0s}
steps:
  - name: pick
    jmespath: "{order: po, qty: qty}"
  - name: per-unit
    jinja:
      template: '{"order": "{{ data.order }}", "unit": {{ 10 / data.qty }}}'
      content_type: application/json
targets:
  - file: {path: outbox/tl-orders}
"""


def process(app: Litestar, flows: Path, payload: dict[str, object]) -> str:
    """Deploy tl-orders, give the runtime one message and wait until it is finished."""
    store = app.state.ui.store
    (flows / "tl-orders.yaml").write_text(FLOW, encoding="utf-8")
    deploy_paths(store, [flows / "tl-orders.yaml"], who="test")
    version = store.flow_state("tl-orders").version
    message = Message(payload=json.dumps(payload).encode(), content_type="application/json",
                      flow="tl-orders", flow_version=version,
                      source={"connector": "file", "file": "zero.json"},
                      headers={"labels": {"plant": "MX01", "partner": "ERP"}})
    store.accept(message)

    async def run() -> None:
        runtime = Runtime(store, RuntimeConfig(flows_dir=flows, rescan=0.1, idle_poll=0.05,
                                               run_sources=False, grace=5.0))
        await runtime.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                detail = store.message(message.id)
                if detail is not None and detail.summary.finished_at:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the runtime did not finish the message")
        finally:
            await runtime.stop()

    asyncio.run(run())
    return message.id


def test_a_failed_attempt_shows_after_the_steps_it_ran(app: Litestar, flows: Path, viewer: UiClient) -> None:
    message_id = process(app, flows, {"po": "PO-9", "qty": 0})
    detail = app.state.ui.store.message(message_id)
    assert detail is not None and detail.summary.state == "dead"
    [attempt] = detail.attempts
    assert attempt.started_at < detail.traces[0].at  # the cause: it began before its steps
    html = viewer.get(f"/runs/{message_id}").text
    timeline = html[html.index('<ol class="timeline">'):html.index("</ol>")]
    titles = re.findall(r"<strong>([^<]+)</strong>", timeline)
    assert titles == ["received zero.json", "pick", "per-unit", "processing (attempt 1)",
                      "dead letter (per-unit)", "dead"], titles
