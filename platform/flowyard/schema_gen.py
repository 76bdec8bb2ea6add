"""The JSON Schema of definition files and the option reference, both from the models.

VS Code's YAML extension reads the schema (`# yaml-language-server: $schema=...`) for
completion, hover help and errors while an analyst types. One schema covers every kind of
definition file, told apart by `kind:` (`if kind is X then X's schema`, so an editor
reports the errors of that kind only): each kind registered in `flowyard.definitions`
gives its files' schema (a flow's from the step and connector option models; a YAML code
table has no `kind:`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel

from . import registry
from .budget import Budget
from .flow import API_VERSION, FlowTest, Metadata, RetryPolicy


class _Defs:
    """Collects model schemas under one `$defs`, refusing two different models with one name."""

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/$defs/{model}", by_alias=True)
        for name, sub in schema.pop("$defs", {}).items():
            self.put(name, sub)
        self.put(model.__name__, schema)
        return {"$ref": f"#/$defs/{model.__name__}"}

    def put(self, name: str, schema: Any) -> None:
        if name in self.defs and self.defs[name] != schema:
            raise ValueError(f"two models are both named {name}; rename one")
        self.defs[name] = schema


def _shorthand(model: type[BaseModel], main: str | None) -> list[dict[str, Any]]:
    if not main:
        return []
    field = model.model_fields.get(main)
    if field is None:
        for f in model.model_fields.values():
            if f.alias == main:
                field = f
    desc = field.description if field is not None else ""
    return [{"type": "string", "description": f"shorthand for `{main}`: {desc}"}]


def flow_schema(ref: Callable[[type[BaseModel]], dict[str, Any]]) -> dict[str, Any]:
    """The JSON Schema of a flow file; `ref` puts a model under `$defs`."""
    step_variants = []
    for name, cls in registry.available_steps().items():
        options = [ref(cls.Options), *_shorthand(cls.Options, cls.main_option)]
        step_variants.append(
            {
                "type": "object",
                "title": name,
                "description": cls.summary(),
                "properties": {
                    name: {"anyOf": options} if len(options) > 1 else options[0],
                    "name": {"type": "string", "description": "shown in traces and errors"},
                    "when": {"type": "string", "description": "JMESPath condition; the step is skipped when falsy"},
                },
                "required": [name],
                "additionalProperties": False,
            }
        )
    sources, targets = [], []
    for name, conn in registry.available_connectors().items():
        if conn.SourceOptions is not None:
            sources.append({"type": "object", "title": name, "description": conn.summary(), "properties": {name: ref(conn.SourceOptions)}, "required": [name], "additionalProperties": False})
        if conn.TargetOptions is not None:
            targets.append(
                {
                    "type": "object",
                    "title": name,
                    "description": conn.summary(),
                    "properties": {
                        name: ref(conn.TargetOptions),
                        "name": {"type": "string"},
                        "when": {"type": "string", "description": "JMESPath over the data before the last render"},
                        "retry": ref(RetryPolicy),
                    },
                    "required": [name],
                    "additionalProperties": False,
                }
            )
    return {
        "title": "Flowyard flow",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "source", "targets"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": "Flow"},
            "metadata": ref(Metadata),
            "source": {"oneOf": sources},
            "steps": {"type": "array", "items": {"oneOf": step_variants}},
            "targets": {"type": "array", "minItems": 1, "items": {"oneOf": targets}},
            "tests": {"type": "array", "items": ref(FlowTest)},
            "keys": {"type": "object", "additionalProperties": {"type": "string"}, "description": "business keys: name -> JMESPath over the parsed data, searchable in the UI"},
            "sla": {"type": "object", "description": "thresholds that turn the flow's dashboard tile red"},
            "budget": ref(Budget),
        },
    }


def _kinds(defs: _Defs) -> dict[str, str]:
    """Each registered kind's schema put in `defs`, by the `kind:` its files carry
    ("Table": the files without one); the value is the schema's name in `$defs`."""
    from .definitions.kinds import kinds as registered

    names: dict[str, str] = {}
    for cls in registered():
        root = cls.schema(defs.ref)
        ref = root.get("$ref") if len(root) == 1 else None
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            names[cls.kind] = ref.removeprefix("#/$defs/")
        else:
            defs.put(cls.kind, root)
            names[cls.kind] = cls.kind
    return names


def kinds() -> list[str]:
    """The kinds `definition_schema` knows."""
    return list(_kinds(_Defs()))


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            yield ref.removeprefix("#/$defs/")
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _reachable(root: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The `$defs` a schema uses, transitively, in their original order."""
    seen: set[str] = set()
    todo = list(_refs(root))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_refs(defs[name]))
    return {name: schema for name, schema in defs.items() if name in seen}


def definition_schema(kind: str | None = None) -> dict[str, Any]:
    """The JSON Schema of every definition file, told apart by `kind:`; or, given a kind,
    of that kind's files alone."""
    defs = _Defs()
    names = _kinds(defs)
    head = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    if kind is not None:
        root = defs.defs[names[kind]]
        return {**head, **root, "$defs": _reachable(root, defs.defs)}
    branches = [
        {"if": {"not": {"required": ["kind"]}} if name == "Table" else {"required": ["kind"], "properties": {"kind": {"const": name}}}, "then": {"$ref": f"#/$defs/{ref}"}}
        for name, ref in names.items()
    ]
    return {
        **head,
        "$id": "https://flowyard.example/schema/flow.schema.json",
        "title": "Flowyard definition",
        "description": "a flow, flow instance, template, partner profile, X12 guide or code table, told apart by `kind:` (a code table has none)",
        "type": "object",
        "properties": {"kind": {"enum": [k for k in names if k != "Table"], "description": "what the file defines; a code table has no kind"}},
        "allOf": branches,
        "$defs": defs.defs,
    }


def _type_text(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    if "enum" in prop:
        return " or ".join(_value_text(v) for v in prop["enum"])
    if "const" in prop:
        return _value_text(prop["const"])
    if "anyOf" in prop:
        return " or ".join(_type_text(p) for p in prop["anyOf"] if p.get("type") != "null")
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type_text(prop.get('items', {}))}"
    return " or ".join(map(str, kind)) if isinstance(kind, list) else str(kind)


def _value_text(value: Any) -> str:
    """A value as a table cell: text with a line break or tab is shown escaped, as it
    would be written in YAML (`"\\r\\n"`), so it cannot break the table."""
    if isinstance(value, str) and not value.isprintable():
        value = json.dumps(value)
    return f"`{value}`".replace("|", "\\|")


def _options_table(model: type[BaseModel]) -> list[str]:
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    rows = ["| option | type | default | description |", "| --- | --- | --- | --- |"]
    for name, prop in schema.get("properties", {}).items():
        default = "required" if name in required else _value_text(prop["default"]) if "default" in prop else ""
        desc = (prop.get("description") or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {_type_text(prop)} | {default} | {desc} |")
    return rows


def reference_markdown() -> str:
    """docs/reference.md: every step's and connector's options, from their models."""
    from . import expressions, sandbox

    out = ["# Flowyard option reference", "", "Generated by `flowyard docs` from the option models; do not edit by hand.", ""]
    out += ["## Steps", ""]
    for name, cls in registry.available_steps().items():
        out += [f"### `{name}`", "", cls.summary(), "", f"Takes {cls.takes}, gives {'several messages' if cls.fans_out else cls.gives}."]
        if cls.main_option:
            out.append(f"Shorthand: `- {name}: VALUE` sets `{cls.main_option}`.")
        out += ["", *_options_table(cls.Options), ""]
    out += ["Every step also takes `name:` (shown in traces and errors) and `when:` (a JMESPath condition).", ""]
    out += ["## Connectors", ""]
    for name, conn in registry.available_connectors().items():
        out += [f"### `{name}`", "", conn.summary(), ""]
        if conn.SourceOptions is not None:
            out += ["As a source:", "", *_options_table(conn.SourceOptions), ""]
        if conn.TargetOptions is not None:
            out += ["As a target:", "", *_options_table(conn.TargetOptions), ""]
    out += ["Every target also takes `name:`, `when:` and `retry:`:", "", *_options_table(RetryPolicy), ""]
    out += ["## JMESPath functions", "", (expressions.__doc__ or "").split("\n", 2)[2].strip(), ""]
    out += ["## Jinja filters", "", (sandbox.__doc__ or "").split("Filters (examples in docs/reference.md):", 1)[1].strip().replace("\\\\|", "\\|"), ""]
    return "\n".join(out)
