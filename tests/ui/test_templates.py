"""Templates in the UI (issue 16 items 3 and 4): the list, a template's page with its
parameters and instances, the impact of an edit on every instance before it is saved
(what `flowyard diff --rendered` computes), saving as a draft (analyst, CSRF), and
instances shown in the flows list and on their page as the flows they render to."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from flowyard.loader import content_hash

from .conftest import UiClient

ROOT = Path(__file__).resolve().parents[2]
ONBOARDING = ROOT / "examples" / "onboarding"


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """A flows folder holding the onboarding examples: templates, instances, partners,
    tables and the instances' samples."""
    folder = tmp_path / "flows"
    shutil.copytree(ONBOARDING, folder, ignore=shutil.ignore_patterns(".onboard-preview-*"))  # another test's scratch
    return folder


def impact_hash(html: str) -> str:
    found = re.search(r'name="impact" value="([0-9a-f]+)"', html)
    assert found, "the impact carries the hash of the text it was computed for"
    return found.group(1)


def the_list_shows_every_template_with_what_it_gives_and_its_instances(viewer: UiClient) -> None:
    page = viewer.get("/templates")
    assert page.status_code == 200
    for name in ("plant-mes", "supplier-x12", "supplier-x12-full"):
        assert f'href="/templates/{name}"' in page.text
    row = re.search(r'<tr data-template="supplier-x12-full">.*?</tr>', page.text, re.S)
    assert row is not None and "3 flows" in row.group(0) and 'href="/flows/mx01-supplierz-856"' in row.group(0)
    row = re.search(r'<tr data-template="plant-mes">.*?</tr>', page.text, re.S)
    assert row is not None and "mx01-mes-production" in row.group(0) and "de02-mes-production" in row.group(0)
    assert 'href="/templates"' in page.text  # in the navigation


def a_template_page_shows_its_parameters_flows_and_instances(viewer: UiClient) -> None:
    page = viewer.get("/templates/supplier-x12-full")
    assert page.status_code == 200
    for parameter in ("partner", "isa_id", "acknowledgment", "plant"):
        assert f"<code>{parameter}</code>" in page.text
    assert "{{ instance_name }}-850" in page.text
    instance = re.search(r'<tr data-instance="mx01-supplierz">.*?</tr>', page.text, re.S)
    assert instance is not None
    for flow in ("mx01-supplierz-856", "mx01-supplierz-810", "mx01-supplierz-850"):
        assert f'href="/flows/{flow}"' in instance.group(0)
    assert "show-impact" not in page.text and "<textarea" not in page.text  # a viewer reads the source
    assert viewer.get("/templates/no-such-template").status_code == 404


def editing_needs_an_analyst_and_the_csrf_token(viewer: UiClient, analyst: UiClient, flows: Path) -> None:
    text = (flows / "templates" / "plant-mes.yaml").read_text()
    assert viewer.post("/templates/plant-mes/impact", {"text": text}).status_code == 403
    assert viewer.post("/templates/plant-mes", {"text": text}).status_code == 403
    assert analyst.post("/templates/plant-mes/impact", {"text": text}, csrf=False).status_code == 403
    assert analyst.post("/templates/plant-mes", {"text": text + "# x\n"}, csrf=False).status_code == 403
    assert (flows / "templates" / "plant-mes.yaml").read_text() == text


def the_impact_lists_every_instance_with_its_changes_and_tests(analyst: UiClient, flows: Path) -> None:
    path = flows / "templates" / "plant-mes.yaml"
    old = path.read_text()
    assert "max_backoff" in old or "retry" in old or "jmespath" in old
    new = old.replace("order_id:", "order_number:", 1) if "order_id:" in old else old.replace("description:", "description: changed", 1)
    answer = analyst.post("/templates/plant-mes/impact", {"text": new})
    assert answer.status_code == 200, answer.text
    for instance in ("mx01-mes-production", "de02-mes-production"):
        assert f'data-instance="{instance}"' in answer.text
    assert "Impact on 2 instance(s)" in answer.text
    assert path.read_text() == old  # nothing written


def saving_needs_the_impact_of_that_very_text_and_makes_a_draft(analyst: UiClient, flows: Path) -> None:
    path = flows / "templates" / "supplier-x12-full.yaml"
    old = path.read_text()
    new = old.replace("shipment_id: BSN.BSN02,", "shipment_id: BSN.BSN03,")
    base = content_hash(old)
    refused = analyst.post("/templates/supplier-x12-full", {"text": new, "base": base, "impact": ""})
    assert refused.status_code == 409 and "changed since its impact was shown" in refused.text
    assert path.read_text() == old
    impact = analyst.post("/templates/supplier-x12-full/impact", {"text": new})
    assert 'data-instance="mx01-supplierz"' in impact.text and 'data-failing="1"' in impact.text
    assert "Impact on 1 instance(s) (3 flows): 1 changed, 1 failing" in impact.text
    assert "FAIL</span> a ship notice with two cartons" in impact.text
    assert "shipment_id" in impact.text  # the semantic change of the rendered flow
    assert "deploy gate refuses" in impact.text
    saved = analyst.post("/templates/supplier-x12-full", {"text": new, "base": base, "impact": impact_hash(impact.text)})
    assert saved.status_code == 200, saved.text
    assert path.read_text() == new
    assert "as a draft" in saved.text and "refuses it while 1 instance(s) fail" in saved.text
    stale = analyst.post("/templates/supplier-x12-full", {"text": old, "base": base, "impact": impact_hash(impact.text)})
    assert stale.status_code == 409 and path.read_text() == new
    audit = analyst.get("/audit")
    assert "template-saved" in audit.text


def a_broken_template_is_not_saved(analyst: UiClient, flows: Path) -> None:
    path = flows / "templates" / "plant-mes.yaml"
    old = path.read_text()
    broken = old.replace("parameters:", "parameterz:", 1)
    impact = analyst.post("/templates/plant-mes/impact", {"text": broken})
    assert "The template has errors" in impact.text and "save-template" not in impact.text
    answer = analyst.post("/templates/plant-mes", {"text": broken, "base": content_hash(old), "impact": impact_hash(impact.text) if 'name="impact"' in impact.text else ""})
    assert answer.status_code in (400, 409) and path.read_text() == old


def instances_look_like_flows_in_the_list_and_on_their_page(viewer: UiClient) -> None:
    page = viewer.get("/flows")
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr>\s*<td><a href="/flows/([a-z0-9-]+)">.*?</tr>', page.text, re.S)}
    for name in ("mx01-supplierz-856", "mx01-supplierz-810", "mx01-supplierz-850", "mx01-mes-production"):
        assert name in rows, sorted(rows)
    row = rows["mx01-supplierz-850"]
    assert "ERP purchase orders of MX01 to Supplier Z as X12 850" in row
    assert ">MX01<" in row and ">SUPPLIERZ<" in row
    assert 'href="/templates/supplier-x12-full"' in row and "mx01-supplierz" in row
    assert "draft differs" not in row and "never deployed" in row
    assert "mx01-supplierz-850" in viewer.get("/flows?plant=MX01").text
    assert "mx01-supplierz-850" not in viewer.get("/flows?plant=DE02").text
    assert 'value="SUPPLIERZ"' in page.text or ">SUPPLIERZ</option>" in page.text  # the partner filter
    flow = viewer.get("/flows/mx01-supplierz-856")
    assert flow.status_code == 200
    assert "no source" not in flow.text and "x12.parse" in flow.text and "inbox/supplierz/856" in flow.text
    assert 'href="/templates/supplier-x12-full"' in flow.text and "version 1.0" in flow.text
    assert 'href="/flows/mx01-supplierz-810"' in flow.text  # its sibling flows
    mes = viewer.get("/flows/mx01-mes-production")
    assert "no source" not in mes.text and 'href="/templates/plant-mes"' in mes.text


def test_a_deployed_instance_shows_no_false_change(deployer: UiClient, flows: Path) -> None:
    answer = deployer.post("/flows/mx01-supplierz-810/deploy", {"note": "go live"})
    assert answer.status_code in (200, 303), answer.text
    answer = deployer.post("/flows/mx01-mes-production/deploy", {"note": "go live"})
    assert answer.status_code in (200, 303), answer.text
    page = deployer.get("/flows")
    mes = re.search(r'<tr>\s*<td><a href="/flows/mx01-mes-production">.*?</tr>', page.text, re.S)
    assert mes is not None and "draft differs" not in mes.group(0) and "never deployed" not in mes.group(0)
    row = re.search(r'<tr>\s*<td><a href="/flows/mx01-supplierz-810">.*?</tr>', page.text, re.S)
    assert row is not None and "draft differs" not in row.group(0) and "never deployed" not in row.group(0)
    other = re.search(r'<tr>\s*<td><a href="/flows/mx01-supplierz-856">.*?</tr>', page.text, re.S)
    assert other is not None and "never deployed" in other.group(0)
    # the instance's other flows are drafts on Changes, one per flow; deploying the last
    # listed one (not the first of the file) deploys the file's flows
    changes = deployer.get("/changes").text
    versions = re.findall(r'name="key" value="mx01-supplierz.yaml"><input type="hidden" name="version" value="([0-9a-f]+)"', changes)
    assert len(set(versions)) == 2, versions  # 856 and 850 (810 is deployed)
    deployer.refresh_token("/changes")
    done = deployer.post("/changes/deploy", {"key": "mx01-supplierz.yaml", "version": versions[-1], "note": "all of it"})
    assert done.status_code == 200 and "mx01-supplierz-856" in done.text and "mx01-supplierz-850" in done.text, done.text

    # a template change that breaks the deployed flow's tests: saved as a draft, refused at deploy
    path = flows / "templates" / "supplier-x12-full.yaml"
    path.write_text(path.read_text().replace("invoice_number: BIG.BIG02,", "invoice_number: BIG.BIG03,"))
    changes = deployer.get("/changes")
    assert "templates/supplier-x12-full.yaml" in changes.text
    row = re.search(r'<tr>\s*<td><a href="/flows/mx01-supplierz-810">.*?</tr>', deployer.get("/flows").text, re.S)
    assert row is not None and "draft differs" in row.group(0)  # the template it uses changed
    deployer.refresh_token("/changes")
    refused = deployer.post("/changes/deploy", {"key": "templates/supplier-x12-full.yaml", "version": content_hash(path.read_text()), "note": "x"})
    assert "an invoice with two lines" in refused.text and "Deployed" not in refused.text, refused.text
    assert refused.status_code >= 400
    page = deployer.get("/flows/mx01-supplierz-810")
    assert "deploy refused" in page.text or "refused" in page.text


# One app and one login per role: logging in (Argon2) and the flows list each client
# loads first are the cost of these tests.


def test_a_viewer_reads_templates_and_sees_instances_as_flows(viewer: UiClient, analyst: UiClient, flows: Path) -> None:
    the_list_shows_every_template_with_what_it_gives_and_its_instances(viewer)
    a_template_page_shows_its_parameters_flows_and_instances(viewer)
    instances_look_like_flows_in_the_list_and_on_their_page(viewer)
    editing_needs_an_analyst_and_the_csrf_token(viewer, analyst, flows)


def test_an_analyst_sees_the_impact_and_saves_a_draft(analyst: UiClient, flows: Path) -> None:
    the_editor_checks_every_flow_of_an_instance(analyst)
    ran = analyst.post("/flows/mx01-supplierz-850/tests")  # the 850 flow's own two cases
    assert ran.status_code == 200 and "gives 3 flows" not in ran.text
    assert "an order without lines breaks the 850 guide" in ran.text and "a ship notice" not in ran.text
    # "Try it" on one flow of a several-flow instance runs that flow
    edi = (flows / "tests" / "mx01-supplierz" / "856.edi").read_text()
    tried = analyst.post("/flows/mx01-supplierz-856/playground/run", {"sample": edi, "sample_name": "856.edi"})
    assert tried.status_code == 200 and "ASN-77812" in tried.text and "gives 3 flows" not in tried.text
    po = (flows / "tests" / "mx01-supplierz" / "po-no-lines.json").read_text()
    tried = analyst.post("/flows/mx01-supplierz-850/playground/run", {"sample": po, "sample_name": "po.json"})
    assert tried.status_code == 200 and "mandatory segment missing" in tried.text
    the_impact_lists_every_instance_with_its_changes_and_tests(analyst, flows)
    a_broken_template_is_not_saved(analyst, flows)
    saving_needs_the_impact_of_that_very_text_and_makes_a_draft(analyst, flows)



def the_editor_checks_every_flow_of_an_instance(analyst: UiClient) -> None:
    page = analyst.get("/flows/mx01-supplierz-856/edit")
    assert page.status_code == 200
    assert "gives 3 flows" not in page.text and "No problems" in page.text
