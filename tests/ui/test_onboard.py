"""The onboarding wizard at /onboard, server side: each route, the roles, CSRF, the form
generated from a template's parameters, values refused at their field with nothing
written, and a saved instance that is a draft on the changes page."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import UiClient

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "onboarding"
GOOD = {"plant": "CZ03", "plant_name": "Kolín", "mes_url": "https://mes.cz03.example/api", "utc_offset": "+01:00"}
SECRET_TEMPLATE = """\
apiVersion: flowyard/v1
kind: Template
metadata: {name: plant-drop, description: A plant's drop folder to the ERP}
parameters:
  plant: {type: string, pattern: "^[A-Z]{2}[0-9]{2}$", description: ERP plant code}
  erp_token: {type: string, description: the ERP's API token}
flow:
  metadata: {name: "{{ plant | lower }}-drop"}
  source: {file: {path: "in/{{ plant | lower }}"}}
  steps: [{json.render: {}}]
  targets:
    - http: {url: https://erp.example/api, headers: {Authorization: "Bearer {{ erp_token }}"}}
"""


@pytest.fixture
def flows(flows: Path) -> Path:
    """The UI tests' flows folder with the shipped plant templates and their tables."""
    templates = flows / "templates"
    templates.mkdir()
    for name in ("plant-mes", "supplier-x12", "supplier-x12-full"):
        shutil.copy(EXAMPLES / "templates" / f"{name}.yaml", templates)
        shutil.copytree(EXAMPLES / "templates" / name, templates / name)
    shutil.copy(ROOT / "flows" / "templates" / "plant-production-confirmations.yaml", templates)
    shutil.copytree(ROOT / "flows" / "templates" / "plant-production-confirmations",
                    templates / "plant-production-confirmations")
    (templates / "plant-drop.yaml").write_text(SECRET_TEMPLATE, encoding="utf-8")
    shutil.copy(EXAMPLES / "tables" / "uom.csv", flows / "tables" / "uom.csv")
    shutil.copy(ROOT / "flows" / "tables" / "plant-codes.yaml", flows / "tables")
    shutil.copy(ROOT / "flows" / "tables" / "erp-uom.csv", flows / "tables")
    return flows


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def field_error(html: str, name: str) -> str:
    found = re.search(rf'<p class="field-error error" id="err-{name}"[^>]*>(.*?)</p>', html, re.S)
    assert found, f"no message element for {name} in {html[:500]}"
    return found.group(1).strip()


def test_the_list_shows_each_template_and_what_it_creates(analyst: UiClient) -> None:
    page = analyst.get("/onboard")
    assert page.status_code == 200
    html = page.text
    assert 'href="/onboard/plant-mes"' in html and "A plant&#39;s MES production orders and confirmations" in html
    assert "{{ plant | lower }}-mes-production" in html  # the flow it creates
    assert "(e.g. mx01-mes-production)" in html  # named for the template's example values
    assert "(e.g. mx01-supplierx-856, mx01-supplierx-810, mx01-supplierx-850)" in html  # one template, three flows
    assert "tables/{{ plant | lower }}-work-centres.yaml" in html
    assert "a released order goes to the MES" in html  # its tests
    assert 'href="/onboard/plant-production-confirmations"' in html
    assert '<a href="/onboard" aria-current="page">Onboard</a>' in html


def test_viewers_are_refused_every_route(viewer: UiClient) -> None:
    assert viewer.get("/onboard").status_code == 403
    assert viewer.get("/onboard/plant-mes").status_code == 403
    for route in ("field/plant", "preview", "try", "tests", "save"):
        assert viewer.post(f"/onboard/plant-mes/{route}", GOOD).status_code == 403, route
    assert 'href="/onboard"' not in viewer.get("/flows").text


def test_the_form_is_generated_from_the_parameters(analyst: UiClient) -> None:
    html = analyst.get("/onboard/plant-mes").text
    for name in ("plant", "plant_name", "mes_url", "erp_url", "shift_start", "utc_offset", "confirmations"):
        assert f'name="{name}"' in html, name
    assert 'pattern="[A-Z]{2}[0-9]{2}"' in html  # checked by the browser too
    assert 'pattern="[+\\-][0-9]{2}:[0-9]{2}"' in html  # as the browser's `v` flag wants it: `[+-]` is an error there
    assert 'name="shift_start" value="06:00"' in html  # defaults filled in
    assert "ERP plant code, two letters and two digits (MX01)" in html  # help from the description
    select = re.search(r'<select id="f-confirmations" name="confirmations".*?</select>', html, re.S)
    assert select and '<option value="final-only">' in select.group(0)
    assert 'hx-post="/onboard/plant-mes/field/plant"' in html
    # x-table: the codes of tables/plant-codes.yaml, as a pick-list
    html = analyst.get("/onboard/plant-production-confirmations").text
    select = re.search(r'<select id="f-shopfloor_name" name="shopfloor_name".*?</select>', html, re.S)
    assert select and '<option value="QRO">QRO (MX02)</option>' in select.group(0)
    # a secret only as a reference
    html = analyst.get("/onboard/plant-drop").text
    assert re.search(r'name="erp_token"[^>]*placeholder="\$\{secret:NAME\}"', html, re.S)
    assert analyst.get("/onboard/no-such-template").status_code == 404
    # values in the address fill the form (a link can start an onboarding)
    html = analyst.get("/onboard/plant-mes?plant=CZ03&confirmations=final-only").text
    assert 'name="plant" value="CZ03"' in html and '<option value="final-only" selected>' in html


def test_a_field_is_checked_as_it_is_typed(analyst: UiClient) -> None:
    bad = analyst.post("/onboard/plant-mes/field/plant", {"plant": "CZ3"})
    assert bad.status_code == 200
    assert field_error(bad.text, "plant") == (
        "parameter &#39;plant&#39;: &#39;CZ3&#39; does not match the pattern &#39;^[A-Z]{2}[0-9]{2}$&#39; "
        "(ERP plant code, two letters and two digits (MX01))")
    good = analyst.post("/onboard/plant-mes/field/plant", {"plant": "CZ03"})
    assert field_error(good.text, "plant") == "" and "hidden" in good.text
    code = analyst.post("/onboard/plant-production-confirmations/field/shopfloor_name", {"shopfloor_name": "QR0"})
    assert "is not a code in table &#39;plant-codes&#39;" in field_error(code.text, "shopfloor_name")
    assert "close: &#39;QRO&#39;" in code.text
    assert analyst.post("/onboard/plant-mes/field/nope", {"nope": "x"}).status_code == 404


@pytest.mark.parametrize("route", ["preview", "try", "tests", "save"])
def test_a_wrong_value_is_refused_at_its_field_and_nothing_is_written(analyst: UiClient, flows: Path, route: str) -> None:
    before = files_under(flows)
    answer = analyst.post(f"/onboard/plant-mes/{route}", {**GOOD, "plant": "cz03", "mes_url": "http://mes"})
    assert answer.status_code == 422
    assert "does not match the pattern" in field_error(answer.text, "plant")
    assert "https://" in field_error(answer.text, "mes_url")
    assert 'hx-swap-oob="true"' in answer.text
    missing = analyst.post(f"/onboard/plant-mes/{route}", {**GOOD, "plant_name": ""})
    assert missing.status_code == 422 and field_error(missing.text, "plant_name").startswith("plant_name is required")
    assert files_under(flows) == before


def test_a_secret_is_only_a_reference(analyst: UiClient, flows: Path) -> None:
    before = files_under(flows)
    refused = analyst.post("/onboard/plant-drop/save", {"plant": "CZ03", "erp_token": "hunter2-real-token"})
    assert refused.status_code == 422
    assert "never the secret itself" in field_error(refused.text, "erp_token")
    assert "hunter2-real-token" not in refused.text
    assert files_under(flows) == before
    saved = analyst.post("/onboard/plant-drop/save", {"plant": "CZ03", "erp_token": "${secret:CZ03_ERP_TOKEN}"})
    assert saved.status_code == 200, saved.text
    assert "${secret:CZ03_ERP_TOKEN}" in (flows / "cz03-drop.yaml").read_text()


def test_preview_shows_the_flows_their_diagram_and_the_files(analyst: UiClient, flows: Path) -> None:
    before = files_under(flows)
    answer = analyst.post("/onboard/plant-mes/preview", GOOD)
    assert answer.status_code == 200, answer.text
    html = answer.text
    assert 'data-flow="cz03-mes-production"' in html
    assert 'aria-label="pipeline: file, 8 steps, 2 targets"' in html  # the diagram
    assert "The flow loads and checks clean." in html
    assert "url: &#34;https://mes.cz03.example/api/production-orders&#34;" in html or "https://mes.cz03.example/api/production-orders" in html
    assert "<code>cz03-mes-production.yaml</code>" in html
    assert "tables/cz03-work-centres.yaml" in html and "tests/cz03-mes-production/order.json" in html
    assert files_under(flows) == before


def test_try_runs_the_samples_step_by_step(analyst: UiClient, flows: Path) -> None:
    before = files_under(flows)
    html = analyst.post("/onboard/plant-mes/try", GOOD).text
    assert 'data-case="a released order goes to the MES"' in html
    assert 'data-step="order for the MES"' in html  # a lane per step
    assert "All steps succeeded" in html
    assert "CZ03-CNC" in html  # the confirmation went through the plant's new table
    assert "is not in table &#39;cz03-work-centres&#39;" in html  # the unknown-resource sample fails as it should
    assert files_under(flows) == before  # the scratch folder is gone


def test_tests_run_before_saving(analyst: UiClient, flows: Path) -> None:
    before = files_under(flows)
    html = analyst.post("/onboard/plant-mes/tests", {**GOOD, "confirmations": "final-only"}).text
    assert re.search(r'id="onboard-tests-verdict">\s*3 of 3 passed', html), html
    assert files_under(flows) == before


def test_save_writes_a_draft_for_the_changes_page(analyst: UiClient, deployer: UiClient, flows: Path) -> None:
    answer = analyst.post("/onboard/plant-mes/save", GOOD)
    assert answer.status_code == 200, answer.text
    assert "Saved <code>cz03-mes-production</code> as a draft" in answer.text
    instance = (flows / "cz03-mes-production.yaml").read_text()
    assert "template: plant-mes" in instance and "plant: CZ03" in instance and "shift_start" not in instance
    assert (flows / "tables" / "cz03-work-centres.yaml").is_file()
    assert (flows / "tests" / "cz03-mes-production" / "order.expected.json").is_file()
    changes = deployer.get("/changes").text
    assert "cz03-mes-production" in changes
    audit = analyst.get("/audit?action=flow-saved").text
    assert "onboarded from template plant-mes@1.0" in audit
    # the same plant twice: refused, the first one stays as it was
    again = analyst.post("/onboard/plant-mes/save", {**GOOD, "plant_name": "Other"})
    assert again.status_code == 422 and "already exists" in again.text
    assert (flows / "cz03-mes-production.yaml").read_text() == instance


def test_posts_need_the_csrf_token(analyst: UiClient, flows: Path) -> None:
    before = files_under(flows)
    for route in ("field/plant", "preview", "save"):
        assert analyst.post(f"/onboard/plant-mes/{route}", GOOD, csrf=False).status_code == 403, route
    assert files_under(flows) == before


def test_an_onboarding_can_be_scripted_with_field_names(client_for: Callable[[str], UiClient], flows: Path) -> None:
    """A plain form post (no htmx) with the parameters' names saves the instance."""
    analyst = client_for("analyst")
    answer = analyst.post("/onboard/plant-production-confirmations/save",
                          {"plant": "MX09", "plant_name": "Toluca", "shopfloor_name": "QRO"}, htmx=False)
    assert answer.status_code == 200, answer.text
    assert (flows / "mx09-production-confirmations.yaml").is_file()


SUPPLIER = {"partner": "supplierq", "partner_name": "Supplier Q", "isa_id": "SUPPLIERQ", "plant": "MX01",
            "acknowledgment": "none"}


def test_a_supplier_in_one_pass_several_flows(analyst: UiClient, flows: Path) -> None:
    """A template giving several flows: each is previewed with its diagram, its samples
    tried and its tests run; one save writes the one small instance and the partner profile."""
    before = files_under(flows)
    html = analyst.post("/onboard/supplier-x12-full/preview", SUPPLIER).text
    for suffix in ("856", "810", "850"):
        assert f'data-flow="mx01-supplierq-{suffix}"' in html, suffix
    assert html.count("The flow loads and checks clean.") == 3, html
    assert "partners/supplierq.yaml" in html
    tests = analyst.post("/onboard/supplier-x12-full/tests", SUPPLIER).text
    verdict = re.search(r'id="onboard-tests-verdict">\s*(\d+) of (\d+) passed', tests)
    assert verdict and verdict.group(1) == verdict.group(2), tests
    tried = analyst.post("/onboard/supplier-x12-full/try", SUPPLIER).text
    assert {"mx01-supplierq-856", "mx01-supplierq-810", "mx01-supplierq-850"} <= set(re.findall(r"through <code>([^<]+)</code>", tried))
    assert files_under(flows) == before
    saved = analyst.post("/onboard/supplier-x12-full/save", SUPPLIER)
    assert saved.status_code == 200, saved.text
    assert (flows / "mx01-supplierq.yaml").is_file() and (flows / "partners" / "supplierq.yaml").is_file()


def test_a_deployer_deploys_the_onboarded_supplier_through_the_gate(analyst: UiClient, deployer: UiClient, app: Any) -> None:
    assert analyst.post("/onboard/supplier-x12-full/save", SUPPLIER).status_code == 200
    assert analyst.post("/changes/deploy", {"key": "mx01-supplierq.yaml", "version": "", "note": ""}).status_code == 403
    page = deployer.get("/changes").text
    card = re.search(r"<article[^>]*data-key=.mx01-supplierq.yaml.*?</article>", page, re.S)
    assert card, page
    version = re.search(r'name="version" value="([^"]+)"', card.group(0))
    assert version
    done = deployer.post("/changes/deploy", {"key": "mx01-supplierq.yaml", "version": version.group(1), "note": "go live"})
    assert done.status_code == 200, done.text
    toast = re.search(r'<div id="toast".*', done.text, re.S)
    assert toast and "Deployed mx01-supplierq.yaml" in toast.group(0), done.text[-600:]
    deployed = {f.flow for f in app.state.ui.store.flows() if f.version}
    assert {"mx01-supplierq-856", "mx01-supplierq-810", "mx01-supplierq-850"} <= deployed  # one deployment per flow
    assert "mx01-supplierq.yaml" not in re.sub(r'<div id="toast".*', "", deployer.get("/changes").text, flags=re.S)
