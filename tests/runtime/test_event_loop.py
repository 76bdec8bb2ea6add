"""The runtime's event loop: `flowyard worker` runs on uvloop with httptools parsing HTTP
where they are installed (the default install has both), and on Python's own loop with
`--event-loop asyncio`; either way a webhook is stored and delivered and SIGTERM ends the
process cleanly (uvloop handles signals and threads its own way)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from rthelp import free_port, wait_sync

FLOWYARD = str(Path(sys.executable).parent / "flowyard")

FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata: {name: hooked}
source:
  http: {allow_unauthenticated: true}
steps:
  - jmespath: "{order: id}"
targets:
  - file: {path: ../out, name: "{{ data.order }}.json"}
"""



def posted(url: str, body: dict[str, int]) -> int:
    try:
        return httpx.post(url, json=body, timeout=5).status_code
    except httpx.HTTPError:
        return 0


@pytest.mark.parametrize(("choice", "loop"), [("auto", "uvloop"), ("asyncio", "asyncio")])
def test_a_worker_serves_webhooks_on_the_chosen_event_loop(tmp_path: Path, choice: str, loop: str) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "hooked.yaml").write_text(FLOW, encoding="utf-8")
    env = {**os.environ, "FLOWYARD_DATA_DIR": str(tmp_path / ".flowyard")}
    env.pop("FLOWYARD_DATABASE_URL", None)
    port, log = free_port(), tmp_path / "worker.log"
    worker = subprocess.Popen(
        [FLOWYARD, "worker", "--flows", str(tmp_path / "flows"), "--deploy-new", "--port", str(port),
         "--event-loop", choice, "--log-file", str(log)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/hooks/hooked"
        wait_sync(lambda: posted(url, {"id": 1}) == 202, timeout=90, what="the webhook accepting")
        assert [posted(url, {"id": n}) for n in range(2, 12)] == [202] * 10
        out = tmp_path / "out"
        wait_sync(lambda: out.is_dir() and len(list(out.glob("*.json"))) == 11, timeout=30,
                  what="11 files delivered")
        assert json.loads((out / "7.json").read_text()) == {"order": 7}
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    said = [json.loads(line)["msg"] for line in log.read_text().splitlines() if line.startswith("{")]
    assert f"event loop: {loop}" in said
    assert "HTTP parser: httptools" in said


def test_asking_for_a_loop_that_is_not_there_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowyard.runtime.cli import event_loop_factory

    monkeypatch.setitem(sys.modules, "uvloop", None)  # as where uvloop is not installed
    assert event_loop_factory("auto") == ("asyncio", None)
    with pytest.raises(SystemExit, match="uvloop is not installed"):
        event_loop_factory("uvloop")
