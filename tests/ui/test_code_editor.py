"""The code editor's server side: the vendored CodeMirror bundle matches its lock, the
flow JSON Schema is served for completion and hover help, and the check answer carries
the problems as JSON (line, column, did-you-mean) for the editor to underline."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.testing import TestClient

from flowyard_ui import app as app_module

from .conftest import ORDERS_FLOW, UiClient

ROOT = Path(__file__).resolve().parents[2]
VENDOR = Path(app_module.__file__).parent / "static" / "vendor"
SOURCE = ROOT / "ui" / "editor-src"


def _issue_data(text: str) -> list[dict[str, Any]]:
    found = re.search(r'<script type="application/json" id="issue-data" data-for="yaml">(.*?)</script>', text, re.S)
    assert found, text[:800]
    data: list[dict[str, Any]] = json.loads(html.unescape(found.group(1)))
    return data


def test_the_bundle_is_built_from_the_locked_versions() -> None:
    """bin/build-editor writes a manifest of what it bundled; each package in it is the
    version package-lock.json pins (a lock changed without a rebuild fails here)."""
    manifest = json.loads((VENDOR / "codemirror.manifest.json").read_text())
    lock = json.loads((SOURCE / "package-lock.json").read_text())["packages"]
    direct = json.loads((SOURCE / "package.json").read_text())["dependencies"]
    assert set(direct) <= set(manifest["packages"])
    for name, version in manifest["packages"].items():
        assert lock[f"node_modules/{name}"]["version"] == version, name
    assert lock["node_modules/esbuild"]["version"] == manifest["built_with"]["esbuild"]
    bundle = (VENDOR / "codemirror.min.js").read_text()
    assert "EditorView" in bundle and bundle.count("\n") < 50  # minified, not a dev build
    licenses = (VENDOR / "codemirror.LICENSE.txt").read_text()
    for name in manifest["packages"]:
        assert f"{name} {manifest['packages'][name]}" in licenses


def test_the_editor_script_and_bundle_are_served(viewer: UiClient) -> None:
    for path in ("/static/editor.js", "/static/vendor/codemirror.min.js"):
        served = viewer.get(path)
        assert served.status_code == 200, path
        assert "javascript" in served.headers["content-type"]
    page = viewer.get("/flows/erp-orders/edit").text
    assert '<script type="module" src="/static/editor.js">' in page
    # the textarea stays the form field (the editor writes into it)
    assert re.search(r'<textarea id="yaml" name="yaml"[^>]*data-code-editor="yaml"', page)
    assert 'data-schema="/schema/flow.schema.json"' in page


def test_the_flow_schema_is_served_to_any_logged_in_role(viewer: UiClient, app: Litestar) -> None:
    response = viewer.get("/schema/flow.schema.json")
    assert response.status_code == 200
    schema = response.json()
    flow = schema["$defs"]["Flow"]
    steps = {v["title"] for v in flow["properties"]["steps"]["items"]["oneOf"]}
    assert {"jmespath", "csv.parse", "json.render"} <= steps
    csv = schema["$defs"]["CsvParseOptions"]["properties"]
    assert "delimiter" in csv and csv["delimiter"]["description"]
    with TestClient(app, base_url="https://testserver.local") as anonymous:
        assert anonymous.get("/schema/flow.schema.json", follow_redirects=False).status_code in (302, 303, 307, 401)


def test_the_check_answer_carries_problems_with_line_column_and_suggestion(viewer: UiClient) -> None:
    broken = ORDERS_FLOW.replace('pattern: "*.json"', 'pattrn: "*.json"').replace("json.render: {}", "json.rendr: {}")
    response = viewer.post("/flows/erp-orders/check", {"yaml": broken})
    assert response.status_code == 200
    data = _issue_data(response.text)
    lines = broken.splitlines()
    option_line = next(i for i, line in enumerate(lines, 1) if "pattrn" in line)
    step_line = next(i for i, line in enumerate(lines, 1) if "json.rendr" in line)
    by_line = {d["line"]: d for d in data}
    option = by_line[option_line]
    assert lines[option_line - 1][option["column"] - 1 :].startswith("pattrn")
    assert option["suggestion"] == "pattern" and option["severity"] == "error"
    assert "unknown option 'pattrn'" in option["message"]
    assert by_line[step_line]["suggestion"] == "json.render"
    clean = _issue_data(viewer.post("/flows/erp-orders/check", {"yaml": ORDERS_FLOW}).text)
    assert clean == []


def test_the_check_needs_the_csrf_token(viewer: UiClient) -> None:
    refused = viewer.post("/flows/erp-orders/check", {"yaml": ORDERS_FLOW}, csrf=False)
    assert refused.status_code == 403


def test_the_edit_page_carries_the_first_problems(analyst: UiClient, flows: Path) -> None:
    (flows / "erp-orders.yaml").write_text(ORDERS_FLOW.replace("json.render", "json.rendr"), encoding="utf-8")
    page = analyst.get("/flows/erp-orders/edit").text
    assert [d["suggestion"] for d in _issue_data(page)] == ["json.render"]


def test_a_problem_quoting_markup_cannot_close_the_data_script(viewer: UiClient) -> None:
    hostile = ORDERS_FLOW.replace("json.render: {}", '"</script><img src=x onerror=alert(1)>": {}')
    text = viewer.post("/flows/erp-orders/check", {"yaml": hostile}).text
    found = re.search(r'id="issue-data" data-for="yaml">(.*?)</script>', text, re.S)
    assert found and "<" not in found.group(1)  # escaped inside the JSON (\u003c)
    assert any("</script><img" in d["message"] for d in _issue_data(text))
