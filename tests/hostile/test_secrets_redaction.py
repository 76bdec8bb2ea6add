"""Issue 17, item 5: `${env:NAME}` values are redacted like `${secret:NAME}` ones, short
secrets are redacted where they stand as a whole word, and the common encodings of every
secret (base64 standard and URL-safe, padded or not, hex, URL encoding) are redacted too:
in the log, in fy_dead_letters.reason and in fy_attempts.error, through the real runtime
against a real HTTP server on loopback that echoes the token back."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import text

RUNTIME_TESTS = str(Path(__file__).resolve().parents[1] / "runtime")
if RUNTIME_TESTS not in sys.path:  # --import-mode=importlib: the helpers' folder by hand
    sys.path.insert(0, RUNTIME_TESTS)

from rthelp import runtime_for, until  # noqa: E402

from flowyard.runtime.runtime import RuntimeConfig  # noqa: E402
from flowyard.secrets import RedactingFilter, Redactor, Secrets, encodings, redactor  # noqa: E402
from flowyard.store.api import Store  # noqa: E402
from flowyard.store.database import make_engine  # noqa: E402
from flowyard.store.migrations import upgrade  # noqa: E402


def fresh() -> str:
    """A token no other test has made the process-wide redactor remember."""
    return "tok-" + secrets.token_hex(8)


def echoes(value: str) -> dict[str, str]:
    raw = value.encode()
    return {
        "raw": value,
        "base64": base64.b64encode(raw).decode(),
        "base64-unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64-urlsafe": base64.urlsafe_b64encode(raw).decode(),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "url": quote(value, safe=""),
        "basic": base64.b64encode(b"flowyard:" + raw).decode(),  # an echoed Basic credential
    }


def test_env_references_are_remembered_like_secrets() -> None:
    token = fresh()
    assert Secrets(environ={"WMS_TOKEN": token}).resolve("Bearer ${env:WMS_TOKEN}") == f"Bearer {token}"
    assert redactor.redact(f"the server said: bad token {token}") == "the server said: bad token ***"


@pytest.mark.parametrize("form", list(echoes("x").keys()))
def test_every_common_encoding_is_redacted(form: str) -> None:
    value = "p@ss/w+rd=" + secrets.token_hex(6) + "~é"
    r = Redactor()
    r.remember(value)
    shown = echoes(value)[form]
    assert shown not in r.redact(f"401: {shown} is not valid")
    assert r.redact(f"401: {shown} is not valid").startswith("401: ")
    assert r.redact(f'{{"echo": "{shown}"}}').count("***") >= 1


def test_encodings_are_the_ones_documented() -> None:
    forms = encodings("a b/c")
    assert {"a b/c", "a%20b%2Fc", "a+b%2Fc", "YSBiL2M=", "YSBiL2M", "6120622f63", "6120622F63"} <= forms


@pytest.mark.parametrize("short", ["7", "ab", "x9Z"])
def test_short_secrets_are_redacted_where_they_stand_as_a_word(short: str) -> None:
    r = Redactor()
    r.remember(short)
    assert r.redact(f"pin={short}; retry") == "pin=***; retry"
    assert r.redact(f"token {short} refused") == "token *** refused"
    assert r.redact(f'{{"pin": "{short}"}}') == '{"pin": "***"}'
    # inside a longer word or number it is ordinary text, left alone
    for text_ in (f"_{short}_", f"{short}00", f"zz{short}", "attempts 12345 over 99 lines"):
        if text_ != short:
            assert r.redact(text_) == text_
    b64 = base64.b64encode(short.encode()).decode()
    assert r.redact(f"echo {b64} back") == "echo *** back"


def test_redaction_is_stable_and_leaves_the_marker_alone() -> None:
    r = Redactor()
    r.remember("*")
    r.remember("***")
    r.remember("")
    assert r.redact("a *** b") == "a *** b"
    r.remember("s3cr3t-value")
    once = r.redact("x s3cr3t-value y")
    assert once == "x *** y" and r.redact(once) == once


def test_the_log_filter_scrubs_env_values_and_encodings(caplog: pytest.LogCaptureFixture) -> None:
    token = fresh()
    Secrets(environ={"API_KEY": token}).resolve("${env:API_KEY}")
    logger = logging.getLogger("flowyard.test.hostile-redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for shown in echoes(token).values():
            logger.warning("peer answered %s", shown)
    assert token not in caplog.text
    assert all(shown not in caplog.text for shown in echoes(token).values())
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(echoes(token)) and all("***" in line for line in lines)


# ---------------------------------------------------------------- the runtime's way

FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata: {{name: echoing}}
source:
  file: {{path: inbox, pattern: "*.json", poll: 50ms, settle: 0s}}
steps:
  - json.parse: {{}}
targets:
  - http:
      url: {url}
      headers: {{Authorization: "Bearer ${{env:ECHO_TOKEN}}", X-Pin: "${{secret:ECHO_PIN}}"}}
      allow_networks: [loopback]
    retry: {{attempts: 2, backoff: 50ms, max_backoff: 100ms}}
"""


class Echo:
    """An HTTP server that refuses every request, echoing the credentials it was sent in
    every common encoding (as a careless API's error message does)."""

    def __init__(self, status: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                token = self.headers.get("authorization", "").removeprefix("Bearer ")
                pin = self.headers.get("x-pin", "")
                body = json.dumps({"error": "bad credentials", "pin": pin, **echoes(token)}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/orders"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("FLOWYARD_DATA_DIR", str(tmp_path / "data"))
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    yield Store(engine)
    engine.dispose()


@pytest.mark.parametrize("status", [400, 503])  # refused at once; retried, then dead
async def test_a_server_echoing_the_token_leaves_no_trace_of_it_in_the_store_or_log(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch, status: int,
        caplog: pytest.LogCaptureFixture) -> None:
    token, pin = fresh(), "k7"  # an env token, and a secret under 4 characters
    monkeypatch.setenv("ECHO_TOKEN", token)
    monkeypatch.setenv("ECHO_PIN", pin)
    echo = Echo(status)
    flows = tmp_path / "flows"
    (flows / "inbox").mkdir(parents=True)
    (flows / "echoing.yaml").write_text(FLOW.format(url=echo.url), encoding="utf-8")
    runtime = runtime_for(store, RuntimeConfig(flows_dir=flows, rescan=0.2, idle_poll=0.05,
                                               breaker_threshold=1000))
    await runtime.start()
    try:
        with caplog.at_level(logging.INFO):
            (flows / "inbox" / "o1.json").write_text('{"po": 1}', encoding="utf-8")
            await until(lambda: store.dead_letters(), timeout=60, what="the dead letter")
    finally:
        await runtime.stop()
        echo.close()
    with store.engine.connect() as db:
        reasons = [r[0] for r in db.execute(text("SELECT reason FROM fy_dead_letters"))]
        errors = [r[0] for r in db.execute(text("SELECT error FROM fy_attempts WHERE error IS NOT NULL"))]
    assert reasons and errors
    stored = "\n".join(reasons + errors)
    assert f"answered {status}" in stored and "bad credentials" in stored
    for form, shown in echoes(token).items():
        assert shown not in stored, f"the {form} form of the token was stored"
        assert shown not in caplog.text, f"the {form} form of the token was logged"
    assert f'"pin": "{pin}"' not in stored and '"pin": "***"' in stored
    shown_reason = store.dead_letters()[0].reason
    assert token not in shown_reason and "***" in shown_reason
