"""UI latency: validate-as-you-type and playground preview on a 300-line flow, and the
runs page and the dashboard with 100,000 messages in the store. Prints p50/p95 (targets:
under 100 ms for validation and preview, under 300 ms for the runs page). Validation and
the preview after a mapping change are measured twice, interleaved: with the UI's fast
parse and with the round trip only (the code before it), with their ratio. Not a test:
figures only.

    .venv/bin/python bench/ui.py [--messages 100000] [--rounds 50] [--no-freeze]

Requests go through the whole Litestar app in process (routing, session lookup, CSRF
check, handler, template), with Litestar's test client; the network is not measured.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def big_flow(lines: int = 300) -> str:
    """A valid flow of about `lines` lines: many mapping steps written as block scalars."""
    head = """\
# A large flow for the UI benchmark: many mapping steps
apiVersion: flowyard/v1
kind: Flow
metadata:
  name: bench-orders
  description: benchmark flow with many steps
  labels: {plant: MX01, partner: ERP, domain: production}
source:
  file: {path: inbox/bench, pattern: "*.json"}
steps:
"""
    body: list[str] = []
    n = 0
    while len((head + "".join(body)).splitlines()) < lines - 6:
        n += 1
        body.append(
            f"""  - name: map-{n}
    jmespath: |
      {{
        order: order,
        lines: lines[].{{sku: sku, qty: qty, uom: uom}},
        total: sum(lines[].qty),
        step: `{n}`
      }}
"""
        )
    tail = """  - json.render: {}
targets:
  - file: {path: outbox/bench}
    retry: {attempts: 3}
"""
    return head + "".join(body) + tail


def main() -> int:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--no-freeze", action="store_true", help="undo the app's gc.freeze() at start-up, to compare")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="flowyard-bench-ui-"))
    os.environ["FLOWYARD_DATA_DIR"] = str(work / "data")
    os.environ.pop("FLOWYARD_DATABASE_URL", None)

    from litestar.testing import TestClient
    from sqlalchemy import insert, select, update

    from flowyard.store import database as db
    from flowyard.store.models import DeadLetter, StoredMessage
    from flowyard_ui import auth, fastyaml
    from flowyard_ui.app import create_app

    flows = work / "flows"
    flows.mkdir()
    text = big_flow()
    (flows / "bench-orders.yaml").write_text(text)
    engine = db.make_engine(f"sqlite:///{work / 'store.db'}")
    app = create_app(flows_dir=flows, engine=engine, secret="bench-" + "x" * 30)
    auth.create_user(engine, "bench", "bench password long", "admin")

    print(f"flow: {len(text.splitlines())} lines, {text.count('jmespath:')} mapping steps", file=sys.stderr)
    began = time.perf_counter()
    now = time.time()

    def batch_row(i: int) -> dict[str, Any]:
        payload = json.dumps({"order": f"PO-{i}", "lines": [{"sku": "A", "qty": 1}]}).encode()
        return {
            "id": uuid.uuid4().hex,
            "correlation_id": uuid.uuid4().hex,
            "flow": "bench-orders" if i % 3 else "other-flow",
            "flow_version": "v1",
            "state": ("done", "done", "done", "dead", "received")[i % 5],
            "content_type": "application/json",
            "payload": payload,
            "size": len(payload),
            "source": {"file": f"po-{i}.json"},
            "headers": {},
            "plant": ("MX01", "DE02", "US03")[i % 3],
            "partner": ("ERP", "SUPPLIERX")[i % 2],
            "replay_of": None,
            "attempt": 1,
            "outputs": 1,
            "created_at": now - (args.messages - i) * 0.5,
            "updated_at": now,
            "lease_token": 0,
            "finished_at": now,
            "error": "quantity must be positive" if i % 5 == 3 else None,
        }

    def dead_letter(row: dict[str, Any]) -> dict[str, Any]:
        return {"message_id": row["id"], "correlation_id": row["correlation_id"], "flow": row["flow"],
                "flow_version": "v1", "kind": "step", "reason": row["error"], "reason_kind": row["error"],
                "step": "check", "input": row["payload"], "input_content_type": "application/json",
                "trace": [], "status": "open", "created_at": row["created_at"] + 1}

    batch: list[dict[str, Any]] = []
    for i in range(args.messages):
        batch.append(batch_row(i))
        if len(batch) == 5000 or i == args.messages - 1:
            with engine.begin() as c:
                c.execute(insert(StoredMessage), batch)
                c.execute(insert(DeadLetter), [dead_letter(r) for r in batch if r["state"] == "dead"])
            batch = []
    print(f"stored {args.messages} messages in {time.perf_counter() - began:.1f} s", file=sys.stderr)

    sample = json.dumps({"order": "PO-1", "lines": [{"sku": f"S{i}", "qty": i, "uom": "EA"} for i in range(20)]})
    with TestClient(app, base_url="https://testserver.local") as client:
        if args.no_freeze:
            import gc

            gc.unfreeze()
        page = client.get("/login")
        token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        client.post("/login", data={"username": "bench", "password": "bench password long", "_csrf_token": token})
        token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/flows").text).group(1)  # type: ignore[union-attr]
        headers = {"HX-Request": "true", "X-CSRFToken": token}

        def timed(label: str, call: object, rounds: int, before: Any = None) -> None:
            """Wall time, and the process's CPU time (the request's work in every thread
            of this process: on a busy machine the wall time also holds the waits)."""
            times, cpu = [], []
            for i in range(rounds + 3):
                if before is not None:
                    before(i)  # not timed
                start, start_cpu = time.perf_counter(), time.process_time()
                response = call(i)  # type: ignore[operator]
                elapsed, used = time.perf_counter() - start, time.process_time() - start_cpu
                assert response.status_code == 200, (label, response.status_code, response.text[:300])
                if i >= 3:  # the first calls warm caches (imports, compiled templates)
                    times.append(elapsed)
                    cpu.append(used)
            print(
                f"{label:<64} p50 {percentile(times, 50) * 1000:7.1f} ms   p95 {percentile(times, 95) * 1000:7.1f} ms"
                f"   cpu p50 {percentile(cpu, 50) * 1000:6.1f} p95 {percentile(cpu, 95) * 1000:6.1f} ms"
                f"   (n={len(times)}, mean {statistics.mean(times) * 1000:.1f} ms)"
            )

        def edit(i: int) -> str:
            return text.replace("step: `1`", f"step: `{i}`")  # a different text each time, as typing

        def paired(label: str, call: object, rounds: int) -> None:
            """The UI's fast parse against the round trip alone, rounds interleaved so
            both sides see the same machine load."""
            times: dict[bool, list[float]] = {True: [], False: []}
            try:
                for i in range(rounds + 3):
                    for fast in (True, False) if i % 2 else (False, True):
                        fastyaml.ENABLED = fast
                        start = time.perf_counter()
                        # each side its own texts: a text seen before would be a cache hit
                        response = call(i if fast else i + 1_000_000)  # type: ignore[operator]
                        elapsed = time.perf_counter() - start
                        assert response.status_code == 200, (label, response.status_code, response.text[:300])
                        if i >= 3:
                            times[fast].append(elapsed)
            finally:
                fastyaml.ENABLED = True
            for fast, name in ((True, "fast parse"), (False, "round trip only")):
                got = times[fast]
                print(
                    f"{label + ' [' + name + ']':<64} p50 {percentile(got, 50) * 1000:7.1f} ms   p95 {percentile(got, 95) * 1000:7.1f} ms   (n={len(got)})"
                )
            ratio = percentile(times[False], 95) / percentile(times[True], 95)
            print(f"{'':<64} p95 round trip / fast: {ratio:.1f}x")

        paired(
            "validate as you type (300-line flow)",
            lambda i: client.post("/flows/bench-orders/check", data={"yaml": edit(i)}, headers=headers),
            args.rounds,
        )
        paired(
            "playground preview, mapping changed each time",
            lambda i: client.post(
                "/flows/bench-orders/playground/run",
                data={"yaml": edit(i), "sample": sample, "sample_name": "s.json"},
                headers=headers,
            ),
            args.rounds,
        )
        timed(
            "playground preview, sample changed each time",
            lambda i: client.post(
                "/flows/bench-orders/playground/run",
                data={"yaml": text, "sample": sample.replace("PO-1", f"PO-{i}"), "sample_name": "s.json"},
                headers=headers,
            ),
            args.rounds,
        )
        # the mapper's live preview of the last mapping step (its input: the sample run
        # through the 35 steps before it), one field's expression changed each time
        last = text.count("jmespath:")
        mapper_url = f"/flows/bench-orders/mapper/{last}"
        mapper_page = client.get(mapper_url).text
        fields: dict[str, list[str]] = {
            name: [html.unescape(v) for v in re.findall(rf'name="{name}" value="([^"]*)"', mapper_page)]
            for name in ("path", "kind", "expr", "src")
        }
        order_at = fields["path"].index("/order")

        def mapper_preview(i: int, changed_sample: bool = False) -> object:
            exprs = list(fields["expr"])
            exprs[order_at] = f"join('-', [order, '{i}'])"
            posted = {**fields, "expr": exprs, "sample": [sample.replace("PO-1", f"PO-{i}") if changed_sample else sample],
                      "sample_name": ["s.json"], "base": [""], "many": [""]}
            response = client.post(f"{mapper_url}/preview", data=posted, headers=headers)
            assert (f"PO-{i}-{i}" if changed_sample else f"PO-1-{i}") in response.text, response.text[:300]
            return response

        timed(f"mapper preview, step {last} of {last}, a field changed each time", mapper_preview, args.rounds)
        timed(
            f"mapper preview, step {last} of {last}, sample changed each time",
            lambda i: mapper_preview(i, changed_sample=True),
            args.rounds,
        )
        timed(f"runs page, full ({args.messages} messages)", lambda i: client.get("/runs"), args.rounds)
        timed(
            "runs page, htmx refresh of the rows",
            lambda i: client.get("/runs", headers={"HX-Request": "true", "HX-Target": "run-rows"}),
            args.rounds,
        )
        timed(
            "runs page, filtered by flow and state",
            lambda i: client.get(
                "/runs?flow=bench-orders&state=dead", headers={"HX-Request": "true", "HX-Target": "run-rows"}
            ),
            args.rounds,
        )
        timed(
            "runs page, filtered by plant, older page",
            lambda i: client.get(
                "/runs?plant=DE02&offset=500", headers={"HX-Request": "true", "HX-Target": "run-rows"}
            ),
            args.rounds,
        )
        start = time.perf_counter()
        client.get("/dashboard", headers={"HX-Request": "true", "HX-Target": "dash-body"})
        print(f"{'dashboard, first refresh after start (reads the 72 hours once)':<64} {(time.perf_counter() - start) * 1000:7.1f} ms")
        timed(
            f"dashboard, 24 hours with p50/p95 ({args.messages} messages)",
            lambda i: client.get("/dashboard", headers={"HX-Request": "true", "HX-Target": "dash-body"}),
            args.rounds,
        )

        def traffic(i: int) -> None:
            """Between two refreshes: 10 messages arrive and 10 waiting ones finish."""
            at = time.time()
            fresh = [dict(batch_row(args.messages + i * 10 + k), created_at=at, updated_at=at, state="received",
                          finished_at=None) for k in range(10)]
            with engine.begin() as c:
                c.execute(insert(StoredMessage), fresh)
                waiting = c.scalars(select(StoredMessage.id).where(StoredMessage.state == "received")
                                    .order_by(StoredMessage.created_at).limit(10)).all()
                c.execute(update(StoredMessage).where(StoredMessage.id.in_(waiting))
                          .values(state="done", finished_at=at + 0.2, updated_at=at))

        timed(
            "dashboard, 24 hours, 10 new and 10 finished messages before each refresh",
            lambda i: client.get("/dashboard", headers={"HX-Request": "true", "HX-Target": "dash-body"}),
            args.rounds,
            before=traffic,
        )
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
