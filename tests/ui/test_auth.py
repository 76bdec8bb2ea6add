"""Login, sessions, first admin, password change, CSRF refusals and cookie flags."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from flowyard_ui import auth
from flowyard_ui.app import first_start
from flowyard_ui.models import AuditEntry, UiSession, User

from .conftest import PASSWORD, UiClient, csrf_from


def engine_of(app: Litestar) -> Any:
    return app.state.ui.engine


def test_pages_need_login(app: Litestar) -> None:
    with TestClient(app, base_url="https://testserver.local") as client:
        response = client.get("/flows", follow_redirects=False)
        assert response.status_code in (302, 303, 307)
        assert response.headers["location"] == "/login"
        htmx = client.get("/flows", headers={"HX-Request": "true"}, follow_redirects=False)
        assert htmx.status_code == 401
        assert htmx.headers["HX-Redirect"] == "/login"


def test_login_sets_secure_cookies_and_stores_only_a_hash(app: Litestar) -> None:
    with TestClient(app, base_url="https://testserver.local") as client:
        page = client.get("/login")
        csrf_cookie = [h for h in page.headers.get_list("set-cookie") if h.startswith("flowyard_csrf=")]
        assert csrf_cookie and "Secure" in csrf_cookie[0] and "HttpOnly" in csrf_cookie[0]
        response = client.post(
            "/login",
            data={"username": "analyst", "password": PASSWORD, "_csrf_token": csrf_from(page.text)},
            follow_redirects=False,
        )
        assert response.status_code == 303
        cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(auth.SESSION_COOKIE))
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("samesite", "SameSite")
        token = cookie.split("=", 1)[1].split(";", 1)[0]
        with Session(engine_of(app)) as db:
            stored = [s.token_hash for s in db.scalars(select(UiSession))]
        assert token not in stored and len(stored) == 1
        assert client.get("/flows").status_code == 200


def test_wrong_password_is_refused_and_audited(app: Litestar) -> None:
    with TestClient(app, base_url="https://testserver.local") as client:
        page = client.get("/login")
        response = client.post(
            "/login",
            data={
                "username": "analyst",
                "password": "nope-nope-nope",
                "_csrf_token": csrf_from(page.text),
            },
            follow_redirects=False,
        )
        assert response.status_code == 401
        assert "wrong user name or password" in response.text
        assert client.get("/flows", follow_redirects=False).status_code != 200
    with Session(engine_of(app)) as db:
        assert db.scalar(select(AuditEntry).where(AuditEntry.action == "login-failed")) is not None


def test_login_without_csrf_token_is_refused(app: Litestar) -> None:
    with TestClient(app, base_url="https://testserver.local") as client:
        client.get("/login")
        response = client.post("/login", data={"username": "analyst", "password": PASSWORD}, follow_redirects=False)
        assert response.status_code == 403
        assert "security token" in response.text
        assert auth.SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_htmx_post_without_or_with_wrong_csrf_header_is_refused(analyst: UiClient) -> None:
    missing = analyst.post("/flows/new", {"name": "x1"}, csrf=False)
    assert missing.status_code == 403
    wrong = analyst.post("/flows/new", {"name": "x1"}, headers={"X-CSRFToken": "0" * 128}, csrf=False)
    assert wrong.status_code == 403
    good = analyst.post("/flows/new", {"name": "x1"})
    assert good.status_code == 200 and good.headers["HX-Redirect"] == "/flows/x1/edit"


def test_logout_ends_the_session(analyst: UiClient) -> None:
    response = analyst.post("/logout", htmx=False)
    assert response.status_code == 303
    assert analyst.get("/flows", follow_redirects=False).status_code in (302, 303, 307)


def test_first_start_prints_a_one_time_password_once(tmp_path: Any) -> None:
    from flowyard.store import database as db
    from flowyard.store import engines

    engine = db.make_engine(f"sqlite:///{tmp_path / 'first.db'}")
    engines.ensure_schema(engine)
    password = first_start(engine)
    assert password and len(password) >= 12
    assert first_start(engine) is None
    with Session(engine) as session:
        admin = session.scalar(select(User).where(User.username == "admin"))
        assert admin is not None and admin.role == "admin" and admin.must_change_password
        assert password not in admin.password_hash and admin.password_hash.startswith("$argon2id$")
    engine.dispose()


def test_one_time_password_must_be_changed_first(app: Litestar) -> None:
    engine = engine_of(app)
    auth.create_user(engine, "newbie", "one-time-pass-123", "analyst", must_change=True)
    with TestClient(app, base_url="https://testserver.local") as client:
        ui = UiClient(client)
        assert ui.login("newbie", "one-time-pass-123").status_code == 303
        blocked = client.get("/flows", follow_redirects=False)
        assert blocked.headers["location"] == "/account/password"
        page = client.get("/account/password")
        token = csrf_from(page.text)
        short = client.post(
            "/account/password",
            data={
                "current": "one-time-pass-123",
                "new": "short",
                "again": "short",
                "_csrf_token": token,
            },
            follow_redirects=False,
        )
        assert short.status_code == 400 and "at least" in short.text
        done = client.post(
            "/account/password",
            data={
                "current": "one-time-pass-123",
                "new": "my own long password",
                "again": "my own long password",
                "_csrf_token": token,
            },
            follow_redirects=False,
        )
        assert done.status_code == 303
        assert client.get("/flows").status_code == 200


def test_roles_are_ordered() -> None:
    viewer = auth.CurrentUser(1, "v", "v", "viewer", False)
    deployer = auth.CurrentUser(2, "d", "d", "deployer", False)
    assert not viewer.can("analyst") and viewer.can("viewer")
    assert deployer.can("analyst") and deployer.can("deployer") and not deployer.can("admin")


def test_password_guessing_is_slowed_not_locked(app: Litestar) -> None:
    """Wrong passwords from one address space its next attempts out (a delay, not a
    lockout): the right password still logs in, after the wait. See
    tests/ui/test_auth_hardening.py for per-address and per-user throttling."""
    import time

    engine = engine_of(app)
    auth.create_user(engine, "guessme", "the right password", "viewer")
    auth.throttle.forget()
    try:
        with TestClient(app, base_url="https://testserver.local") as client:
            token = csrf_from(client.get("/login").text)
            for _ in range(auth.ADDRESS_FREE):
                wrong = client.post("/login", data={"username": "guessme", "password": "a wrong password",
                                                    "_csrf_token": token}, follow_redirects=False)
                assert wrong.status_code == 401 and "wrong user name or password" in wrong.text
            started = time.monotonic()
            right = client.post("/login", data={"username": "guessme", "password": "the right password",
                                                "_csrf_token": token}, follow_redirects=False)
            assert right.status_code == 303  # not locked out
            assert time.monotonic() - started >= 0.9  # but made to wait its slot
    finally:
        auth.throttle.forget()
