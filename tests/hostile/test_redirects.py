"""Issue 17, item 4: the http target and redirects, against real HTTP servers on
loopback (uvicorn). Redirects are followed only within the first URL's origin, with the
same method and body; a redirect to another origin, or one that would turn a POST into a
bodiless GET, is a failed delivery naming it; the credentials never reach another
origin; the number of hops is bounded."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CONNECTOR_TESTS = str(Path(__file__).resolve().parents[1] / "connectors")
if CONNECTOR_TESTS not in sys.path:  # --import-mode=importlib: the helpers' folder by hand
    sys.path.insert(0, CONNECTOR_TESTS)

from connector_helpers import Server, context  # noqa: E402

from flowyard.errors import DeliveryError  # noqa: E402
from flowyard.message import Message  # noqa: E402
from flowyard_connectors.http import HttpTarget, HttpTargetOptions  # noqa: E402

LOOPBACK = ["loopback"]
TOKEN = "wms-bearer-7f3a9c"
FLOWYARD = str(Path(sys.executable).parent / "flowyard")


class Recorder:
    """Records every request; `routes` maps a path to (status, extra headers)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.routes: dict[str, tuple[int, dict[str, str]]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        self.requests.append({"method": scope["method"], "path": path, "headers": headers, "body": body})
        status, extra = self.routes.get(path, (201, {}))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                *((k.encode(), v.encode()) for k, v in extra.items())]})
        await send({"type": "http.response.body", "body": json.dumps({"ok": status < 300}).encode()})

    def paths(self) -> list[tuple[str, str]]:
        return [(r["method"], r["path"]) for r in self.requests]


@pytest.fixture
async def servers() -> Any:
    """Two origins on loopback: `home` (the target's) and `elsewhere` (another port)."""
    home, elsewhere = Recorder(), Recorder()
    home_server = await Server(home).start()
    elsewhere_server = await Server(elsewhere).start()
    yield home, home_server, elsewhere, elsewhere_server
    await home_server.stop()
    await elsewhere_server.stop()


def target(tmp_path: Path, **options: Any) -> HttpTarget:
    options.setdefault("allow_networks", LOOPBACK)
    options.setdefault("headers", {"Authorization": "Bearer ${secret:WMS_TOKEN}", "X-Api-Key": "${secret:WMS_TOKEN}"})
    return HttpTarget(HttpTargetOptions(**options), context(tmp_path, WMS_TOKEN=TOKEN))


def seen_token(recorder: Recorder) -> bool:
    return any(TOKEN in json.dumps(r["headers"]) or TOKEN.encode() in r["body"] for r in recorder.requests)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_another_origin_fails_and_carries_no_credentials(
        servers: Any, tmp_path: Path, status: int) -> None:
    home, home_server, elsewhere, elsewhere_server = servers
    home.routes["/orders"] = (status, {"location": elsewhere_server.url + "/steal"})
    t = target(tmp_path, url=home_server.url + "/orders")
    with pytest.raises(DeliveryError) as caught:
        await t.send(Message(payload=b'{"po": 1}', content_type="application/json"), "key-1")
    await t.close()
    text = str(caught.value)
    assert not caught.value.retryable
    assert f"answered {status}" in text and "another origin" in text
    assert elsewhere_server.url in text  # names where the server pointed
    assert elsewhere.requests == [] and not seen_token(elsewhere)
    assert home.paths() == [("POST", "/orders")]
    assert t.health.last_error and "another origin" in t.health.last_error


@pytest.mark.parametrize("location", ["//127.0.0.2:9/x", "https://{host}/orders", "http://localhost:{port}/orders"])
async def test_scheme_host_and_port_all_make_the_origin(servers: Any, tmp_path: Path, location: str) -> None:
    home, home_server, *_ = servers
    home.routes["/orders"] = (307, {"location": location.format(host=f"127.0.0.1:{home_server.port}",
                                                                 port=home_server.port)})
    t = target(tmp_path, url=home_server.url + "/orders")
    with pytest.raises(DeliveryError, match="another origin"):
        await t.send(Message(payload=b"x"), "k")
    await t.close()
    assert home.paths() == [("POST", "/orders")]  # nothing was sent to the other origin


@pytest.mark.parametrize("status", [307, 308])
async def test_307_and_308_within_the_origin_keep_method_body_and_headers(
        servers: Any, tmp_path: Path, status: int) -> None:
    home, home_server, elsewhere, _ = servers
    home.routes["/orders"] = (status, {"location": "/v2/orders?x=1"})
    t = target(tmp_path, url=home_server.url + "/orders", method="PUT")
    detail = await t.send(Message(payload=b'{"po": 7}', content_type="application/json"), "key-7")
    await t.close()
    assert detail["status"] == 201
    first, second = home.requests
    assert (second["method"], second["path"], second["body"]) == ("PUT", "/v2/orders", b'{"po": 7}')
    assert second["headers"]["authorization"] == f"Bearer {TOKEN}"  # same origin: kept
    assert second["headers"]["idempotency-key"] == first["headers"]["idempotency-key"] == "key-7"
    assert elsewhere.requests == []


@pytest.mark.parametrize("status", [301, 302, 303])
async def test_a_redirect_that_would_turn_a_post_into_a_get_is_a_failed_delivery(
        servers: Any, tmp_path: Path, status: int) -> None:
    home, home_server, *_ = servers
    home.routes["/orders"] = (status, {"location": "/moved"})
    t = target(tmp_path, url=home_server.url + "/orders")
    with pytest.raises(DeliveryError) as caught:
        await t.send(Message(payload=b'{"po": 1}', content_type="application/json"), "k")
    await t.close()
    text = str(caught.value)
    assert not caught.value.retryable
    assert f"POST {home_server.url}/orders answered {status}" in text
    assert "into a GET without the body" in text and "/moved" in text
    assert home.paths() == [("POST", "/orders")]  # no bodiless GET was sent


async def test_a_get_follows_a_302_within_the_origin(servers: Any, tmp_path: Path) -> None:
    home, home_server, *_ = servers
    home.routes["/orders"] = (302, {"location": "/current"})
    t = target(tmp_path, url=home_server.url + "/orders", method="GET")
    assert (await t.send(Message(payload=b"x"), "k"))["status"] == 201
    await t.close()
    assert home.paths() == [("GET", "/orders"), ("GET", "/current")]


async def test_redirects_are_bounded(servers: Any, tmp_path: Path) -> None:
    home, home_server, *_ = servers
    home.routes["/loop"] = (307, {"location": "/loop"})
    t = target(tmp_path, url=home_server.url + "/loop", max_redirects=3)
    with pytest.raises(DeliveryError, match="more than 3 redirects") as caught:
        await t.send(Message(payload=b"x"), "k")
    await t.close()
    assert not caught.value.retryable and len(home.requests) == 4
    t2 = target(tmp_path, url=home_server.url + "/loop", follow_redirects=False)
    with pytest.raises(DeliveryError, match="answered 307"):  # not followed: not a success
        await t2.send(Message(payload=b"x"), "k")
    await t2.close()


async def test_the_oauth2_token_request_is_not_redirected_elsewhere(servers: Any, tmp_path: Path) -> None:
    home, home_server, elsewhere, elsewhere_server = servers
    home.routes["/token"] = (307, {"location": elsewhere_server.url + "/token"})
    oauth = {"token_url": home_server.url + "/token", "client_id": "flowyard", "client_secret": "${secret:CLIENT}"}
    t = HttpTarget(HttpTargetOptions(url=home_server.url + "/orders", oauth2=oauth, allow_networks=LOOPBACK),
                   context(tmp_path, CLIENT="oauth-client-secret-31"))
    with pytest.raises(DeliveryError, match="another origin"):
        await t.send(Message(payload=b"x"), "k")
    await t.close()
    assert elsewhere.requests == []
    assert home.paths() == [("POST", "/token")]


FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata: {{name: redirected}}
source:
  file: {{path: in}}
targets:
  - http:
      url: {url}
      headers: {{Authorization: "Bearer ${{secret:WMS_TOKEN}}"}}
      allow_networks: [loopback]
    retry: {{attempts: 1}}
"""


@pytest.mark.parametrize("moved", ["same-origin-302", "other-origin-307"])
async def test_flowyard_run_reports_the_redirect_as_a_failure(servers: Any, tmp_path: Path, moved: str) -> None:
    """The real CLI: a 302 after a POST or a 307 elsewhere is a failed message (exit 1),
    the payload is not counted as delivered, and the token goes nowhere else."""
    home, home_server, elsewhere, elsewhere_server = servers
    if moved == "same-origin-302":
        home.routes["/orders"] = (302, {"location": "/moved"})
    else:
        home.routes["/orders"] = (307, {"location": elsewhere_server.url + "/orders"})
    flow = tmp_path / "redirected.yaml"
    flow.write_text(FLOW.format(url=home_server.url + "/orders"), encoding="utf-8")
    (tmp_path / "in.json").write_text('{"po": 1}', encoding="utf-8")
    env = {**os.environ, "WMS_TOKEN": TOKEN, "FLOWYARD_DATA_DIR": str(tmp_path / "data")}
    done = await asyncio.to_thread(
        subprocess.run, [FLOWYARD, "run", str(flow), "--input", str(tmp_path / "in.json")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "not delivered" in done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert elsewhere.requests == [] and home.paths() == [("POST", "/orders")]
