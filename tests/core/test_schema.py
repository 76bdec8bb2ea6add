"""`flowyard schema`: one JSON Schema for every kind of definition file, told apart by
`kind:`, so an editor (VS Code's YAML extension, through the `# yaml-language-server:
$schema=` modeline) checks a flow, an instance, a template, a partner profile, a guide or
a code table with the same file and reports only the errors of the file's own kind."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from flowyard import definitions
from flowyard.definitions import grammar
from flowyard.schema_gen import definition_schema
from flowyard.yamlio import dump_text, load_file, to_plain

ROOT = Path(__file__).resolve().parents[2]
FLOWYARD = str(Path(sys.executable).parent / "flowyard")
SHIPPED_DIRS = (ROOT / "flows", ROOT / "examples", ROOT / "platform" / "flowyard" / "x12" / "guides")
SHIPPED = sorted(p for p in definitions.definition_files(SHIPPED_DIRS) if p.suffix in grammar.YAML_SUFFIXES)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    emitted = definition_schema()
    Draft202012Validator.check_schema(emitted)
    return emitted


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema)


@pytest.fixture
def errors(validator: Draft202012Validator) -> Callable[[Any], list[ValidationError]]:
    return lambda document: list(validator.iter_errors(document))


def _document(path: Path) -> Any:
    return to_plain(load_file(path))


def test_the_shipped_files_cover_every_kind() -> None:
    """The parametrized test below is only worth something if it sees every kind."""
    kinds = {_document(p).get("kind") for p in SHIPPED}
    assert kinds == {"Flow", "FlowInstance", "Template", "Partner", "Guide", None}, kinds


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_every_shipped_definition_file_validates(path: Path, errors: Callable[[Any], list[ValidationError]]) -> None:
    found = errors(_document(path))
    assert not found, [f"{e.json_path}: {e.message}" for e in found]


def test_the_schema_knows_every_kind_flowyard_validate_checks(schema: dict[str, Any]) -> None:
    registered = set(definitions.kind_names()) - {"Table"}
    assert set(schema["properties"]["kind"]["enum"]) == registered == set(grammar.KINDS)


# A shipped file of each kind, a change that breaks it, and the one error the schema
# gives: its message and where (JSON path). `flowyard validate` must refuse it too.
def _set(*path: Any, value: Any) -> Callable[[Any], None]:
    def change(document: Any) -> None:
        for key in path[:-1]:
            document = document[key]
        document[path[-1]] = value

    return change


def _drop(key: str) -> Callable[[Any], None]:
    return lambda document: document.pop(key)


BROKEN = {
    "Flow": ("flows/mx01-erp-production-orders.yaml", _set("stesp", value=[]), "'stesp' was unexpected", "$"),
    "FlowInstance": ("flows/mx02-production-confirmations.yaml", _drop("template"), "'template' is a required property", "$"),
    "Template": ("flows/templates/plant-production-confirmations.yaml", _set("paramters", value={}), "'paramters' was unexpected", "$"),
    "Partner": ("flows/partners/supplierx.yaml", _set("interchange", "usage", value="Q"), "'Q' is not one of ['T', 'P']", "$.interchange.usage"),
    "Guide": ("flows/guides/856-4010-supplierx.yaml", _set("elements", value={"396": "AN 2-30 Shipment Identification"}), "does not match", "$.elements['396']"),
    "Table": ("flows/tables/plant-codes.yaml", _set("codes", value=["MTY", "QRO"]), "is not of type 'object'", "$.codes"),
}


@pytest.fixture(params=sorted(BROKEN))
def broken(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Any, str, str, Path]:
    """(kind, the broken document, the message, the JSON path, the file written where
    `flowyard validate` looks for its kind)."""
    kind = request.param
    shipped, change, message, where = BROKEN[kind]
    document = _document(ROOT / shipped)
    before = copy.deepcopy(document)
    change(document)
    assert document != before
    path = tmp_path / Path(shipped).relative_to("flows")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_text(document), encoding="utf-8")
    return kind, document, message, where, path


def test_a_broken_file_of_each_kind_gets_one_error_naming_the_problem(
    broken: tuple[str, Any, str, str, Path], errors: Callable[[Any], list[ValidationError]]
) -> None:
    kind, document, message, where, _ = broken
    found = errors(document)
    assert [e.json_path for e in found] == [where], (kind, [f"{e.json_path}: {e.message}" for e in found])
    assert message in found[0].message


def test_flowyard_validate_refuses_what_the_schema_refuses(broken: tuple[str, Any, str, str, Path]) -> None:
    kind, _, _, _, path = broken
    assert definitions.check_file(path), f"the schema refuses this {kind} but flowyard validate takes it"


def test_an_unknown_kind_is_named(errors: Callable[[Any], list[ValidationError]]) -> None:
    found = errors({"apiVersion": "flowyard/v1", "kind": "Flwo", "metadata": {"name": "x"}})
    assert len(found) == 1 and found[0].json_path == "$.kind" and "'Flwo' is not one of" in found[0].message


def test_a_table_with_codes_takes_no_other_keys(errors: Callable[[Any], list[ValidationError]]) -> None:
    """Beside `codes`, a misspelt `default` would be ignored: the editor points at it."""
    assert not errors({"description": "units", "default": "EA", "codes": {"PCS": "EA"}})
    assert not errors({"PCS": "EA", "KGS": {"value": "KG", "description": "kilogram"}})
    found = errors({"codes": {"PCS": "EA"}, "defualt": "EA"})
    assert len(found) == 1 and "'defualt' was unexpected" in found[0].message


def test_the_flow_schema_alone_is_what_the_modelines_got_before() -> None:
    """`--kind Flow` prints a flow's schema alone; the full schema keeps the file's `$id`."""
    alone = json.loads(subprocess.run([FLOWYARD, "schema", "--kind", "Flow"], capture_output=True, text=True, check=True).stdout)
    full = json.loads((ROOT / "schema" / "flow.schema.json").read_text())
    Draft202012Validator.check_schema(alone)
    assert alone["title"] == "Flowyard flow" and alone["properties"]["kind"] == {"const": "Flow"}
    assert full["$defs"]["Flow"] == {k: v for k, v in alone.items() if k not in ("$schema", "$defs")}
    assert full["$id"].endswith("/schema/flow.schema.json")
    instance = _document(ROOT / "flows" / "mx02-production-confirmations.yaml")
    assert list(Draft202012Validator(alone).iter_errors(instance)), "an instance is not a flow"
