"""Fixtures for the XML tests: a loopback HTTP spy, a FIFO that notices being opened,
and a helper that runs a few steps as a real flow (loader + engine)."""

from __future__ import annotations

import contextlib
import errno
import http.server
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowyard.engine import Pipeline, RunResult
from flowyard.loader import load_flow
from flowyard.message import Message


class Spy:
    """An HTTP server on 127.0.0.1 that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        spy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                spy.requests.append(self.path)
                body = b'<!ENTITY leaked "LEAKED-OVER-HTTP">'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_spy() -> Iterator[Spy]:
    spy = Spy()
    yield spy
    spy.close()


class FifoWatch:
    """A named pipe standing in for a secret file: opening it for reading is detected
    (a non-blocking open for writing succeeds only while a reader has it open)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.opened = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                self._stop.wait(0.001)
                continue
            self.opened = True
            with contextlib.suppress(OSError):
                os.write(fd, b"TOP-SECRET-CONTENT")
            os.close(fd)
            return

    def stop(self) -> bool:
        self._stop.wait(0.05)  # give a late open a chance to be seen
        self._stop.set()
        self._thread.join()
        self.path.unlink()
        return self.opened


@pytest.fixture
def fifo(tmp_path: Path) -> Callable[[str], FifoWatch]:
    def make(name: str = "secret.txt") -> FifoWatch:
        return FifoWatch(tmp_path / name)

    return make


FLOW = """apiVersion: flowyard/v1
kind: Flow
metadata: {{name: xml-test}}
source:
  file: {{path: in, pattern: "*.xml"}}
steps:
{steps}
targets:
  - file: {{path: out}}
"""


@pytest.fixture
def run_steps(write_flow: Callable[..., Path]) -> Callable[..., RunResult]:
    """Load a flow with these steps (YAML list items) and run one payload through it."""

    def run(steps: str, payload: bytes, **files: str) -> RunResult:
        path = write_flow(FLOW.format(steps=steps), **files)
        flow = load_flow(path)
        return Pipeline(flow).run(Message(payload, content_type="application/xml"))

    return run


@pytest.fixture
def flow_text() -> Callable[[str], str]:
    """The text of a test flow with these steps (YAML list items)."""
    return lambda steps: FLOW.format(steps=steps)
