"""Fixtures for the UI tests: an app on a fresh SQLite store and a temporary flows
folder, and clients logged in with each role (through the real login form)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from flowyard.store import database as db
from flowyard.store import engines
from flowyard_ui import auth
from flowyard_ui.app import create_app

PASSWORD = "correct horse battery"
ORDERS_FLOW = """\
# Orders from the ERP into the MES
apiVersion: flowyard/v1
kind: Flow
metadata:
  name: erp-orders
  description: ERP orders to the MES
  labels: {plant: MX01, partner: ERP, domain: production}
source:
  file: {path: inbox/erp-orders, pattern: "*.json", poll: 1s, settle: 0s}
steps:
  - jmespath: "{order: po, qty: qty}"   # keep this comment
  - json.render: {}
targets:
  - file: {path: outbox/erp-orders}
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "erp-orders.yaml").write_text(ORDERS_FLOW, encoding="utf-8")
    (folder / "tables").mkdir()
    (folder / "tables" / "uom.csv").write_text("code,value\nEA,each\nPL,pallet\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated store with one user per role, made once and copied for each test
    (migrations and Argon2 hashing are deliberately slow)."""
    path = tmp_path_factory.mktemp("store") / "template.db"
    engine = db.make_engine(f"sqlite:///{path}")
    engines.ensure_schema(engine)
    for role in auth.ROLES:
        auth.create_user(engine, role, PASSWORD, role, display_name=f"{role.title()} User")
    engine.dispose()
    return path


@pytest.fixture
def app(tmp_path: Path, flows: Path, template_store: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Litestar]:
    monkeypatch.setenv("FLOWYARD_DATA_DIR", str(tmp_path / "data"))
    store = tmp_path / "store.db"
    shutil.copyfile(template_store, store)
    engine = db.make_engine(f"sqlite:///{store}")
    application = create_app(flows_dir=flows, engine=engine, secret="test-secret-" + "x" * 20)
    yield application
    engine.dispose()


def csrf_from(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html) or re.search(
        r'name="_csrf_token" value="([^"]+)"', html
    )
    assert found, "the page carries no CSRF token"
    return found.group(1)


class UiClient:
    """A TestClient that logged in through the form and sends the CSRF token like htmx."""

    def __init__(self, client: TestClient[Any]) -> None:
        self.client = client
        self.token = ""

    def login(self, username: str, password: str = PASSWORD) -> Any:
        page = self.client.get("/login")
        token = csrf_from(page.text)
        response = self.client.post(
            "/login",
            data={"username": username, "password": password, "_csrf_token": token},
            follow_redirects=False,
        )
        self.refresh_token()
        return response

    def refresh_token(self, path: str = "/flows") -> None:
        page = self.client.get(path)
        if page.status_code == 200 and "csrf-token" in page.text:
            self.token = csrf_from(page.text)

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, **kw)

    def htmx_get(self, url: str, **kw: Any) -> Any:
        headers = {"HX-Request": "true", **kw.pop("headers", {})}
        return self.client.get(url, headers=headers, **kw)

    def post(
        self,
        url: str,
        data: dict[str, Any] | None = None,
        *,
        htmx: bool = True,
        csrf: bool = True,
        **kw: Any,
    ) -> Any:
        headers = dict(kw.pop("headers", {}))
        if htmx:
            headers["HX-Request"] = "true"
        if csrf:
            headers["X-CSRFToken"] = self.token
        return self.client.post(url, data=data or {}, headers=headers, follow_redirects=False, **kw)


@pytest.fixture
def client_for(app: Litestar) -> Iterator[Callable[[str], UiClient]]:
    opened: list[TestClient[Any]] = []

    def make(role: str) -> UiClient:
        # Not entered as a context manager: the app has no lifespan work, and two
        # clients running the same app's lifespan at once hang on shutdown.
        client = TestClient(app, base_url="https://testserver.local")
        opened.append(client)
        ui = UiClient(client)
        response = ui.login(role)
        assert response.status_code == 303, response.text
        return ui

    yield make
    opened.clear()


@pytest.fixture
def analyst(client_for: Callable[[str], UiClient]) -> UiClient:
    return client_for("analyst")


@pytest.fixture
def viewer(client_for: Callable[[str], UiClient]) -> UiClient:
    return client_for("viewer")


@pytest.fixture
def deployer(client_for: Callable[[str], UiClient]) -> UiClient:
    return client_for("deployer")


@pytest.fixture
def admin(client_for: Callable[[str], UiClient]) -> UiClient:
    return client_for("admin")
