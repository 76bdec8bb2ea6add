"""The form view: one form per step and connector, generated from its option model.

The fields come from the pydantic model's JSON Schema (type, default, enum,
description, secret), so a new step or connector gets its form with no UI code. A
submitted form is applied to the round-trip YAML document key by key: untouched keys
keep their comments, quoting and order, so the YAML view and the form edit the same
file and the diff shows only what changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import LiteralScalarString

from flowyard import registry
from flowyard.definitions.grammar import SOURCE_COMMON_KEYS, STEP_COMMON_KEYS, TARGET_COMMON_KEYS, entry, entry_options
from flowyard.yamlio import YamlSyntaxError, load_text, to_plain

LONG_TEXT = ("expression", "template", "query", "body", "condition", "when")


class FormError(Exception):
    """A form value that cannot be written into the flow, said plainly."""


@dataclass
class FieldView:
    name: str
    label: str
    widget: str  # text | textarea | select | number | yaml | list | map
    value: str
    default: str = ""
    required: bool = False
    help: str = ""
    choices: list[str] = field(default_factory=list)
    secret: bool = False
    types: list[str] = field(default_factory=list)
    rows: list[tuple[str, str]] = field(default_factory=list)  # list: (item, ""); map: (key, value)
    item_choices: list[str] = field(default_factory=list)  # the values an item may take (an enum)
    item_types: list[str] = field(default_factory=list)
    language: str = ""  # jmespath | jinja: the expression language of a text field (highlighted in the browser)


Submitted = Mapping[str, str | list[str]]
"""A submitted form: each field's text, or its texts when the form sends it more than once
(the rows of a list or map field)."""


def _first(submitted: Submitted, key: str) -> str:
    value = submitted.get(key, "")
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return str(value)


def _all(submitted: Submitted, key: str) -> list[str]:
    value = submitted.get(key)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@dataclass
class PartView:
    part: str  # "source", "steps.3", "targets.0"
    role: str
    kind: str
    title: str
    summary: str
    fields: list[FieldView]
    common: list[FieldView] = field(default_factory=list)
    error: str = ""


def _types(prop: dict[str, Any]) -> list[str]:
    if "anyOf" in prop:
        return [t for sub in prop["anyOf"] for t in _types(sub)]
    kind = prop.get("type")
    if isinstance(kind, list):
        return [str(k) for k in kind]
    if kind:
        return [str(kind)]
    if "enum" in prop:
        return ["string"]
    return []


def _enum(prop: dict[str, Any]) -> list[str]:
    if "enum" in prop:
        return [str(v) for v in prop["enum"]]
    for sub in prop.get("anyOf", []):
        if "enum" in sub:
            return [str(v) for v in sub["enum"]]
    return []


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


_SCALARS = {"string", "integer", "number", "boolean"}


def _row_shape(prop: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """("list", item schema) for a list of plain values, ("map", value schema) for a
    mapping of names to plain values; None for anything deeper (edited as YAML)."""
    for sub in [prop, *prop.get("anyOf", [])]:
        if sub.get("type") == "array" and isinstance(sub.get("items"), dict):
            item = sub["items"]
            if set(_types(item)) and set(_types(item)) <= _SCALARS and "$ref" not in item:
                return "list", item
        if sub.get("type") == "object" and isinstance(sub.get("additionalProperties"), dict) and not sub.get("properties"):
            item = sub["additionalProperties"]
            if set(_types(item)) and set(_types(item)) <= _SCALARS and "$ref" not in item:
                return "map", item
    return None


def _rows(kind: str, value: Any) -> list[tuple[str, str]] | None:
    """The rows a list or map value is shown as; None when it cannot be (then the field is
    edited as YAML, so nothing it holds is lost)."""
    if value is None:
        return []
    if kind == "list" and isinstance(value, list) and all(isinstance(v, str | int | float | bool) for v in value):
        return [(_text(v), "") for v in value]
    if kind == "map" and isinstance(value, dict) and all(isinstance(v, str | int | float | bool) for v in value.values()):
        return [(str(k), _text(v)) for k, v in value.items()]
    return None


def fields_for(model: type[BaseModel], values: dict[str, Any]) -> list[FieldView]:
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    views = []
    for name, prop in schema.get("properties", {}).items():
        types = [t for t in _types(prop) if t != "null"]
        choices = _enum(prop)
        value = values.get(name)
        default = _text(prop.get("default")) if "default" in prop else ""
        rows: list[tuple[str, str]] = []
        item: dict[str, Any] = {}
        if choices or types == ["boolean"]:
            widget = "select"
            choices = choices or ["true", "false"]
        elif types and set(types) <= {"array", "object"}:
            shape = _row_shape(prop)
            shown = _rows(shape[0], to_plain(value)) if shape else None
            if shape is not None and shown is not None:
                widget, item, rows = shape[0], shape[1], shown
            else:
                widget = "yaml"
        elif name in LONG_TEXT or (isinstance(value, str) and "\n" in value):
            widget = "textarea"
        else:
            widget = "text"
        views.append(
            FieldView(
                name=name,
                label=name,
                widget=widget,
                value=_text(value),
                default=default,
                required=name in required,
                help=str(prop.get("description") or ""),
                choices=choices,
                secret=bool(prop.get("secret")),
                types=types,
                rows=rows,
                item_choices=_enum(item),
                item_types=[t for t in _types(item) if t != "null"],
                language=_language(name, str(prop.get("description") or "")) if widget == "textarea" else "",
            )
        )
    return views


def _language(name: str, description: str) -> str:
    """The expression language an option is written in, from its name and description."""
    if "jinja" in description.lower() or name == "template":
        return "jinja"
    if "jmespath" in description.lower() or name in ("expression", "condition", "when"):
        return "jmespath"
    return ""


def _common(item: dict[str, Any], keys: tuple[str, ...], role: str) -> list[FieldView]:
    helps = {
        "name": "shown in traces and errors",
        "when": "JMESPath condition; skipped when it is false",
        "retry": "attempts, backoff, max_backoff (YAML or JSON)",
    }
    views = []
    for key in keys:
        widget = "yaml" if key == "retry" else "text"
        label = f"{role} name" if key == "name" else key  # not to be taken for a connector's `name` option
        views.append(FieldView(key, label, widget, _text(item.get(key)), help=helps.get(key, "")))
    return views


def _options_of(item: Any, kind: str, main: str | None) -> dict[str, Any]:
    return entry_options(item.get(kind), main) or {}


def _entry_kind(item: Any, common: tuple[str, ...]) -> str | None:
    found = entry(item, common)
    return found.kind if found is not None else None


def parts(document: Any) -> list[PartView]:
    """A form for the source, each step and each target of the document."""
    if not isinstance(document, dict):
        return []
    views: list[PartView] = []
    connectors = registry.available_connectors()
    steps = registry.available_steps()
    source = document.get("source")
    kind = _entry_kind(source, SOURCE_COMMON_KEYS)
    if kind is not None:
        conn = connectors.get(kind)
        model = conn.SourceOptions if conn is not None else None
        if model is None:
            views.append(
                PartView(
                    "source", "source", kind, "source", "", [], error=f"no connector {kind!r} that can be a source"
                )
            )
        else:
            views.append(
                PartView(
                    "source",
                    "source",
                    kind,
                    "source",
                    conn.summary() if conn else "",
                    fields_for(model, _options_of(source, kind, None)),
                )
            )
    for index, item in enumerate(document.get("steps") or []):
        kind = _entry_kind(item, STEP_COMMON_KEYS)
        part = f"steps.{index}"
        if kind is None or kind not in steps:
            views.append(
                PartView(
                    part,
                    "step",
                    kind or "?",
                    f"step {index + 1}",
                    "",
                    [],
                    error="unknown or missing step name: fix it in the YAML view",
                )
            )
            continue
        cls = steps[kind]
        values = _options_of(item, kind, cls.main_option)
        views.append(
            PartView(
                part,
                "step",
                kind,
                f"step {index + 1}",
                cls.summary(),
                fields_for(cls.Options, values),
                _common(to_plain(item), STEP_COMMON_KEYS, "step"),
            )
        )
    for index, item in enumerate(document.get("targets") or []):
        kind = _entry_kind(item, TARGET_COMMON_KEYS)
        part = f"targets.{index}"
        conn = connectors.get(kind or "")
        if kind is None or conn is None or conn.TargetOptions is None:
            views.append(
                PartView(
                    part,
                    "target",
                    kind or "?",
                    f"target {index + 1}",
                    "",
                    [],
                    error="unknown or missing connector: fix it in the YAML view",
                )
            )
            continue
        views.append(
            PartView(
                part,
                "target",
                kind,
                f"target {index + 1}",
                conn.summary(),
                fields_for(conn.TargetOptions, _options_of(item, kind, None)),
                _common(to_plain(item), TARGET_COMMON_KEYS, "target"),
            )
        )
    return views


def _convert(view: FieldView, text: str) -> Any:
    """The typed value of a submitted field (empty means: remove, use the default)."""
    text = text.replace("\r\n", "\n")
    if view.widget == "yaml" or (view.types and "string" not in view.types):
        try:
            value = to_plain(load_text(text, view.name))
        except YamlSyntaxError as exc:
            raise FormError(f"{view.name}: {exc.issue.message}") from exc
        if "integer" in view.types and isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        return _compact(value)
    if view.choices and view.choices == ["true", "false"]:
        return text == "true"
    if "\n" in text:
        return LiteralScalarString(text if text.endswith("\n") else text + "\n")
    return text


def _compact(value: Any) -> Any:
    """A small mapping of plain values is written on one line, as analysts write
    `retry: {attempts: 3}`; anything larger as a block."""
    if isinstance(value, dict) and all(
        isinstance(v, str | int | float | bool) and "\n" not in str(v) for v in value.values()
    ):
        compact = CommentedMap(value.items())
        compact.fa.set_flow_style()
        return compact
    return value


def _set(node: CommentedMap, key: str, value: Any) -> None:
    """Assign only when the value really changes (keeps the original scalar's style)."""
    if key in node and to_plain(node[key]) == to_plain(value):
        return
    node[key] = value


def apply(document: Any, part: str, submitted: Submitted) -> None:
    """Write one submitted form into the document, in place."""
    if not isinstance(document, CommentedMap):
        raise FormError("the YAML must be valid before the form can change it")
    views = {p.part: p for p in parts(document)}
    view = views.get(part)
    if view is None or view.error:
        raise FormError(view.error if view else f"nothing called {part!r} in this flow")
    if part == "source":
        item = document["source"]
    else:
        section, _, index = part.partition(".")
        seq = document.get(section)
        if not isinstance(seq, CommentedSeq) or not index.isdigit() or int(index) >= len(seq):
            raise FormError(f"{part} is not in the flow any more; reload the form")
        item = seq[int(index)]
    kind = view.kind
    raw = item.get(kind)
    main = registry.step_class(kind).main_option if view.role == "step" else None
    new_values = _option_values(view, submitted)
    if main and not isinstance(raw, CommentedMap) and set(new_values) <= {main} and main in new_values:
        if to_plain(raw) != to_plain(new_values[main]):
            item[kind] = new_values[main]
    else:
        if not isinstance(raw, CommentedMap):
            old = raw
            raw = CommentedMap()
            if main and old is not None:
                raw[main] = old
            if all("\n" not in str(v) for v in new_values.values()):
                raw.fa.set_flow_style()
            item[kind] = raw
        for key in [k for k in raw if str(k) not in new_values]:
            del raw[key]
        for key, value in new_values.items():
            _set(raw, key, value)
    _write_common(item, view, submitted)


def _item_value(view: FieldView, text: str) -> Any:
    """One item of a list or map field: text for a text item, else the YAML scalar."""
    text = text.strip()
    if view.item_choices or view.item_types in ([], ["string"]):
        return text
    try:
        value = to_plain(load_text(text, view.name))
    except YamlSyntaxError as exc:
        raise FormError(f"{view.name}: {text!r}: {exc.issue.message}") from exc
    if isinstance(value, dict | list) or value is None:
        raise FormError(f"{view.name}: {text!r} is not a plain value ({' or '.join(view.item_types)})")
    return value


def _row_values(view: FieldView, submitted: Submitted) -> Any:
    """A list or map field's rows as a list or mapping; None when it has no rows."""
    if view.widget == "list":
        items = [_item_value(view, t) for t in _all(submitted, f"opt.{view.name}.item") if t.strip()]
        if not items:
            return None
        seq = CommentedSeq(items)
        if sum(len(str(i)) + 2 for i in items) <= 60:
            seq.fa.set_flow_style()
        return seq
    keys = _all(submitted, f"opt.{view.name}.key")
    texts = _all(submitted, f"opt.{view.name}.value")
    if len(keys) != len(texts):
        raise FormError(f"{view.name}: every row needs a name and a value; reload the form")
    mapping: dict[str, Any] = {}
    for key, text in zip(keys, texts, strict=True):
        key = key.strip()
        if not key and (not text.strip() or view.item_choices):  # an empty row (a choice always has a value)
            continue
        if not key:
            raise FormError(f"{view.name}: the row with the value {text.strip()!r} has no name")
        if key in mapping:
            raise FormError(f"{view.name}: {key!r} is given twice")
        if not text.strip():
            raise FormError(f"{view.name}: {key!r} has no value")
        mapping[key] = _item_value(view, text)
    return _compact(mapping) if mapping else None


def _option_values(view: PartView, submitted: Submitted) -> dict[str, Any]:
    """The typed options of a submitted form; empty fields are left out (defaults)."""
    values: dict[str, Any] = {}
    for f in view.fields:
        if f.widget in ("list", "map"):
            rows = _row_values(f, submitted)
            if rows is not None:
                values[f.name] = rows
            continue
        text = _first(submitted, f"opt.{f.name}")
        if text.strip() == "" or (f.widget == "select" and text == ""):
            continue
        values[f.name] = _convert(f, text)
    return values


def _write_common(item: CommentedMap, view: PartView, submitted: Submitted) -> None:
    for f in view.common:
        text = _first(submitted, f"common.{f.name}").strip()
        if not text:
            if f.name in item:
                del item[f.name]
            continue
        value = _convert(f, text) if f.widget == "yaml" else text
        _set(item, f.name, value)


def target_kinds() -> list[str]:
    """Connectors that can be a target, for the "add a target" choice."""
    return sorted(name for name, conn in registry.available_connectors().items() if conn.TargetOptions is not None)


def new_target(kind: str) -> PartView:
    """The empty form of a target of this connector, before it is in the YAML."""
    conn = registry.available_connectors().get(kind)
    if conn is None or conn.TargetOptions is None:
        raise FormError(f"{kind!r} is not a connector that can be a target; choose one of: {', '.join(target_kinds())}")
    return PartView(
        "targets.new", "target", kind, "new target", conn.summary(), fields_for(conn.TargetOptions, {}),
        _common({}, TARGET_COMMON_KEYS, "target"),
    )


def add_target(document: Any, kind: str, submitted: Submitted) -> None:
    """Append a target of this connector with the submitted options, at the end of
    `targets:` (the rest of the file is untouched)."""
    if not isinstance(document, CommentedMap):
        raise FormError("the YAML must be valid before a target can be added")
    view = new_target(kind)
    values = _option_values(view, submitted)
    options = CommentedMap(values.items())
    if all("\n" not in str(v) for v in values.values()):
        options.fa.set_flow_style()
    item = CommentedMap([(kind, options)])
    _write_common(item, view, submitted)
    targets = document.get("targets")
    if not isinstance(targets, CommentedSeq):
        if targets:
            raise FormError("`targets:` is not a list; fix it in the YAML view first")
        targets = CommentedSeq()
        document["targets"] = targets
    if not targets:
        targets.fa.set_block_style()  # `targets: []` grows into a block list
    targets.append(item)


def add_step(document: Any, kind: str, after: str = "") -> None:
    """Add an empty step of this kind at the end, or after step number `after`."""
    if not isinstance(document, CommentedMap):
        raise FormError("the YAML must be valid before a step can be added")
    if kind not in registry.available_steps():
        raise FormError(f"unknown step {kind!r}")
    steps = document.get("steps")
    if not isinstance(steps, CommentedSeq):
        if steps:
            raise FormError("`steps:` is not a list; fix it in the YAML view first")
        steps = CommentedSeq()
        document["steps"] = steps
    options = CommentedMap()
    options.fa.set_flow_style()
    item = CommentedMap([(kind, options)])
    if not steps:
        steps.fa.set_block_style()  # `steps: []` grows into a block list
    if after.isdigit() and 0 <= int(after) < len(steps):
        steps.insert(int(after) + 1, item)
    else:
        steps.append(item)


def remove_part(document: Any, part: str) -> None:
    section, _, index = part.partition(".")
    seq = document.get(section) if isinstance(document, CommentedMap) else None
    if (
        section not in ("steps", "targets")
        or not isinstance(seq, CommentedSeq)
        or not index.isdigit()
        or int(index) >= len(seq)
    ):
        raise FormError(f"{part} is not in the flow")
    if section == "targets" and len(seq) == 1:
        raise FormError("a flow needs at least one target")
    del seq[int(index)]
