"""The editor: validation as you type, the form view, the diff, saving through the
round trip (comments kept, only the change in the diff), git commits on a branch."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from .conftest import ORDERS_FLOW, UiClient


def test_edit_page_shows_the_source_and_no_problems(analyst: UiClient) -> None:
    page = analyst.get("/flows/erp-orders/edit")
    assert page.status_code == 200
    assert "# keep this comment" in page.text
    assert "No problems" in page.text


def test_validation_as_you_type_points_at_the_line(analyst: UiClient) -> None:
    broken = ORDERS_FLOW.replace("json.render: {}", "json.rendr: {}")
    response = analyst.post("/flows/erp-orders/check", {"yaml": broken})
    assert response.status_code == 200
    line = broken.splitlines().index("  - json.rendr: {}") + 1
    assert f"line {line}:" in response.text
    assert "did you mean &#39;json.render&#39;" in response.text or "did you mean 'json.render'" in response.text
    assert f'data-lines="{line}"' in response.text


def test_yaml_syntax_error_is_shown_with_its_line(analyst: UiClient) -> None:
    response = analyst.post("/flows/erp-orders/check", {"yaml": "apiVersion: flowyard/v1\nkind: [Flow\n"})
    assert response.status_code == 200
    assert "YAML syntax" in response.text


def test_viewer_may_check_but_not_save(viewer: UiClient, flows: Path) -> None:
    assert viewer.post("/flows/erp-orders/check", {"yaml": ORDERS_FLOW}).status_code == 200
    refused = viewer.post("/flows/erp-orders/save", {"yaml": ORDERS_FLOW + "# x\n"})
    assert refused.status_code == 403
    assert (flows / "erp-orders.yaml").read_text() == ORDERS_FLOW


def test_diff_then_save_keeps_comments_and_changes_only_that_line(analyst: UiClient, flows: Path) -> None:
    edited = ORDERS_FLOW.replace("qty: qty}", "qty: quantity}")
    diff = analyst.post("/flows/erp-orders/diff", {"yaml": edited})
    assert diff.status_code == 200
    changed = [ln for ln in re.findall(r'<span class="dl (?:add|del)">([^<]*)</span>', diff.text)]
    assert len(changed) == 2 and "quantity" in changed[1]
    saved = analyst.post("/flows/erp-orders/save", {"yaml": edited})
    assert saved.status_code == 200 and "Saved" in saved.text
    text = (flows / "erp-orders.yaml").read_text()
    assert text == edited
    assert "# keep this comment" in text and "# Orders from the ERP" in text


def test_save_is_refused_when_the_file_changed_meanwhile(analyst: UiClient, flows: Path) -> None:
    page = analyst.get("/flows/erp-orders/edit")
    base = re.search(r'name="base" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    (flows / "erp-orders.yaml").write_text(ORDERS_FLOW + "# someone else\n")
    refused = analyst.post("/flows/erp-orders/save", {"yaml": ORDERS_FLOW, "base": base})
    assert refused.status_code == 409
    assert (flows / "erp-orders.yaml").read_text().endswith("# someone else\n")


def test_form_view_is_generated_from_the_option_models(analyst: UiClient) -> None:
    response = analyst.post("/flows/erp-orders/form", {"yaml": ORDERS_FLOW})
    assert response.status_code == 200
    for field in ('name="opt.path"', 'name="opt.pattern"', 'name="opt.expression"', 'name="opt.after"'):
        assert field in response.text
    assert "archive" in response.text and "delete" in response.text  # the `after` choices


def test_form_apply_changes_one_option_and_keeps_the_rest(analyst: UiClient) -> None:
    response = analyst.post(
        "/flows/erp-orders/form/apply",
        {"yaml": ORDERS_FLOW, "part": "steps.0", "opt.expression": "{order: po, qty: qty, plant: `MX01`}"},
    )
    assert response.status_code == 200
    textarea = re.search(r'<textarea id="yaml"[^>]*>(.*?)</textarea>', response.text, re.S)
    assert textarea is not None
    import html

    new = html.unescape(textarea.group(1))
    assert "plant: `MX01`" in new
    assert "# keep this comment" in new and "# Orders from the ERP" in new
    changed = [(a, b) for a, b in zip(ORDERS_FLOW.splitlines(), new.splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and "# keep this comment" in changed[0][1]


def test_form_apply_target_option_and_add_step(analyst: UiClient) -> None:
    response = analyst.post(
        "/flows/erp-orders/form/apply", {"yaml": ORDERS_FLOW, "part": "targets.0", "opt.path": "outbox/other"}
    )
    assert "outbox/other" in response.text
    added = analyst.post("/flows/erp-orders/form/apply", {"yaml": ORDERS_FLOW, "action": "add-step", "kind": "filter"})
    assert added.status_code == 200 and "- filter: {}" in added.text
    assert "missing required option" in added.text  # validated at once


def test_form_apply_refuses_a_bad_value_with_a_message(analyst: UiClient) -> None:
    response = analyst.post("/flows/erp-orders/form/apply", {"yaml": ORDERS_FLOW, "part": "steps.9"})
    assert response.status_code == 400
    assert "steps.9" in response.text


def test_new_flow_starts_valid(analyst: UiClient, flows: Path) -> None:
    response = analyst.post("/flows/new", {"name": "mx01-asn", "plant": "MX01"})
    assert response.headers["HX-Redirect"] == "/flows/mx01-asn/edit"
    page = analyst.get("/flows/mx01-asn/edit")
    assert "No problems" in page.text
    assert (flows / "mx01-asn.yaml").is_file()
    again = analyst.post("/flows/new", {"name": "mx01-asn"}, htmx=False)
    assert again.status_code == 400 and "already exists" in again.text
    bad = analyst.post("/flows/new", {"name": "Bad Name"}, htmx=False)
    assert bad.status_code == 400


def test_save_commits_on_a_review_branch_with_the_author(analyst: UiClient, flows: Path) -> None:
    git = ["git", "-c", "user.name=Setup", "-c", "user.email=setup@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=flows, check=True)
    subprocess.run([*git, "add", "."], cwd=flows, check=True)
    subprocess.run([*git, "commit", "-qm", "start"], cwd=flows, check=True)
    edited = ORDERS_FLOW.replace("qty: qty}", "qty: amount}")
    saved = analyst.post("/flows/erp-orders/save", {"yaml": edited, "commit": "1", "message": "rename qty"})
    assert saved.status_code == 200 and "Committed" in saved.text
    branch = "flowyard/analyst/erp-orders"
    log = subprocess.run(
        ["git", "log", "-1", "--format=%an|%s", branch], cwd=flows, capture_output=True, text=True, check=True
    )
    assert log.stdout.strip() == "Analyst User|rename qty"
    shown = subprocess.run(
        ["git", "show", f"{branch}:erp-orders.yaml"], cwd=flows, capture_output=True, text=True, check=True
    )
    assert shown.stdout == edited
    head = subprocess.run(
        ["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=flows, capture_output=True, text=True, check=True
    )
    assert head.stdout.strip() == "main"  # the working tree was not switched
    page = analyst.get("/flows/erp-orders")
    assert branch in page.text


def test_a_viewers_alias_bomb_is_refused_at_once(viewer: UiClient) -> None:
    """Seven such POSTs stopped the runtime: each expanded the aliases in the shared
    thread pool (issue 17)."""
    levels = ['l0: &l0 ["x","x","x","x","x","x","x","x","x","x"]']
    levels += [f"l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * 10) + "]" for n in range(1, 12)]
    started = time.monotonic()
    for _ in range(7):
        response = viewer.post("/flows/erp-orders/check", {"yaml": ORDERS_FLOW + "\n".join(levels) + "\n"})
        assert response.status_code == 200
        assert "alias bomb" in response.text
    assert time.monotonic() - started < 30
