"""JSON Schemas for data validation: shipped canonical models and a flow's own files."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from .step import FlowContext, OptionError
from .yamlio import YamlSyntaxError, load_file, to_plain

CANONICAL_PREFIX = "canonical:"


def canonical_names() -> list[str]:
    folder = resources.files("flowyard") / "canonical"
    return sorted(p.name.removesuffix(".schema.json") for p in folder.iterdir() if p.name.endswith(".schema.json"))


@cache
def canonical_schema(name: str) -> dict[str, Any]:
    path = resources.files("flowyard") / "canonical" / f"{name}.schema.json"
    if not path.is_file():
        from .errors import did_you_mean

        raise OptionError(
            f"no canonical model {name!r}" + did_you_mean(name, canonical_names())
            + f" (models: {', '.join(canonical_names())})",
            "schema",
        )
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def load_schema(spec: str | dict[str, Any], context: FlowContext) -> dict[str, Any]:
    """`canonical:NAME`, a .json/.yaml schema file beside the flow, or an inline schema."""
    if isinstance(spec, dict):
        return spec
    if spec.startswith(CANONICAL_PREFIX):
        return canonical_schema(spec[len(CANONICAL_PREFIX) :])
    path: Path = context.resolve_path(spec, "schema")  # refused outside the flow's folder
    if not path.is_file():
        raise OptionError(f"schema file {spec!r} not found beside the flow", "schema")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            loaded = to_plain(load_file(path))
        else:
            loaded = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise OptionError(f"schema file {spec!r} is not UTF-8 text (byte {exc.start})", "schema") from exc
    except json.JSONDecodeError as exc:  # its message names a line and column, never the text
        raise OptionError(f"schema file {spec!r} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", "schema") from exc
    except YamlSyntaxError as exc:
        raise OptionError(f"schema file {spec!r} is not valid YAML: line {exc.issue.position.line}: {exc.issue.message}", "schema") from exc
    if not isinstance(loaded, dict):
        raise OptionError(f"schema file {spec!r} must hold a JSON Schema object", "schema")
    return loaded


def make_validator(schema: dict[str, Any]) -> Draft202012Validator:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise OptionError(f"the schema is not a valid JSON Schema: {exc.message}", "schema") from exc
    return Draft202012Validator(schema, format_checker=FormatChecker())


def json_path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out
