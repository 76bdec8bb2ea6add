"""Issue 17, items 2, 3 and 4 (XML, health, breakers), against the real `flowyard`
command and a real `flowyard worker` process: an XSLT transform that would run for
minutes (a dedupe idiom over 60,000 lines: 151 s; a doubling recursion: >60 s) is
stopped at its time limit with its worker process killed and the message failed;
48 MB of `<a/>` is refused before its tree is built (it peaked at 3.4 GB); a worker
whose claimed work stops moving says so on /healthz, and messages parked behind a
breaker move soon after the endpoint recovers, while other flows keep processing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

RUNTIME_TESTS = str(Path(__file__).resolve().parents[1] / "runtime")
if RUNTIME_TESTS not in sys.path:  # --import-mode=importlib: the helpers' folder by hand
    sys.path.insert(0, RUNTIME_TESTS)

from rthelp import RecordingServer, wait_sync  # noqa: E402

from flowyard.store.api import Store  # noqa: E402
from flowyard.store.database import make_engine  # noqa: E402
from flowyard.store.models import Delivery  # noqa: E402

FLOWYARD = str(Path(sys.executable).parent / "flowyard")
HEADER = "apiVersion: flowyard/v1\nkind: Flow\nmetadata: {{name: {name}}}\n"

DEDUPE_XSL = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><skus><xsl:for-each select="//line[not(@sku = preceding::line/@sku)]">
    <sku><xsl:value-of select="@sku"/></sku></xsl:for-each></skus></xsl:template>
</xsl:stylesheet>
"""

RECURSION_XSL = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template name="f"><xsl:param name="n"/><xsl:if test="$n > 0">
    <xsl:call-template name="f"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template>
    <xsl:call-template name="f"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template>
  </xsl:if></xsl:template>
  <xsl:template match="/"><r><xsl:call-template name="f"><xsl:with-param name="n" select="60"/>
  </xsl:call-template></r></xsl:template>
</xsl:stylesheet>
"""


def lines(count: int) -> bytes:
    return b"<order>" + b"".join(b'<line sku="S%d"/>\n' % n for n in range(count)) + b"</order>"


def write_flow(folder: Path, name: str, body: str, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, text in files.items():
        (folder / file_name).write_text(text, encoding="utf-8")
    path = folder / f"{name}.yaml"
    path.write_text(HEADER.format(name=name) + body, encoding="utf-8")
    return path


def marked_processes(mark: str) -> list[int]:
    """Processes (alive, not zombies) whose environment carries `mark`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"HOSTILE_MARK={mark}".encode() not in (entry / "environ").read_bytes():
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
        except OSError:
            continue
        found.append(int(entry.name))
    return found


def test_flowyard_test_stops_runaway_stylesheets_at_their_time_limit(tmp_path: Path) -> None:
    """One `flowyard test` run over each runaway stylesheet of the issue (each its own
    flow), every case expecting the time limit's error naming the step."""
    flows = tmp_path / "flows"
    expected = "step 'transform': the stylesheet ran longer than its time limit of 2s (option time_limit) and was stopped"
    for name, xsl, payload in (("dedupe", DEDUPE_XSL, lines(60_000)), ("recursion", RECURSION_XSL, b"<r/>")):
        (flows / name).mkdir(parents=True)
        (flows / name / "runaway.xml").write_bytes(payload)
        write_flow(flows / name, name, f"""\
source: {{file: {{path: in}}}}
steps:
  - name: transform
    xml.xslt: {{stylesheet: runaway.xsl, time_limit: 2, content_type: text/plain}}
targets:
  - file: {{path: out}}
tests:
  - {{name: runs away, input: runaway.xml, expect_error: "{expected}"}}
""", **{"runaway.xsl": xsl})
    mark = uuid.uuid4().hex
    started = time.monotonic()
    result = subprocess.run([FLOWYARD, "test", str(flows)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HOSTILE_MARK": mark})
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output  # both cases failed with the expected error
    assert "2 passed, 0 failed" in output
    assert "internal error" not in output and "Traceback" not in output
    assert elapsed < 2 * 2 + 90  # two limits plus generous slack for the command; unbounded: 151 s and >60 s
    assert marked_processes(mark) == []  # no transform left running


def test_flowyard_run_refuses_48_mb_of_empty_elements_in_little_memory(tmp_path: Path) -> None:
    flow = write_flow(tmp_path / "flows", "many", """\
source: {file: {path: in}}
steps:
  - name: read
    xml.parse: {}
targets:
  - file: {path: out}
""")
    big = tmp_path / "a.xml"
    big.write_bytes(b"<r>" + b"<a/>" * 12_000_000 + b"</r>")
    result = subprocess.run(["/usr/bin/time", "-f", "peak-kb %M", FLOWYARD, "run", str(flow), "--input", str(big)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert ("step 'read': the document has 12,000,001 elements, more than the limit of 2,000,000 "
            "(option max_elements)") in result.stderr
    peak_mb = int(result.stderr.rsplit("peak-kb ", 1)[1].split()[0]) / 1024
    assert peak_mb < 600, f"peak {peak_mb:.0f} MB"  # 3.4 GB before; ~100 MB measured


def parked(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.state == "pending", Delivery.last_error.startswith("not attempted: circuit open"))) or 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def erp() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


def health(base: str, token: str | None = None) -> tuple[int | None, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = httpx.get(f"{base}/healthz", headers=headers, timeout=2)
    except httpx.HTTPError:
        return None, {}
    return answer.status_code, answer.json()


@pytest.mark.slow
def test_a_worker_bounds_a_runaway_stylesheet_reports_stalls_and_recovers_parked_deliveries(
        tmp_path: Path, erp: RecordingServer) -> None:
    flows = tmp_path / "flows"
    write_flow(flows, "runaway", """\
source: {file: {path: ../in/runaway, poll: 100ms, settle: 0s}}
steps:
  - name: transform
    xml.xslt: {stylesheet: runaway.xsl, time_limit: 3}
targets:
  - file: {path: ../out/runaway}
""", **{"runaway.xsl": DEDUPE_XSL})
    write_flow(flows, "orders", """\
source: {file: {path: ../in/orders, poll: 100ms, settle: 0s}}
steps:
  - json.parse: {}
targets:
  - file: {path: ../out/orders}
""")
    write_flow(flows, "to-erp", f"""\
source: {{file: {{path: ../in/erp, poll: 100ms, settle: 0s}}}}
steps:
  - json.parse: {{}}
targets:
  - http:
      url: {erp.url}
      allow_networks: [loopback]
      idempotency_header: Idempotency-Key
      timeout: 20s
    retry: {{attempts: 100, backoff: 100ms, max_backoff: 1s}}
""")
    for folder in ("runaway", "orders", "erp"):
        (tmp_path / "in" / folder).mkdir(parents=True)
    token = "hostile-health-token-" + uuid.uuid4().hex[:8]
    env = {**os.environ, "FLOWYARD_DATA_DIR": str(tmp_path / ".flowyard"), "FLOWYARD_METRICS_TOKEN": token}
    env.pop("FLOWYARD_DATABASE_URL", None)
    port = free_port()
    log_file = tmp_path / "worker.log"
    worker = subprocess.Popen([FLOWYARD, "worker", "--flows", str(flows), "--deploy-new", "--port", str(port),
                               "--stall-after", "1", "--log-file", str(log_file)],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_sync(lambda: health(base)[0] == 200, timeout=90, what="the worker up")
        store = Store(make_engine(f"sqlite:///{tmp_path / '.flowyard' / 'flowyard.db'}"))

        # a runaway stylesheet: stopped at its limit, a dead letter; the other flow goes on
        (tmp_path / "in" / "runaway" / "big.xml").write_bytes(lines(60_000))
        for n in range(5):
            (tmp_path / "in" / "orders" / f"o{n}.json").write_text(json.dumps({"n": n}))
        started = time.monotonic()
        dead = wait_sync(lambda: store.dead_letters(), timeout=60, what="the runaway message dead-lettered")
        assert time.monotonic() - started < 3 + 30
        assert "the stylesheet ran longer than its time limit of 3s" in dead[0].reason
        wait_sync(lambda: len(list((tmp_path / "out" / "orders").glob("*"))) == 5, timeout=60,
                  what="the other flow's 5 messages delivered")

        # a delivery that hangs: /healthz says the claimed work stopped moving, then recovers
        erp.delay = 3.5
        (tmp_path / "in" / "erp" / "slow.json").write_text('{"n": "slow"}')
        _code, body = wait_sync(lambda: (h := health(base, token))[0] == 503 and h, timeout=30,
                               what="/healthz unhealthy while the delivery hangs")
        assert body["status"] == "unhealthy" and "made no progress" in json.dumps(body["problems"])
        assert health(base) == (503, {"status": "unhealthy"})  # no detail without the token
        wait_sync(lambda: health(base)[0] == 200, timeout=30, what="/healthz healthy again")
        erp.delay = 0.0

        # the endpoint down: the breaker parks the messages; back up: they move within a minute
        erp.down = True
        for n in range(8):
            (tmp_path / "in" / "erp" / f"e{n}.json").write_text(json.dumps({"n": n}))
        wait_sync(lambda: parked(store) >= 3, timeout=60, what="deliveries parked behind the open breaker")
        recovered = time.monotonic()
        erp.down = False
        wait_sync(lambda: len(erp.applied) == 9, timeout=60, what="the parked messages delivered")
        assert time.monotonic() - recovered < 60
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0
