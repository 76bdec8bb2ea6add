"""The form view adds and removes targets and steps, writing through the round trip:
comments, order and every untouched line survive."""

from __future__ import annotations

import difflib
import html
import re

from .conftest import ORDERS_FLOW, UiClient

TWO_TARGETS = ORDERS_FLOW.replace(
    "targets:\n  - file: {path: outbox/erp-orders}\n",
    "targets:\n  - file: {path: outbox/erp-orders}\n  # the archive copy\n  - file: {path: outbox/archive}\n    name: archive\n",
)


def _yaml_in(response_text: str) -> str:
    found = re.search(r'<textarea id="yaml"[^>]*>(.*?)</textarea>', response_text, re.S)
    assert found is not None, response_text[:500]
    return html.unescape(found.group(1))


def _changes(old: str, new: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_the_form_view_offers_the_target_connectors(analyst: UiClient) -> None:
    response = analyst.post("/flows/erp-orders/form", {"yaml": ORDERS_FLOW})
    assert response.status_code == 200
    assert "Add a target" in response.text
    for kind in ("file", "http", "sftp", "sql"):
        assert f"<option>{kind}</option>" in response.text


def test_choosing_a_connector_shows_its_generated_form(analyst: UiClient) -> None:
    response = analyst.htmx_get("/flows/erp-orders/form/new-target?kind=http")
    assert response.status_code == 200
    assert "New target: http" in response.text
    assert 'name="opt.url"' in response.text and 'name="opt.method"' in response.text
    assert 'name="common.retry"' in response.text and 'value="add-target"' in response.text
    assert "target name" in response.text  # not to be confused with the file name option
    refused = analyst.htmx_get("/flows/erp-orders/form/new-target?kind=nosuch")
    assert refused.status_code == 400 and "choose one of" in refused.text


def test_a_viewer_cannot_open_the_new_target_form(viewer: UiClient) -> None:
    assert viewer.htmx_get("/flows/erp-orders/form/new-target?kind=file").status_code == 403


def test_adding_a_target_appends_it_and_changes_nothing_else(analyst: UiClient) -> None:
    response = analyst.post(
        "/flows/erp-orders/form/apply",
        {
            "yaml": ORDERS_FLOW,
            "action": "add-target",
            "kind": "file",
            "opt.path": "outbox/copy",
            "opt.name": "",
            "common.name": "copy",
            "common.retry": "{attempts: 3}",
        },
    )
    assert response.status_code == 200, response.text
    new = _yaml_in(response.text)
    assert _changes(ORDERS_FLOW, new) == [
        "+  - file: {path: outbox/copy}",
        "+    name: copy",
        "+    retry: {attempts: 3}",
    ]
    assert "# keep this comment" in new and new.startswith("# Orders from the ERP")
    assert "no problems" in response.text.lower() or 'class="issue' not in response.text
    assert "target 2: file" in response.text  # the form view shows the new target at once


def test_a_target_added_without_its_required_option_is_flagged(analyst: UiClient) -> None:
    response = analyst.post(
        "/flows/erp-orders/form/apply", {"yaml": ORDERS_FLOW, "action": "add-target", "kind": "http"}
    )
    assert response.status_code == 200
    assert "- http: {}" in _yaml_in(response.text)
    assert "missing required option" in response.text and "url" in response.text


def test_adding_a_target_of_an_unknown_connector_is_refused(analyst: UiClient) -> None:
    response = analyst.post(
        "/flows/erp-orders/form/apply", {"yaml": ORDERS_FLOW, "action": "add-target", "kind": "telnet"}
    )
    assert response.status_code == 400 and "telnet" in response.text


def test_removing_a_target_keeps_the_others_and_their_comments(analyst: UiClient) -> None:
    response = analyst.post(
        "/flows/erp-orders/form/apply", {"yaml": TWO_TARGETS, "action": "remove", "part": "targets.0"}
    )
    assert response.status_code == 200
    new = _yaml_in(response.text)
    assert "outbox/erp-orders}" not in new and "outbox/archive" in new and "name: archive" in new
    assert "# keep this comment" in new
    removed = [line for line in _changes(TWO_TARGETS, new) if line.startswith("-")]
    assert removed == ["-  - file: {path: outbox/erp-orders}"]


def test_removing_the_only_target_is_refused(analyst: UiClient) -> None:
    response = analyst.post(
        "/flows/erp-orders/form/apply", {"yaml": ORDERS_FLOW, "action": "remove", "part": "targets.0"}
    )
    assert response.status_code == 400 and "at least one target" in response.text


def test_a_step_is_added_where_asked_and_removed(analyst: UiClient) -> None:
    added = analyst.post(
        "/flows/erp-orders/form/apply", {"yaml": ORDERS_FLOW, "action": "add-step", "kind": "filter", "after": "0"}
    )
    assert added.status_code == 200
    new = _yaml_in(added.text)
    lines = new.splitlines()
    first = next(i for i, line in enumerate(lines) if "jmespath:" in line)
    assert lines[first + 1] == "  - filter: {}" and "json.render" in lines[first + 2]
    assert _changes(ORDERS_FLOW, new) == ["+  - filter: {}"]
    removed = analyst.post("/flows/erp-orders/form/apply", {"yaml": new, "action": "remove", "part": "steps.1"})
    assert removed.status_code == 200
    assert _yaml_in(removed.text) == ORDERS_FLOW


def test_adding_to_empty_lists_writes_block_lists(analyst: UiClient) -> None:
    text = ORDERS_FLOW.replace(
        'steps:\n  - jmespath: "{order: po, qty: qty}"   # keep this comment\n  - json.render: {}\n', "steps: []\n"
    )
    assert "steps: []" in text
    response = analyst.post("/flows/erp-orders/form/apply", {"yaml": text, "action": "add-step", "kind": "json.render"})
    new = _yaml_in(response.text)
    assert "steps:\n  - json.render: {}\n" in new
