"""The vendored htmx and the page glue: served, licensed, written for htmx 2 and 4."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar
from litestar.testing import TestClient

from flowyard_ui import app as app_module

from .conftest import UiClient

STATIC = Path(app_module.__file__).parent / "static"


def test_htmx_is_vendored_with_its_license(viewer: UiClient) -> None:
    text = (STATIC / "htmx.min.js").read_text()
    assert text.startswith("/*! htmx 2.") and "Zero-Clause BSD" in text[:600]
    served = viewer.get("/static/htmx.min.js")
    assert served.status_code == 200 and served.text == text
    page = viewer.get("/flows")
    assert '<script src="/static/htmx.min.js"' in page.text and 'name="csrf-token"' in page.text


def test_the_csrf_header_is_set_for_both_htmx_generations() -> None:
    glue = (STATIC / "flowyard.js").read_text()
    assert '"htmx:configRequest"' in glue and "evt.detail.headers" in glue  # htmx 2
    assert '"htmx:config:request"' in glue and "ctx.request.headers" in glue  # htmx 4


def test_fragments_are_chosen_for_htmx_2_and_4_target_headers(viewer: UiClient) -> None:
    for target in ("run-rows", "tbody#run-rows"):
        response = viewer.htmx_get("/runs", headers={"HX-Target": target})
        assert response.status_code == 200 and "<html" not in response.text


def test_static_files_need_no_login(app: Litestar) -> None:
    with TestClient(app, base_url="https://testserver.local") as client:
        assert client.get("/static/flowyard.css").status_code == 200
        assert client.get("/flows", follow_redirects=False).status_code in (302, 303, 307)
