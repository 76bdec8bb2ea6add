"""Issue 17, auth edges (item 11; "what must be true" 5), against the real UI app (its
test client, or uvicorn on loopback with clients on distinct 127.0.0.x addresses):
CSRF tokens are bound to the session; a password change ends the user's other sessions;
logins are throttled per client address and per user name with delays, never a lockout
a stranger can trigger against `admin`; the password work is bounded and off the event
loop; `/healthz` says only "ok" and `/metrics` answers only to the metrics token or a
logged-in session."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from litestar import Litestar
from litestar.testing import TestClient

from flowyard.runtime.metrics import Metrics
from flowyard.runtime.server import create_app as runtime_app
from flowyard.services import Services
from flowyard.store import database as db
from flowyard_ui import auth
from flowyard_ui.app import create_app

from .conftest import PASSWORD, UiClient, csrf_from

SECRET = "test-secret-" + "x" * 20


@pytest.fixture(autouse=True)
def fresh_throttle() -> Iterator[None]:
    auth.throttle.forget()
    yield
    auth.throttle.forget()


def cookie(client: TestClient[Any], name: str) -> str:
    return str(client.cookies.get(name))


# ---------------------------------------------------------------- CSRF bound to the session


def test_a_csrf_cookie_and_token_pair_of_another_session_is_refused(client_for: Any, app: Litestar) -> None:
    ana, vic = client_for("analyst"), client_for("deployer")
    assert ana.token != vic.token  # each session its own token
    assert ana.token == auth.csrf_token_for(SECRET, cookie(ana.client, auth.SESSION_COOKIE))
    # the analyst sends the deployer's (valid, signed) CSRF cookie and token as their own
    ana.client.cookies.set(auth.CSRF_COOKIE, cookie(vic.client, auth.CSRF_COOKIE), domain="testserver.local")
    foreign = ana.post("/flows/new", {"name": "x1"}, headers={"X-CSRFToken": vic.token}, csrf=False)
    assert foreign.status_code == 403 and "security token" in foreign.text
    # a pair made before any login (what an attacker's own /login page gives) too
    with TestClient(app, base_url="https://testserver.local") as stranger:
        anonymous = csrf_from(stranger.get("/login").text)
        ana.client.cookies.set(auth.CSRF_COOKIE, cookie(stranger, auth.CSRF_COOKIE), domain="testserver.local")
    pair = ana.post("/flows/new", {"name": "x1"}, headers={"X-CSRFToken": anonymous}, csrf=False)
    assert pair.status_code == 403
    # a page view gives the session back its own token (no stale page strands anyone)
    ana.refresh_token()
    assert ana.token == auth.csrf_token_for(SECRET, cookie(ana.client, auth.SESSION_COOKIE))
    assert cookie(ana.client, auth.CSRF_COOKIE) == ana.token
    good = ana.post("/flows/new", {"name": "x1"})
    assert good.status_code == 200 and good.headers["HX-Redirect"] == "/flows/x1/edit"


def test_the_token_changes_with_the_session(client_for: Any) -> None:
    ana = client_for("analyst")
    first = ana.token
    assert ana.post("/logout", htmx=False).status_code == 303
    assert ana.login("analyst").status_code == 303
    assert ana.token != first
    assert ana.post("/flows/new", {"name": "x2"}, headers={"X-CSRFToken": first}, csrf=False).status_code == 403
    assert ana.post("/flows/new", {"name": "x2"}).status_code == 200


# ---------------------------------------------------------------- password change


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(app: Litestar) -> None:
    auth.create_user(app.state.ui.engine, "mover", PASSWORD, "analyst")
    here = UiClient(TestClient(app, base_url="https://testserver.local"))
    there = UiClient(TestClient(app, base_url="https://testserver.local"))
    assert here.login("mover").status_code == 303 and there.login("mover").status_code == 303
    assert there.get("/flows").status_code == 200
    page = here.get("/account/password")
    changed = here.client.post("/account/password", data={
        "current": PASSWORD, "new": "a brand new password", "again": "a brand new password",
        "_csrf_token": csrf_from(page.text)}, follow_redirects=False)
    assert changed.status_code == 303
    assert here.get("/flows").status_code == 200  # the person who changed it stays in
    gone = there.get("/flows", follow_redirects=False)
    assert gone.status_code in (302, 303, 307) and gone.headers["location"] == "/login"
    assert here.login("mover", PASSWORD).status_code == 401
    assert here.login("mover", "a brand new password").status_code == 303


# ---------------------------------------------------------------- throttling, over real HTTP


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stand_in() -> Any:
    metrics = Metrics()
    metrics.message_finished("secret-flow", {"plant": "DE02"}, "done")
    return SimpleNamespace(worker="w-9", current={"secret-flow": object()}, metrics=metrics, services=Services())


@pytest.fixture
def served_ui(tmp_path: Path, flows: Path, template_store: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Litestar]:
    """The runtime's server with the real UI mounted, as `flowyard serve` has it (plain
    http on loopback, so cookies are not Secure)."""
    monkeypatch.setenv("FLOWYARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FLOWYARD_METRICS_TOKEN", raising=False)
    store = tmp_path / "served.db"
    shutil.copyfile(template_store, store)
    engine = db.make_engine(f"sqlite:///{store}")
    ui = create_app(flows_dir=flows, engine=engine, secret=SECRET, secure_cookies=False)
    yield runtime_app(stand_in(), ui)
    engine.dispose()


@contextlib.asynccontextmanager
async def serving(app: Litestar) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def client_from(base: str, address: str) -> httpx.AsyncClient:
    """A browser on its own loopback address (the server sees it as that client)."""
    return httpx.AsyncClient(base_url=base, timeout=60,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


async def try_login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    page = await client.get("/login")
    token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
    assert token, page.text[:300]
    return await client.post("/login", data={"username": username, "password": password,
                                             "_csrf_token": token.group(1)})


async def test_one_address_guessing_is_spaced_out_and_admin_still_logs_in(served_ui: Litestar) -> None:
    async with serving(served_ui) as base, client_from(base, "127.0.0.2") as attacker, \
            client_from(base, "127.0.0.3") as admin:
        for _ in range(auth.ADDRESS_FREE):
            assert (await try_login(attacker, "admin", "guess guess guess")).status_code == 401
        started = time.monotonic()
        slowed = await try_login(attacker, "admin", "guess guess guess")
        assert slowed.status_code == 401 and time.monotonic() - started >= 0.9
        # pushing harder: told to come back later, without the password being checked
        answers = await asyncio.gather(*(try_login(attacker, "admin", "guess") for _ in range(6)))
        refused = [a for a in answers if a.status_code == 429]
        assert refused and "try again in" in refused[0].text and int(refused[0].headers["Retry-After"]) >= 1
        # meanwhile the real admin, from their own address, is not locked out nor slowed
        started = time.monotonic()
        ok = await try_login(admin, "admin", PASSWORD)
        assert ok.status_code == 303 and time.monotonic() - started < 2.0


async def test_many_addresses_failing_on_one_name_delay_it_but_never_lock_it(served_ui: Litestar) -> None:
    async with serving(served_ui) as base:
        for n in range(auth.USER_FREE + 2):  # a few wrong passwords each, from many addresses
            async with client_from(base, f"127.0.1.{n + 1}") as stranger:
                assert (await try_login(stranger, "admin", "not the password")).status_code == 401
        async with client_from(base, "127.0.2.1") as admin:
            started = time.monotonic()
            ok = await try_login(admin, "admin", PASSWORD)
            waited = time.monotonic() - started
        assert ok.status_code == 303  # delayed, not locked
        assert 0.5 <= waited <= auth.USER_MAX_DELAY + 3.0


async def test_forty_concurrent_bad_logins_stay_bounded_and_off_the_event_loop(served_ui: Litestar) -> None:
    lag = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:  # how late the event loop runs a 20 ms timer
        nonlocal lag
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.02)
            lag = max(lag, time.monotonic() - before - 0.02)

    most_threads = 0

    def hashing_threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name.startswith("flowyard-password"))

    async with serving(served_ui) as base:
        clients = [client_from(base, f"127.0.3.{n + 1}") for n in range(40)]
        health: list[float] = []

        async def probe() -> None:
            nonlocal most_threads
            async with httpx.AsyncClient(base_url=base, timeout=30) as c:
                while not stop.is_set():
                    before = time.monotonic()
                    assert (await c.get("/healthz")).json() == {"status": "ok"}
                    health.append(time.monotonic() - before)
                    most_threads = max(most_threads, hashing_threads())
                    await asyncio.sleep(0.05)

        tick, watch = asyncio.create_task(ticker()), asyncio.create_task(probe())
        started = time.monotonic()
        answers = await asyncio.gather(*(try_login(c, f"user{n % 7}", "wrong wrong wrong") for n, c in enumerate(clients)))
        took = time.monotonic() - started
        stop.set()
        await tick
        await watch
        for c in clients:
            await c.aclose()
    statuses = sorted({a.status_code for a in answers})
    assert set(statuses) <= {401, 503}, statuses  # wrong password, or "busy, try again"
    assert most_threads <= auth.PASSWORD_WORKERS
    assert lag < 0.5, f"the event loop stalled {lag:.2f}s"
    assert health and max(health) < 1.0, f"/healthz took {max(health):.2f}s"
    assert took < 60


# ---------------------------------------------------------------- /healthz and /metrics


async def test_health_detail_and_metrics_need_a_login_or_the_token(
        served_ui: Litestar, monkeypatch: pytest.MonkeyPatch) -> None:
    async with serving(served_ui) as base, client_from(base, "127.0.0.4") as browser:
        assert (await browser.get("/healthz")).json() == {"status": "ok"}
        bare = await browser.get("/metrics")
        assert bare.status_code == 401 and "secret-flow" not in bare.text
        assert (await try_login(browser, "viewer", PASSWORD)).status_code == 303
        detail = (await browser.get("/healthz")).json()
        assert detail == {"status": "ok", "worker": "w-9", "flows": ["secret-flow"]}
        metrics = await browser.get("/metrics")
        assert metrics.status_code == 200 and 'flow="secret-flow"' in metrics.text
        browser.cookies.set(auth.SESSION_COOKIE, "forged-or-ended-session")
        assert (await browser.get("/healthz")).json() == {"status": "ok"}
        monkeypatch.setenv("SCRAPER", "scrape-token-42-abcdef")
        monkeypatch.setenv("FLOWYARD_METRICS_TOKEN", "${env:SCRAPER}")
        async with httpx.AsyncClient(base_url=base) as scraper:
            good = await scraper.get("/metrics", headers={"Authorization": "Bearer scrape-token-42-abcdef"})
            wrong = await scraper.get("/metrics", headers={"Authorization": "Bearer scrape-token-42"})
        assert good.status_code == 200 and wrong.status_code == 401
