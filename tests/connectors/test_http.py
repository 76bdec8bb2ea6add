"""http connector against a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from connector_helpers import (
    JSON_FLOW,
    SERVICES,
    Collector,
    Running,
    Server,
    context,
    pipeline_result,
    wait_for,
)
from pydantic import ValidationError

from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard_connectors.http import (
    HttpSource,
    HttpSourceOptions,
    HttpTarget,
    HttpTargetOptions,
    ReplayGuard,
)

LOOPBACK = ["127.0.0.1/32"]


class Peer:
    """A small ASGI app: records requests, answers as told, serves an OAuth2 token
    endpoint and dispatches /hooks/{flow} to the webhook registry like the runtime."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 201
        self.client_secret = "s3cr3t-client"
        self.tokens_issued = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        status, answer, extra = await self.route(scope["method"], path, headers, body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

    async def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, list[Any]]:
        if path.startswith("/hooks/"):
            endpoint = SERVICES.webhooks.get(path.removeprefix("/hooks/"))
            if endpoint is None:
                return 404, {"error": "no such flow"}, []
            status, answer = await endpoint.handle(headers, body)
            return status, answer, []
        if path == "/token":
            expected = "Basic " + base64.b64encode(f"flowyard:{self.client_secret}".encode()).decode()
            if headers.get("authorization") != expected:
                return 401, {"error": "invalid_client"}, []
            self.tokens_issued += 1
            return 200, {"access_token": f"tok-{self.tokens_issued}", "expires_in": 3600}, []
        if path == "/redirect-private":
            return 307, {}, [(b"location", b"http://127.0.0.2:9/x")]
        if path == "/redirect-ok":
            return 307, {}, [(b"location", b"/orders")]
        self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
        if path == "/secure" and headers.get("authorization") != "Bearer tok-1":
            return 401, {"error": "bad token"}, []
        return self.status, {"ok": True}, []


@pytest.fixture
async def peer() -> Any:
    app = Peer()
    server = await Server(app).start()
    yield app, server
    await server.stop()


def target(tmp_path: Path, **options: Any) -> HttpTarget:
    secrets = options.pop("secrets", {})
    return HttpTarget(HttpTargetOptions(**options), context(tmp_path, **secrets))


async def test_delivers_with_headers_secret_and_idempotency_key(peer: Any, tmp_path: Path) -> None:
    app, server = peer
    t = target(
        tmp_path,
        url=server.url + "/orders/{{ data.po }}",
        headers={"Authorization": "Bearer ${secret:WMS_TOKEN}", "X-Plant": "MX01"},
        allow_networks=LOOPBACK,
        secrets={"WMS_TOKEN": "wms-token-123"},
    )
    message = Message(payload={"po": "4500012345", "qty": 3}, content_type="application/x-flowyard-data")
    detail = await t.send(message, "key-1")
    await t.close()
    assert detail["status"] == 201
    [request] = app.requests
    assert request["path"] == "/orders/4500012345"
    assert request["headers"]["authorization"] == "Bearer wms-token-123"
    assert request["headers"]["idempotency-key"] == "key-1"
    assert request["headers"]["host"] == f"127.0.0.1:{server.port}"
    assert json.loads(request["body"]) == {"po": "4500012345", "qty": 3}
    assert t.health.last_success is not None and t.health.last_error is None


async def test_loopback_refused_unless_allowed(peer: Any, tmp_path: Path) -> None:
    app, server = peer
    t = target(tmp_path, url=server.url + "/orders")
    with pytest.raises(DeliveryError) as caught:
        await t.send(Message(payload=b"x"), "k")
    await t.close()
    assert not caught.value.retryable
    assert "allow_networks" in str(caught.value) and "127.0.0.1" in str(caught.value)
    assert app.requests == []


async def test_private_address_refused_before_connecting(tmp_path: Path) -> None:
    t = target(tmp_path, url="http://10.11.12.13/api")
    with pytest.raises(DeliveryError, match="private or reserved"):
        await t.send(Message(payload=b"x"), "k")
    await t.close()


async def test_redirect_is_checked_again(peer: Any, tmp_path: Path) -> None:
    app, server = peer
    t = target(tmp_path, url=server.url + "/redirect-private", allow_networks=LOOPBACK)
    with pytest.raises(DeliveryError, match=r"127\.0\.0\.2"):
        await t.send(Message(payload=b"x"), "k")
    t2 = target(tmp_path, url=server.url + "/redirect-ok", allow_networks=LOOPBACK)
    detail = await t2.send(Message(payload=b"z", content_type="text/plain"), "k3")
    await t.close()
    await t2.close()
    assert detail["status"] == 201
    assert [r["path"] for r in app.requests] == ["/orders"]
    assert app.requests[0]["body"] == b"z"  # 307 keeps method and body


async def test_statuses_decide_retry(peer: Any, tmp_path: Path) -> None:
    app, server = peer
    t = target(tmp_path, url=server.url + "/orders", allow_networks=LOOPBACK)
    app.status = 503
    with pytest.raises(DeliveryError) as down:
        await t.send(Message(payload=b"x"), "k")
    assert down.value.retryable and "503" in str(down.value)
    app.status = 422
    with pytest.raises(DeliveryError) as refused:
        await t.send(Message(payload=b"x"), "k")
    assert not refused.value.retryable and "422" in str(refused.value)
    t2 = target(tmp_path, url=server.url + "/orders", allow_networks=LOOPBACK, success=["2xx", "422"])
    assert (await t2.send(Message(payload=b"x"), "k"))["status"] == 422
    await t.close()
    await t2.close()


async def test_peer_goes_away_and_comes_back(peer: Any, tmp_path: Path) -> None:
    app, server = peer
    t = target(tmp_path, url=server.url + "/orders", allow_networks=LOOPBACK, timeout="2s")
    await server.stop()
    with pytest.raises(DeliveryError) as down:
        await t.send(Message(payload=b"first"), "k1")
    assert down.value.retryable
    assert t.health.connected is False and t.health.last_error
    await server.start()
    await t.send(Message(payload=b"first"), "k1")  # the runtime's retry
    await t.close()
    assert [r["body"] for r in app.requests] == [b"first"]
    assert app.requests[0]["headers"]["idempotency-key"] == "k1"
    assert t.health.connected is True


async def test_oauth2_client_credentials(peer: Any, tmp_path: Path) -> None:
    app, server = peer
    oauth = {
        "token_url": server.url + "/token",
        "client_id": "flowyard",
        "client_secret": "${secret:CLIENT}",
    }
    t = target(
        tmp_path,
        url=server.url + "/secure",
        allow_networks=LOOPBACK,
        oauth2=oauth,
        secrets={"CLIENT": app.client_secret},
    )
    await t.send(Message(payload=b"a"), "k1")
    await t.send(Message(payload=b"b"), "k2")
    await t.close()
    assert app.tokens_issued == 1  # the token is cached until it expires
    assert [r["headers"]["authorization"] for r in app.requests] == ["Bearer tok-1"] * 2


async def test_bad_credentials_give_clear_error_without_the_secret(peer: Any, tmp_path: Path) -> None:
    app, server = peer
    oauth = {
        "token_url": server.url + "/token",
        "client_id": "flowyard",
        "client_secret": "${secret:CLIENT}",
    }
    t = target(
        tmp_path,
        url=server.url + "/secure",
        allow_networks=LOOPBACK,
        oauth2=oauth,
        secrets={"CLIENT": "wrong-client-secret"},
    )
    with pytest.raises(DeliveryError) as caught:
        await t.send(Message(payload=b"a"), "k1")
    await t.close()
    text = str(caught.value)
    assert "token endpoint" in text and "401" in text and "client id and secret" in text
    assert "wrong-client-secret" not in text and not caught.value.retryable
    assert app.requests == []


def test_options_refuse_literal_credentials_and_bad_urls() -> None:
    with pytest.raises(ValidationError, match="reference"):
        HttpTargetOptions(url="https://x.example", headers={"Authorization": "Bearer abc"})
    with pytest.raises(ValidationError, match="http:// or https://"):
        HttpTargetOptions(url="ftp://x.example")
    with pytest.raises(ValidationError, match="not a status"):
        HttpTargetOptions(url="https://x.example", success=["ok"])
    with pytest.raises(ValidationError, match="token"):
        HttpSourceOptions()


# ------------------------------------------------------------------ webhook source


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def signed(key: bytes, body: bytes, at: float | None = None) -> dict[str, str]:
    """The headers a partner sends: the time of signing and the signature of TIME.BODY."""
    stamp = str(int(time.time() if at is None else at))
    return {"X-Signature-Timestamp": stamp, "X-Signature-256": sign(key, stamp.encode() + b"." + body)}


async def test_webhook_hmac_delivery_and_refusals(peer: Any, tmp_path: Path) -> None:
    _app, server = peer
    store = Collector()
    key = b"hook-key-42"
    source = HttpSource(
        HttpSourceOptions(hmac_secret="${secret:HOOK}", max_bytes=1000),
        context(tmp_path, name="asn-hook", HOOK=key.decode()),
    )
    body = b'{"n": 1}'
    async with Running(source, store), httpx.AsyncClient(base_url=server.url) as client:
        await wait_for(lambda: "asn-hook" in SERVICES.webhooks, what="the webhook to register")
        ok = await client.post(
            "/hooks/asn-hook",
            content=body,
            headers={**signed(key, body), "Content-Type": "application/json"},
        )
        bad = await client.post("/hooks/asn-hook", content=body, headers=signed(b"other", body))
        unsigned = await client.post("/hooks/asn-hook", content=body)
        big = b"x" * 1001
        too_big = await client.post("/hooks/asn-hook", content=big, headers=signed(key, big))
    assert "asn-hook" not in SERVICES.webhooks  # unregistered on close
    assert ok.status_code == 202 and ok.json()["id"] == store.messages[0].id
    assert (bad.status_code, unsigned.status_code, too_big.status_code) == (401, 401, 413)
    assert "signature" in bad.json()["error"]
    assert store.payloads == [body]
    msg = store.messages[0]
    assert msg.content_type == "application/json"
    assert "x-signature-256" not in msg.source["headers"]
    assert source.health.last_success is not None


async def test_webhook_bearer_and_store_down_gives_503(peer: Any, tmp_path: Path) -> None:
    _app, server = peer
    store = Collector()
    source = HttpSource(
        HttpSourceOptions(token="${secret:HOOK_TOKEN}"),
        context(tmp_path, name="po-hook", HOOK_TOKEN="tkn-777"),
    )
    async with Running(source, store), httpx.AsyncClient(base_url=server.url) as client:
        await wait_for(lambda: "po-hook" in SERVICES.webhooks)
        wrong = await client.post("/hooks/po-hook", content=b"a", headers={"Authorization": "Bearer nope"})
        store.fail = True
        down = await client.post("/hooks/po-hook", content=b"a", headers={"Authorization": "Bearer tkn-777"})
        store.fail = False
        again = await client.post("/hooks/po-hook", content=b"a", headers={"Authorization": "Bearer tkn-777"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "wrong bearer token"
    assert down.status_code == 503  # never 202 before the message is stored
    assert again.status_code == 202
    assert store.payloads == [b"a"] and store.refused == 1
    assert "authorization" not in store.messages[0].source["headers"]


async def test_webhook_malformed_json_is_kept_and_dead_lettered(peer: Any, tmp_path: Path) -> None:
    _app, server = peer
    store = Collector()
    source = HttpSource(
        HttpSourceOptions(token="${secret:T}", content_type="application/json"),
        context(tmp_path, name="json-hook", T="tkn-json"),
    )
    async with Running(source, store), httpx.AsyncClient(base_url=server.url) as client:
        await wait_for(lambda: "json-hook" in SERVICES.webhooks)
        answer = await client.post(
            "/hooks/json-hook", content=b'{"n": 1,,}', headers={"Authorization": "Bearer tkn-json"}
        )
    assert answer.status_code == 202
    result = pipeline_result(JSON_FLOW, tmp_path, store.messages[0])
    [failure] = result.failures
    assert "invalid JSON" in str(failure.error) and failure.message.payload == b'{"n": 1,,}'


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for the name `localhost` only (no IP address in it)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_tls_checks_the_host_name_while_pinned_to_the_checked_address(tmp_path: Path) -> None:
    import asyncio

    import uvicorn

    cert, key = self_signed(tmp_path)
    app = Peer()
    server = Server(app)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=server.port,
        log_level="error",
        lifespan="off",
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
    )
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve())
    await wait_for(lambda: running.started)
    try:
        good = target(
            tmp_path, url=f"https://localhost:{server.port}/orders", ca_file="cert.pem", allow_networks=["loopback"]
        )
        assert (await good.send(Message(payload=b"tls"), "k1"))["status"] == 201
        await good.close()
        untrusted = target(tmp_path, url=f"https://localhost:{server.port}/orders", allow_networks=["loopback"])
        with pytest.raises(DeliveryError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            await untrusted.send(Message(payload=b"x"), "k2")
        await untrusted.close()
        by_address = target(
            tmp_path, url=f"https://127.0.0.1:{server.port}/orders", ca_file="cert.pem", allow_networks=["loopback"]
        )
        with pytest.raises(DeliveryError, match=r"certificate|match|IP address"):
            await by_address.send(Message(payload=b"x"), "k3")  # the certificate names localhost only
        await by_address.close()
    finally:
        running.should_exit = True
        await task
    assert [r["body"] for r in app.requests] == [b"tls"]
    assert app.requests[0]["headers"]["host"] == f"localhost:{server.port}"


async def test_webhook_refuses_replays_and_stale_or_unstamped_requests(peer: Any, tmp_path: Path) -> None:
    _app, server = peer
    store = Collector()
    key = b"hook-key-77"
    source = HttpSource(
        HttpSourceOptions(hmac_secret="${secret:HOOK}", tolerance="5m"),
        context(tmp_path, name="replay-hook", HOOK=key.decode()),
    )
    body = b'{"receipt": "R1"}'
    fresh = signed(key, body)
    async with Running(source, store), httpx.AsyncClient(base_url=server.url) as client:
        await wait_for(lambda: "replay-hook" in SERVICES.webhooks, what="the webhook to register")
        ok = await client.post("/hooks/replay-hook", content=body, headers=fresh)
        replayed = await client.post("/hooks/replay-hook", content=body, headers=fresh)
        stale = await client.post("/hooks/replay-hook", content=body, headers=signed(key, body, time.time() - 301))
        future = await client.post("/hooks/replay-hook", content=body, headers=signed(key, body, time.time() + 400))
        body_only = await client.post("/hooks/replay-hook", content=body, headers={"X-Signature-256": sign(key, body)})
        # the timestamp is covered by the signature: moving it forward breaks the signature
        moved = {**signed(key, body, time.time() - 400), "X-Signature-Timestamp": str(int(time.time()))}
        tampered = await client.post("/hooks/replay-hook", content=body, headers=moved)
        other = await client.post("/hooks/replay-hook", content=b'{"receipt": "R2"}',
                                  headers=signed(key, b'{"receipt": "R2"}'))
    assert ok.status_code == 202 and other.status_code == 202
    assert store.payloads == [body, b'{"receipt": "R2"}']
    codes = [r.status_code for r in (replayed, stale, future, body_only, tampered)]
    assert codes == [401] * 5
    assert replayed.json()["error"] == "this signature was already used: a replayed request"
    assert "s old, outside the 300 s tolerance" in stale.json()["error"]
    assert "in the future, outside the 300 s tolerance" in future.json()["error"]
    assert "missing timestamp header X-Signature-Timestamp" in body_only.json()["error"]
    assert "does not match X-Signature-Timestamp.BODY" in tampered.json()["error"]
    assert source.health.details["refused"] == 5


async def test_webhook_retry_after_a_store_failure_is_not_a_replay(peer: Any, tmp_path: Path) -> None:
    _app, server = peer
    store = Collector()
    key = b"hook-key-78"
    source = HttpSource(HttpSourceOptions(hmac_secret="${secret:HOOK}"),
                        context(tmp_path, name="retry-hook", HOOK=key.decode()))
    body = b'{"receipt": "R3"}'
    headers = signed(key, body)
    async with Running(source, store), httpx.AsyncClient(base_url=server.url) as client:
        await wait_for(lambda: "retry-hook" in SERVICES.webhooks)
        store.fail = True
        down = await client.post("/hooks/retry-hook", content=body, headers=headers)
        store.fail = False
        retried = await client.post("/hooks/retry-hook", content=body, headers=headers)  # the same signed request
        again = await client.post("/hooks/retry-hook", content=body, headers=headers)
    assert (down.status_code, retried.status_code, again.status_code) == (503, 202, 401)
    assert store.payloads == [body]


async def test_webhook_replay_cache_full_refuses_with_503(peer: Any, tmp_path: Path) -> None:
    _app, server = peer
    store = Collector()
    key = b"hook-key-79"
    source = HttpSource(HttpSourceOptions(hmac_secret="${secret:HOOK}"),
                        context(tmp_path, name="full-hook", HOOK=key.decode()))
    async with Running(source, store), httpx.AsyncClient(base_url=server.url) as client:
        await wait_for(lambda: "full-hook" in SERVICES.webhooks)
        assert source.endpoint is not None
        source.endpoint.replays.limit = 2
        codes = [
            (await client.post("/hooks/full-hook", content=b"%d" % i, headers=signed(key, b"%d" % i))).status_code
            for i in range(3)
        ]
    assert codes == [202, 202, 503]
    assert store.payloads == [b"0", b"1"]


def test_replay_guard_forgets_signatures_once_their_window_passed() -> None:
    guard = ReplayGuard(limit=10)
    assert guard.claim("a", time.time() - 1)  # already outside its window
    assert guard.claim("b", time.time() + 60)
    assert guard.claim("a", time.time() + 60)  # "a" was forgotten
    assert not guard.claim("b", time.time() + 60)
    assert list(guard.seen) == ["b", "a"]


async def test_webhook_body_only_signatures_when_asked(peer: Any, tmp_path: Path) -> None:
    _app, server = peer
    store = Collector()
    key = b"hook-key-80"
    source = HttpSource(HttpSourceOptions(hmac_secret="${secret:HOOK}", signed_timestamp=False),
                        context(tmp_path, name="legacy-hook", HOOK=key.decode()))
    async with Running(source, store), httpx.AsyncClient(base_url=server.url) as client:
        await wait_for(lambda: "legacy-hook" in SERVICES.webhooks)
        ok = await client.post("/hooks/legacy-hook", content=b"x", headers={"X-Signature-256": sign(key, b"x")})
        bad = await client.post("/hooks/legacy-hook", content=b"x", headers={"X-Signature-256": sign(b"k", b"x")})
    assert (ok.status_code, bad.status_code) == (202, 401)
    assert bad.json()["error"] == "the signature does not match the body"


async def test_webhook_replay_refused_after_the_flow_is_redeployed(peer: Any, tmp_path: Path) -> None:
    _app, server = peer
    key = b"hook-key-81"
    body = b'{"receipt": "R9"}'
    headers = signed(key, body)
    codes = []
    for _ in range(2):  # the same flow started twice in this process, as a redeploy does
        source = HttpSource(HttpSourceOptions(hmac_secret="${secret:HOOK}"),
                            context(tmp_path, name="redeployed-hook", HOOK=key.decode()))
        async with Running(source, Collector()), httpx.AsyncClient(base_url=server.url) as client:
            await wait_for(lambda: "redeployed-hook" in SERVICES.webhooks)
            codes.append((await client.post("/hooks/redeployed-hook", content=body, headers=headers)).status_code)
        await wait_for(lambda: "redeployed-hook" not in SERVICES.webhooks)
    assert codes == [202, 401]
