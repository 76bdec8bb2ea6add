"""A template giving several flows (`flows:`): a supplier onboarded in one pass. One
small instance file renders, validates, tests, deploys and runs as three flows, each a
deployment of its own (a snapshot of the instance selecting it), and a template change
that breaks one of them is refused by the deploy gate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flowyard.definitions.kinds import check_file
from flowyard.engine import Pipeline
from flowyard.errors import DefinitionError
from flowyard.loader import load_flow, load_flows
from flowyard.message import Message
from flowyard.onboarding.impact import template_change_impact
from flowyard.onboarding.onboard import onboard, try_samples
from flowyard.onboarding.render import render_instance_flows, render_values_flows
from flowyard.onboarding.template import load_instance_file, load_template
from flowyard.operations import deployments
from flowyard.operations.deployments import DeployRefused
from flowyard.operations.snapshots import materialize, take_all
from flowyard.store.api import Store
from flowyard.store.engines import get_engine
from flowyard.testing import run_tests

NAMES = ["mx01-supplierz-856", "mx01-supplierz-810", "mx01-supplierz-850"]


def store() -> Store:
    return Store(get_engine())


def test_one_instance_renders_three_flows_named_after_it(onboarding: Path) -> None:
    instance = load_instance_file(onboarding / "mx01-supplierz.yaml")
    flows = render_instance_flows(instance)
    assert [r.name for r in flows] == NAMES
    assert all(r.ok for r in flows)
    loaded = load_flows(onboarding / "mx01-supplierz.yaml")
    assert [f.name for f in loaded] == NAMES
    assert all(f.labels["partner"] == "SUPPLIERZ" and f.labels["plant"] == "MX01" for f in loaded)
    assert [len(run_tests(f)) for f in loaded] == [1, 1, 2]
    assert all(r.passed for f in loaded for r in run_tests(f))
    assert check_file(onboarding / "mx01-supplierz.yaml") == []
    # the file alone stands for all three: loading it as one flow says so
    with pytest.raises(DefinitionError, match="gives 3 flows"):
        load_flow(onboarding / "mx01-supplierz.yaml")


def test_a_rendered_problem_points_at_the_flow_of_the_template_that_made_it(onboarding: Path) -> None:
    template_path = onboarding / "templates" / "supplier-x12-full.yaml"
    text = template_path.read_text().replace("x12.generate: {partner:", "x12.generate: {colour: red, partner:")
    template_path.write_text(text)
    issues = check_file(onboarding / "mx01-supplierz.yaml")
    assert issues, "an unknown option of the 850 flow's step is an error"
    line = next(n for n, text_line in enumerate(text.splitlines(), 1) if "colour: red" in text_line)
    assert any(i.position.file == str(template_path) and i.position.line == line and "colour" in i.message for i in issues), issues
    assert any("mx01-supplierz-850" in i.message for i in issues)


def test_two_flows_with_one_name_and_a_name_not_saying_the_instance_are_errors(onboarding: Path) -> None:
    path = onboarding / "templates" / "supplier-x12-full.yaml"
    text = path.read_text().replace('name: "{{ instance_name }}-810"', 'name: "{{ instance_name }}-856"')
    template = load_template(path, text)
    flows = render_values_flows(template, template.example_values() or {}, onboarding / "x.yaml", "mx09-acme")
    assert any("named 'mx09-acme-856'" in i.message for i in flows[1].issues)
    text = path.read_text().replace('name: "{{ instance_name }}-850"', 'name: "po-{{ partner }}"')
    flows = render_values_flows(load_template(path, text), {"partner": "acme", "partner_name": "Acme", "isa_id": "ACME", "plant": "MX09"},
                                onboarding / "x.yaml", "mx09-acme")
    assert any("does not start with the instance's name 'mx09-acme'" in i.message for i in flows[2].issues)


def test_onboarding_writes_one_instance_and_the_partner_profile_the_flows_share(onboarding: Path) -> None:
    template = load_template(onboarding / "templates" / "supplier-x12-full.yaml")
    values = {"partner": "acme", "partner_name": "Acme Fasteners", "isa_id": "ACMEFAST", "plant": "DE02", "acknowledgment": "997"}
    issues, results = try_samples(template, values, onboarding)
    assert issues == [] and len(results) == 4
    # with a 997 the ship notice and the invoice each give two outputs (the document and
    # the 997), so the samples' single expected output no longer matches; the 850's pass
    failed = [r.case.name for r in results if not r.passed]
    assert failed == ["a ship notice with two cartons", "an invoice with two lines"]
    done = onboard(template, values, onboarding)
    assert done.instance_path.name == "de02-acme.yaml"
    assert [r.name for r in done.flows] == ["de02-acme-856", "de02-acme-810", "de02-acme-850"]
    assert (onboarding / "partners" / "acme.yaml").is_file()
    assert "ACMEFAST" in (onboarding / "partners" / "acme.yaml").read_text()
    assert len(done.instance_path.read_text().splitlines()) < 25
    flow_856 = load_flows(done.instance_path)[0]
    edi = (onboarding / "tests" / "de02-acme" / "856.edi").read_bytes()
    result = Pipeline(flow_856).run(Message(payload=edi, content_type="application/edi-x12"))
    assert not result.failures
    kinds = sorted(m.headers.get("x12.ack", "shipment") for m in result.outputs)
    assert kinds == ["997", "shipment"]
    ack = next(m for m in result.outputs if m.headers.get("x12.ack"))
    assert bytes(ack.payload).startswith(b"ISA*") and b"ST*997*" in bytes(ack.payload) and b"AK9*A" in bytes(ack.payload)


def test_deploy_makes_one_deployment_per_flow_and_each_runs_alone(onboarding: Path) -> None:
    s = store()
    done = deployments.deploy_paths(s, [onboarding / "mx01-supplierz.yaml"], who="dee")
    assert sorted(d.flow for d in done) == sorted(NAMES)
    assert len({d.version for d in done}) == 3
    for name in NAMES:
        state = s.flow_state(name)
        assert state is not None and state.enabled and state.labels["partner"] == "SUPPLIERZ"
        snapshot = s.snapshot(name, state.version)
        assert snapshot is not None and snapshot.text.endswith(f"flow: {name}\n")
        assert "templates/supplier-x12-full.yaml" in snapshot.files and "partners/supplierz.yaml" in snapshot.files
        # what the runtime does: the snapshot materialized on its own loads that flow
        flow_file = materialize(snapshot, onboarding.parent / "deployed" / name)
        assert load_flow(flow_file, snapshot.text).name == name
    # the instance on disk is unchanged; a second deploy of the same files records the same versions
    assert "flow:" not in (onboarding / "mx01-supplierz.yaml").read_text()
    assert [t.version for t in take_all(onboarding / "mx01-supplierz.yaml")] == [s.flow_state(n).version for n in NAMES]  # type: ignore[union-attr]
    one = deployments.deploy(s, onboarding / "mx01-supplierz.yaml", who="dee", flow="mx01-supplierz-810")
    assert one.flow == "mx01-supplierz-810"


def test_a_template_change_breaking_an_instance_is_refused_by_the_gate(onboarding: Path) -> None:
    s = store()
    deployments.deploy_paths(s, [onboarding / "mx01-supplierz.yaml"], who="dee")
    before = {n: s.flow_state(n).version for n in NAMES}  # type: ignore[union-attr]
    template_path = onboarding / "templates" / "supplier-x12-full.yaml"
    old_text = template_path.read_text()
    new_text = old_text.replace("shipment_id: BSN.BSN02,", "shipment_id: BSN.BSN03,")
    impacts = template_change_impact(template_path, new_text, [onboarding])
    failing = [i.flow for i in impacts if not i.ok]
    assert failing == ["mx01-supplierz-856"]
    template_path.write_text(new_text)
    with pytest.raises(DeployRefused) as refused:
        deployments.deploy_paths(s, [template_path], who="dee")
    assert "mx01-supplierz-856" in str(refused.value) and "a ship notice with two cartons" in str(refused.value)
    assert {n: s.flow_state(n).version for n in NAMES} == before  # type: ignore[union-attr]
    # a change that keeps every test passing deploys to every flow of the instance
    template_path.write_text(old_text.replace("# the 997/999 x12.parse gives", "# the 997 or 999 x12.parse gives"))
    done = deployments.deploy_paths(s, [template_path], who="dee")
    assert {d.flow for d in done} >= set(NAMES)


def test_first_start_seeds_every_flows_samples(tmp_path: Path) -> None:
    from flowyard.runtime.cli import seed_samples

    from .conftest import ONBOARDING, SCRATCH

    flows = tmp_path / "plant" / "flows"
    shutil.copytree(ONBOARDING, flows, ignore=SCRATCH)
    copied = {p.relative_to(tmp_path).as_posix() for p in seed_samples(flows)}
    assert "data/inbox/supplierz/856/856.edi" in copied and "data/inbox/supplierz/810/810.edi" in copied
    assert "data/outbox/erp/po-supplierz/po-no-lines.json" in copied


def test_the_impact_of_a_template_change_covers_every_flow_of_an_instance(onboarding: Path) -> None:
    template_path = onboarding / "templates" / "supplier-x12-full.yaml"
    new_text = template_path.read_text().replace("BEG01: '00'", "BEG01: '05'")  # the 850, the last flow
    impacts = [i for i in template_change_impact(template_path, new_text, [onboarding]) if i.name == "mx01-supplierz"]
    assert [i.flow for i in impacts] == NAMES
    by_flow = {i.flow: i for i in impacts}
    assert not by_flow["mx01-supplierz-856"].changed and not by_flow["mx01-supplierz-810"].changed
    changed = by_flow["mx01-supplierz-850"]
    assert changed.changed and any("BEG01" in str(c) for c in changed.changes), changed.changes
    assert len(changed.tests) == 2 and changed.label == "mx01-supplierz: flow mx01-supplierz-850"


def test_flowyard_run_runs_one_flow_of_an_instance_by_name(onboarding: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from flowyard.cli import main

    instance, sample = onboarding / "mx01-supplierz.yaml", onboarding / "tests" / "mx01-supplierz" / "856.edi"
    assert main(["run", str(instance), "--input", str(sample), "--dry-run"]) == 2
    assert "gives 3 flows (mx01-supplierz-856, mx01-supplierz-810, mx01-supplierz-850); name one with --flow NAME" in capsys.readouterr().err
    assert main(["run", str(instance), "--input", str(sample), "--dry-run", "--flow", "mx01-supplierz-999"]) == 2
    assert main(["run", str(instance), "--input", str(sample), "--dry-run", "--flow", "mx01-supplierz-856", "--output-dir", str(tmp_path / "out")]) == 0
    assert "ASN-77812" in (tmp_path / "out" / "1").read_text()
