"""Property tests of the shipped templates: every set of values the parameters accept
renders to a flow that loads, and the instance's own tests (rendered from the same
values) pass on it. Values are generated from each template's JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flowyard.onboarding.onboard import try_samples
from flowyard.onboarding.template import Template, check_values, load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = [
    ROOT / "examples" / "onboarding" / "templates" / "plant-mes.yaml",
    ROOT / "examples" / "onboarding" / "templates" / "supplier-x12.yaml",
    ROOT / "examples" / "onboarding" / "templates" / "supplier-x12-full.yaml",
    ROOT / "flows" / "templates" / "plant-production-confirmations.yaml",
]
URLS = st.from_regex(r"https://[a-z][a-z0-9]{0,9}(\.[a-z]{2,8}){1,2}(/[a-z0-9]{1,8}){0,2}", fullmatch=True)
TEXT = st.text(st.characters(whitelist_categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=30)


def strategy(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type", "string")
    if kind == "integer":
        return st.integers(schema.get("minimum", -1000), schema.get("maximum", 1000))
    if kind == "boolean":
        return st.booleans()
    if schema.get("format") in ("uri", "url"):
        return URLS
    if "pattern" in schema:
        return st.from_regex(schema["pattern"])
    return TEXT.filter(lambda t: len(t.strip()) >= schema.get("minLength", 1))


# A 997 carries the time and a control number: the template's test cases cannot compare
# it, so they are run without (test_onboarding.py checks the 997 of an onboarded supplier).
FIXED = {("supplier-x12", "acknowledgment"): st.just("none"), ("supplier-x12-full", "acknowledgment"): st.just("none")}
# The shop-floor name must be a code of flows/tables/plant-codes.yaml for the plant: a
# rule across files that the parameters' schema cannot say; pairs from that table.
JOINT = {
    "plant-production-confirmations": st.sampled_from([("MX01", "MTY"), ("MX02", "QRO"), ("DE02", "STR")]).map(
        lambda pair: {"plant": pair[0], "shopfloor_name": pair[1]}
    ),
}


def values_for(template: Template) -> st.SearchStrategy[dict[str, Any]]:
    required = set(template.schema.get("required", []))
    fields: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, schema in template.properties.items():
        joint = JOINT.get(template.name)
        if joint is not None and name in ("plant", "shopfloor_name"):
            continue
        given_value = FIXED.get((template.name, name))
        if given_value is not None:
            fields[name] = given_value
            continue
        (fields if name in required else optional)[name] = strategy(schema)
    generated = st.fixed_dictionaries(fields, optional=optional)
    joint = JOINT.get(template.name)
    return generated if joint is None else st.tuples(generated, joint).map(lambda t: {**t[0], **t[1]})


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.stem for p in TEMPLATES])
def test_every_accepted_value_renders_a_flow_whose_tests_pass(path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    template = load_template(path)

    @settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(values_for(template))
    def check(values: dict[str, Any]) -> None:
        assume(not check_values(template, values))
        issues, results = try_samples(template, values, path.parent.parent)
        assert issues == [], [str(i) for i in issues]
        failed = [r.report for r in results if not r.passed]
        assert results and not failed, failed

    check()
