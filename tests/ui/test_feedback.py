"""Issue #7 item 11: anything the user starts shows that it is loading, and the pages
that show changing state refresh themselves (no manual reload)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from litestar import Litestar

from flowyard_ui import app as app_module

from . import seed
from .conftest import UiClient

TEMPLATES = Path(app_module.__file__).parent / "templates"
CSS = (Path(app_module.__file__).parent / "static" / "flowyard.css").read_text()


class _Requests(HTMLParser):
    """Elements of a template that send an htmx request, and whether each shows it."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, object]] = []
        self.silent: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        sends = "hx-get" in a or "hx-post" in a
        if tag == "form":
            self.forms.append({"attrs": a, "sends": sends, "button": False})
            return
        if tag == "button" and a.get("type") != "button" and self.forms:
            self.forms[-1]["button"] = True
        if not sends or "hx-indicator" in a or tag in ("button", "select"):
            return  # buttons and choices show their own spinner (flowyard.css)
        trigger = a.get("hx-trigger", "")
        if trigger and all("every" in part or "from:body" in part for part in trigger.split(",")):
            return  # polling or refreshing on an event: nobody is waiting for it
        self.silent.append(f"<{tag} {a.get('hx-get') or a.get('hx-post')}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.forms:
            form = self.forms.pop()
            attrs = form["attrs"]
            assert isinstance(attrs, dict)
            if form["sends"] and "hx-indicator" not in attrs and not form["button"]:
                self.silent.append(f"<form {attrs.get('hx-get') or attrs.get('hx-post')}>")


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: p.relative_to(TEMPLATES).as_posix())
def test_every_request_a_user_starts_shows_a_loading_indicator(template: Path) -> None:
    parser = _Requests()
    parser.feed(template.read_text(encoding="utf-8"))
    parser.close()
    assert parser.silent == []


def test_waiting_buttons_show_a_spinner_after_200_ms() -> None:
    assert "button.htmx-request::after" in CSS and "form.htmx-request button:not([type=button])::after" in CSS
    assert "appear 0s .2s forwards" in CSS and "@keyframes spin" in CSS


def test_pages_with_changing_state_refresh_themselves(app: Litestar, viewer: UiClient, flows: Path) -> None:
    version = seed.deploy(app.state.ui.store, flows / "erp-orders.yaml")
    message = seed.message(app.state.ui.store, "erp-orders", version, {"po": "PO-1"})
    for path in ("/flows", "/flows/erp-orders", "/runs", f"/runs/{message}", "/dead-letters", "/dashboard",
                 "/audit", "/x12/overdue"):
        response = viewer.get(path)
        assert response.status_code == 200, path
        assert 'hx-trigger="every ' in response.text, f"{path} does not refresh itself"
