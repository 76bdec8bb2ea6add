"""Helpers of the runtime tests: a small flow, waiting with a bound, an HTTP target
that records idempotency keys and can be made down or slow."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata:
  name: {name}
  labels: {{plant: MX01, partner: ACME}}
source:
  file: {{path: inbox, pattern: "*.json", poll: 50ms, settle: 0s}}
steps:
  - json.parse: {{}}
  - name: pick
    jmespath: "{{id: id, qty: qty}}"
  - name: render
    jinja:
      template: '{{"order": {{{{ id }}}}, "qty": {{{{ qty }}}}{extra}}}'
      content_type: application/json
targets:
{targets}
"""

FILE_TARGET = """\
  - file: {{path: {path}}}
    retry: {{attempts: {attempts}, backoff: 50ms, max_backoff: 200ms}}
"""

HTTP_TARGET = """\
  - http:
      url: {url}
      method: POST
      allow_networks: [loopback]
      idempotency_header: Idempotency-Key
      timeout: {timeout}
    retry: {{attempts: {attempts}, backoff: 50ms, max_backoff: 300ms}}
"""


def write_flow(folder: Path, *, name: str = "orders", targets: str | None = None,
               extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inbox").mkdir(exist_ok=True)
    text = FLOW.format(name=name, extra=extra,
                       targets=targets or FILE_TARGET.format(path="out", attempts=3))
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def order(n: int) -> bytes:
    return json.dumps({"id": n, "qty": n % 7 + 1}).encode()


async def until(predicate: Callable[[], Any], timeout: float = 60.0, every: float = 0.1,
                what: str = "condition") -> Any:
    """Wait for predicate() to be truthy (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {value!r})")
        await asyncio.sleep(every)


def free_port() -> int:
    """A TCP port free on loopback now (for a server the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_sync(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {value!r})")
        time.sleep(0.1)




class RecordingServer:
    """An HTTP target that applies each idempotency key once (an idempotent target) and
    counts every request; `down` answers 503, `delay` makes it slow."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.applied: dict[str, bytes] = {}
        self.down = False
        self.delay = 0.0
        self.inflight = 0
        self.most_inflight = 0  # the most requests it was answering at once
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if len(body) != length:  # the client went away mid-body: nothing applied
                    return
                key = self.headers.get("idempotency-key", "")
                with server.lock:
                    server.inflight += 1
                    server.most_inflight = max(server.most_inflight, server.inflight)
                try:
                    self.answer(key, body)
                finally:
                    with server.lock:
                        server.inflight -= 1

            def answer(self, key: str, body: bytes) -> None:
                if server.delay:
                    time.sleep(server.delay)
                if server.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                with server.lock:
                    server.requests[key] += 1
                    server.applied.setdefault(key, body)
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.request_queue_size = 256
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/orders"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()




def runtime_for(store: Any, config: Any) -> Any:
    """A runtime for the flows of `config.flows_dir`, each deployed first (through the
    gate, as `flowyard deploy` does): the runtime runs deployments, not files."""
    from flowyard.operations.deployments import deploy_paths
    from flowyard.runtime.runtime import Runtime

    if any(config.flows_dir.glob("*.yaml")):
        deploy_paths(store, [config.flows_dir], who="test")
    return Runtime(store, config)
