"""The mapper: an object-building `jmespath` step shown field by field.

Targets come from the JSON Schema a later `validate` step names (or the flow's first
expected test output, or fields typed in); each target shows its expression and the
value it gives on the step's real input: the sample run through the steps before it
(the playground's compiled flow, a scratch store). The source side is that input as a
tree. What is posted back is the list of rows in the order shown; `rebuild` turns them
into a `flowyard.mapping.Mapping` (the text of every field the analyst did not touch is
kept), `flowyard.mapping.render` into the expression saved.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowyard import mapping
from flowyard.engine import Pipeline
from flowyard.errors import FlowyardError
from flowyard.expressions import compile_expression
from flowyard.flow import Flow
from flowyard.runner import input_message
from flowyard.secrets import redactor
from flowyard.step import OptionError
from flowyard.store.scratch import scratch_run
from flowyard.yamlio import YamlSyntaxError, load_text

from . import playground

SHOW = 120  # characters of a value shown beside a field
SOURCE_NODES = 600  # the source tree shows at most this many nodes
FUNCTIONS = {  # the choices offered for a field, and how each wraps its expression
    "to_number": "to_number({e})",
    "to_int": "to_int({e})",
    "to_string": "to_string({e})",
    "upper": "upper({e})",
    "lower": "lower({e})",
    "trim": "trim({e})",
    "to_date": "to_date({e}, {a})",
    "default": "default({e}, {a})",
    "lookup": "lookup({a}, {e})",
}
FUNCTION_LABELS = {
    "to_number": "as a number",
    "to_int": "as a whole number",
    "to_string": "as text",
    "upper": "upper case",
    "lower": "lower case",
    "trim": "without surrounding blanks",
    "to_date": "a date read with the format…",
    "default": "with a default when empty…",
    "lookup": "looked up in the code table…",
}


class MapperError(Exception):
    """Said to the analyst as it is."""


# -- paths ------------------------------------------------------------------------------


def pointer(keys: list[str]) -> str:
    return "".join("/" + k.replace("~", "~0").replace("/", "~1") for k in keys)


def keys_of(path: str) -> list[str]:
    if not path:
        return []
    return [k.replace("~1", "/").replace("~0", "~") for k in path.split("/")[1:]]


def raw_string(text: str) -> str:
    """A JMESPath raw string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def wrap(expression: str, function: str, argument: str = "") -> str:
    """The expression with a conversion, a default or a lookup around it."""
    if function not in FUNCTIONS:
        raise MapperError(f"no choice {function!r}; choose one of {', '.join(FUNCTIONS)}")
    if function in ("to_date", "default", "lookup") and not argument:
        argument = "%Y%m%d" if function == "to_date" else ""
        if not argument:
            raise MapperError(f"{FUNCTION_LABELS[function].rstrip('…')}: say which")
    inner = expression.strip() or "@"
    return FUNCTIONS[function].format(e=inner, a=raw_string(argument))


def context_of(source: str) -> str:
    """The source-tree path of the elements a list's fields read (`HL_loop[?...]` and
    `lines[*]` read the elements of `HL_loop[]`, `lines[]`)."""
    text = re.sub(r"\[\?.*\]$", "[]", source.strip())
    return re.sub(r"\[\*\]$", "[]", text)


# -- the step's input -------------------------------------------------------------------


_inputs: OrderedDict[tuple[str, str, str, int], tuple[Any, str]] = OrderedDict()
_inputs_lock = threading.Lock()


def step_input(path: Path, text: str, sample: bytes, sample_name: str, index: int) -> tuple[Any, str]:
    """The data step `index` gets when the sample runs through the steps before it, and
    a note when it gets none (kept for the next previews: typing in the mapper changes
    neither the steps before nor the sample)."""
    key = (str(path), hashlib.sha256(text.encode()).hexdigest(), hashlib.sha256(sample).hexdigest(), index)
    with _inputs_lock:
        found = _inputs.get(key)
        if found is not None:
            _inputs.move_to_end(key)
            return found
    result = _step_input(path, text, sample, sample_name, index)
    with _inputs_lock:
        _inputs[key] = result
        while len(_inputs) > 32:
            _inputs.popitem(last=False)
    return result


def _step_input(path: Path, text: str, sample: bytes, sample_name: str, index: int) -> tuple[Any, str]:
    if not sample:
        return None, "No sample yet: paste one (or pick a test case) to see values."
    try:
        flow = playground.compiled(path, text)
        message = input_message(flow, sample, playground.sample_name(flow, sample_name))
    except FlowyardError as exc:
        return None, redactor.redact(str(exc))
    before = dataclasses.replace(flow, steps=flow.steps[:index])
    with scratch_run():
        result = Pipeline(before).run(message)
    if result.failures:
        return None, "The sample does not reach this step: " + redactor.redact(result.failures[0].error.describe())
    if not result.outputs:
        return None, "The sample does not reach this step (a step before dropped it)."
    payload = result.outputs[0].payload
    if isinstance(payload, bytes | bytearray):
        try:
            payload = json.loads(payload)
        except ValueError:
            return None, "This step gets bytes that are not JSON; a mapping reads data."
    return payload, ""


# -- the target schema ------------------------------------------------------------------


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return {**node, **{k: v for k, v in schema.items() if k != "$ref"}} if isinstance(node, dict) else schema
    return schema


def _types(schema: dict[str, Any]) -> list[str]:
    found = schema.get("type")
    if isinstance(found, str):
        return [found]
    if isinstance(found, list):
        return [str(t) for t in found]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return [t for option in schema[key] if isinstance(option, dict) for t in _types(option)]
    return []


def schema_of_value(value: Any) -> dict[str, Any]:
    """A schema guessed from an expected output (its fields and their types)."""
    if isinstance(value, dict):
        return {"type": "object", "properties": {str(k): schema_of_value(v) for k, v in value.items()}}
    if isinstance(value, list):
        first = next((v for v in value if v is not None), None)
        return {"type": "array", "items": schema_of_value(first) if first is not None else {}}
    return {"type": json_type(value)} if value is not None else {}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def target_schema(flow: Flow, index: int) -> tuple[str, dict[str, Any] | None]:
    """Where the targets come from (said to the analyst) and the schema."""
    for spec in flow.steps[index + 1 :]:
        if spec.kind == "validate" and spec.step is not None:
            named = spec.options.schema_
            label = named if isinstance(named, str) else "its inline schema"
            return f"the schema step “{spec.name}” checks: {label}", dict(spec.step.validator.schema)
    if index == len(flow.steps) - 1 or all(s.kind in ("json.render", "validate") for s in flow.steps[index + 1 :]):
        for case in flow.tests:
            expect = case.expect[0] if isinstance(case.expect, list) and case.expect else case.expect
            if isinstance(expect, str) and expect.endswith(".json"):
                try:
                    value = json.loads((flow.path.parent / expect).read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                return f"the expected output of test “{case.name}”", schema_of_value(value)
    return "", None


def default_sample(flow: Flow) -> tuple[str, str]:
    """The first test case's input, to start with real data."""
    for case in flow.tests:
        path = flow.path.parent / case.input
        try:
            return path.read_text(encoding="utf-8"), path.name
        except (OSError, UnicodeDecodeError):
            continue
    return "", ""


# -- rows: what the page shows and posts ------------------------------------------------


@dataclass
class Row:
    path: str
    key: str
    depth: int
    kind: str  # value | object | list
    expression: str = ""
    source: str = ""  # an object's or list's source
    context: str = ""  # the source-tree prefix its expression reads from
    types: list[str] = field(default_factory=list)
    description: str = ""
    required: bool = False
    in_schema: bool = False
    mapped: bool = False
    shown: str = ""  # its value on the sample, as JSON
    has_value: bool = False
    problem: str = ""
    note: str = ""

    @property
    def id(self) -> str:
        """An HTML id for the row's cells (the same for the same path)."""
        return "f" + hashlib.sha1(self.path.encode(), usedforsecurity=False).hexdigest()[:12]


@dataclass
class SourceNode:
    path: str
    label: str
    depth: int
    type: str
    shown: str = ""


@dataclass
class View:
    step: mapping.MappingStep
    rows: list[Row]
    source: list[SourceNode]
    targets_from: str
    input_note: str
    expression: str
    base: str = ""
    many: bool = False
    problems: int = 0
    unrepresentable: str = ""
    error: str = ""


def source_tree(data: Any) -> list[SourceNode]:
    nodes: list[SourceNode] = []

    def walk(value: Any, path: str, label: str, depth: int) -> None:
        if len(nodes) >= SOURCE_NODES or depth > 8:
            return
        if isinstance(value, dict):
            if label:
                nodes.append(SourceNode(path, label, depth, "object"))
            for k, v in value.items():
                name = mapping.quote_path_part(str(k))
                walk(v, f"{path}.{name}" if path else name, str(k), depth + (1 if label else 0))
        elif isinstance(value, list):
            nodes.append(SourceNode(path + "[]", label + "[]", depth, "array", f"{len(value)} item(s)"))
            first = _union(value)  # every field some element has (HL loops differ by level)
            if isinstance(first, dict):
                for k, v in first.items():
                    name = mapping.quote_path_part(str(k))
                    walk(v, f"{path}[].{name}", str(k), depth + 1)
        else:
            nodes.append(SourceNode(path, label, depth, json_type(value), _shown(value)))

    walk(data, "", "", 0)
    return nodes


def _union(values: list[Any], limit: int = 200) -> Any:
    """One value standing for the elements of a list: objects merged field by field
    (the first value of each field that is not null), lists merged likewise."""
    dicts = [v for v in values[:limit] if isinstance(v, dict)]
    if dicts:
        merged: dict[str, list[Any]] = {}
        for d in dicts:
            for k, v in d.items():
                merged.setdefault(str(k), []).append(v)
        out: dict[str, Any] = {}
        for k, found in merged.items():
            lists = [x for v in found if isinstance(v, list) for x in v]
            if any(isinstance(v, dict) for v in found):
                out[k] = _union(found, limit)
            elif any(isinstance(v, list) for v in found):
                out[k] = [_union(lists, limit)] if lists else []
            else:
                out[k] = next((v for v in found if v is not None), None)
        return out
    return next((v for v in values if v is not None), None)


def _shown(value: Any) -> str:
    text = redactor.redact(json.dumps(value, ensure_ascii=False, default=str))
    return text if len(text) <= SHOW else text[: SHOW - 1] + "…"


def rows_posted(form: dict[str, list[Any]]) -> list[Row]:
    paths, kinds = form.get("path") or [], form.get("kind") or []
    exprs, sources = form.get("expr") or [], form.get("src") or []
    if not (len(paths) == len(kinds) == len(exprs) == len(sources)):
        raise MapperError("the mapper's form came back incomplete; reload the page")
    rows = []
    for path, kind, expr, src in zip(paths, kinds, exprs, sources, strict=True):
        keys = keys_of(str(path))
        if not keys or str(kind) not in ("value", "object", "list"):
            raise MapperError(f"a field of the form has no name or kind ({path!r}); reload the page")
        rows.append(Row(str(path), keys[-1], len(keys) - 1, str(kind), str(expr).strip(), str(src).strip()))
    return rows


def rows_of(m: mapping.Mapping | None) -> list[Row]:
    """The rows of an existing mapping, in its order."""
    rows: list[Row] = []

    def walk(shape: mapping.Shape, keys: list[str]) -> None:
        for f in shape.fields:
            here = [*keys, f.key]
            if f.nested is None:
                rows.append(Row(pointer(here), f.key, len(keys), "value", f.expression))
            else:
                rows.append(Row(pointer(here), f.key, len(keys), f.kind, "", f.nested.source))
                walk(f.nested, here)

    if m is not None:
        walk(m.shape, [])
    return rows


def rebuild(original: str, rows: list[Row], base: str = "", many: bool = False) -> mapping.Mapping:
    """The mapping the rows stand for, in their order; unmapped rows (no expression, an
    object with no mapped field, a list with no source) are left out. The text of what
    did not change is carried over from the original expression."""
    try:
        before: mapping.Mapping | None = mapping.parse(original) if original.strip() else None
    except mapping.Unrepresentable:
        before = None
    root = mapping.Shape(source=base, many=many)
    shapes: dict[str, mapping.Shape] = {"": root}
    for row in rows:
        parent = shapes.get(pointer(keys_of(row.path)[:-1]))
        if parent is None:
            continue  # its object was left out
        if row.kind == "value":
            if row.expression:
                parent.fields.append(mapping.Field(row.key, row.expression))
        elif row.kind == "list" and not row.source:
            continue
        else:
            nested = mapping.Shape(source=row.source, many=row.kind == "list")
            parent.fields.append(mapping.Field(row.key, "", nested))
            shapes[row.path] = nested
    _prune(root)
    if before is not None:
        _carry(before.shape, root)
    return mapping.Mapping(root, original if before is not None else "")


def _prune(shape: mapping.Shape) -> None:
    kept = []
    for f in shape.fields:
        if f.nested is not None:
            _prune(f.nested)
            if not f.nested.fields:
                continue
        kept.append(f)
    shape.fields = kept


def _carry(old: mapping.Shape, new: mapping.Shape) -> None:
    new.original, new.parsed = old.original, old.parsed
    for f in new.fields:
        was = old.field_named(f.key)
        if was is None:
            continue
        f.key_text = was.key_text
        if f.nested is not None and was.nested is not None:
            _carry(was.nested, f.nested)
        elif f.nested is not None:
            f.nested.original, f.nested.parsed = "", None


# -- evaluation and the view ------------------------------------------------------------


def _evaluate(expression: str, data: Any, lookup: Any) -> tuple[Any, str]:
    try:
        return compile_expression(expression, None, lookup).search(data), ""
    except OptionError as exc:
        return None, redactor.redact(str(exc))
    except Exception as exc:  # a JMESPath or function error, shown at its field
        return None, redactor.redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__


def _lookup_of(flow: Flow | None, index: int) -> Any:
    if flow is None or index >= len(flow.steps):
        return None
    step = flow.steps[index].step
    return getattr(step, "_lookup", None)


def _type_ok(value: Any, types: list[str]) -> bool:
    if not types:
        return True
    actual = json_type(value)
    return actual in types or (actual == "integer" and "number" in types)


def build_view(
    step: mapping.MappingStep,
    rows: list[Row],
    data: Any,
    input_note: str,
    schema: dict[str, Any] | None,
    targets_from: str,
    flow: Flow | None,
    base: str = "",
    many: bool = False,
) -> View:
    """Merge the posted (or parsed) rows with the schema's fields, render the expression,
    evaluate every field on the step's input and mark what is wrong."""
    built = rebuild(step.expression, rows, base, many)
    expression = mapping.render(built) if built.shape.fields else ""
    lookup = _lookup_of(flow, step.index)
    by_path = {r.path: r for r in rows}
    ordered = _merge(rows, schema)
    root_context = context_of(base) + "." if base else ""
    contexts = {"": root_context}
    values: dict[str, tuple[Any, str, bool]] = {}  # path -> value, error, has value
    scope: dict[str, Any] = {"": _scope_value(data, base, many)}
    for row in ordered:
        parent = pointer(keys_of(row.path)[:-1])
        row.context = contexts.get(parent, "")
        posted = by_path.get(row.path)
        if posted is not None:
            row.expression, row.source = posted.expression, posted.source
        if row.kind != "value":
            ctx = row.context
            if row.source:
                ctx = row.context + (context_of(row.source) + "." if row.kind == "list" else row.source + ".")
            contexts[row.path] = ctx
            here = scope.get(parent)
            inner: Any = None
            if here is not None and data is not None:
                if row.source:
                    found, _error = _evaluate(row.source, here, lookup)
                    inner = (next((v for v in found if v is not None), None) if isinstance(found, list) else None) if row.kind == "list" else found
                else:
                    inner = here
            scope[row.path] = inner
            row.mapped = row.kind == "object" or bool(row.source)
            continue
        row.mapped = bool(row.expression)
        if row.mapped and data is not None:
            here = scope.get(parent)
            value, error = _evaluate(row.expression, here, lookup) if here is not None else (None, "")
            values[row.path] = (value, error, here is not None and not error)
            row.shown = _shown(value) if not error else ""
            row.has_value = here is not None and not error
            if error:
                row.problem = f"error: {error}"
            elif row.in_schema and not _type_ok(value, row.types):
                row.problem = f"wrong type: {json_type(value)}, the schema wants {' or '.join(row.types)}"
    mapped_objects = {r.path for r in ordered if r.kind != "value" and _has_mapped(r.path, ordered)}
    mapped_objects.add("")
    problems = 0
    for row in ordered:
        parent = pointer(keys_of(row.path)[:-1])
        if row.kind != "value":
            row.mapped = row.path in mapped_objects
        if row.required and not row.mapped and parent in mapped_objects:
            row.problem = "required, not mapped"
        if row.kind == "list" and not row.source and _has_children_expr(row.path, ordered):
            row.problem = "choose the source list"
        if row.mapped and not row.in_schema and schema is not None:
            row.note = "not in the schema"
        problems += bool(row.problem)
    return View(step, ordered, source_tree(data) if data is not None else [], targets_from, input_note, expression,
                base, many, problems)


def _scope_value(data: Any, base: str, many: bool) -> Any:
    if data is None or not base:
        return data
    found, _ = _evaluate(base, data, None)
    if many:
        return next((v for v in found if v is not None), None) if isinstance(found, list) else None
    return found


def _has_mapped(path: str, rows: list[Row]) -> bool:
    prefix = path + "/"
    return any(r.path.startswith(prefix) and r.kind == "value" and r.expression for r in rows)


def _has_children_expr(path: str, rows: list[Row]) -> bool:
    return _has_mapped(path, rows)


def _merge(rows: list[Row], schema: dict[str, Any] | None) -> list[Row]:
    """The rows in the mapping's order, each object followed by its fields; the schema's
    fields not mapped yet come after the mapped ones of the same object."""
    children: dict[str, list[Row]] = {}
    for r in rows:
        fresh = Row(r.path, r.key, r.depth, r.kind, r.expression, r.source)
        children.setdefault(pointer(keys_of(r.path)[:-1]), []).append(fresh)

    out: list[Row] = []

    def walk(parent: str, depth: int, node: dict[str, Any] | None) -> None:
        node = _resolve(node, schema) if node is not None and schema is not None else node
        properties = node.get("properties") if isinstance(node, dict) else None
        properties = properties if isinstance(properties, dict) else {}
        required = set(node.get("required") or []) if isinstance(node, dict) else set()
        listed = children.get(parent, [])
        names = {r.key for r in listed}
        for key, prop in properties.items():
            if key not in names:
                listed.append(Row(pointer([*keys_of(parent), key]), key, depth, _kind(prop, schema)))
        for row in listed:
            prop = properties.get(row.key)
            if isinstance(prop, dict) and schema is not None:
                prop = _resolve(prop, schema)
                row.in_schema = True
                row.types = _types(prop)
                row.description = str(prop.get("description") or "")
            row.required = row.key in required
            out.append(row)
            if row.kind != "value":
                inner = prop
                if isinstance(prop, dict) and row.kind == "list":
                    items = prop.get("items")
                    inner = items if isinstance(items, dict) else None
                walk(row.path, depth + 1, inner if isinstance(inner, dict) else None)

    walk("", 0, schema)
    return out


def _kind(prop: Any, root: dict[str, Any] | None) -> str:
    if not isinstance(prop, dict):
        return "value"
    prop = _resolve(prop, root or {})
    types = _types(prop)
    if "array" in types and isinstance(prop.get("items"), dict):
        items = _resolve(prop["items"], root or {})
        if "object" in _types(items) and items.get("properties"):
            return "list"
    if "object" in types and isinstance(prop.get("properties"), dict) and prop["properties"]:
        return "object"
    return "value"


# -- the page ---------------------------------------------------------------------------


_steps: OrderedDict[str, list[mapping.MappingStep] | str] = OrderedDict()
_steps_lock = threading.Lock()


def _parsed_steps(path: Path, text: str) -> list[mapping.MappingStep] | str:
    """The jmespath steps of the text (or why the YAML does not parse), kept for the
    next previews: the round-trip parse of a long flow is most of a preview's time."""
    key = hashlib.sha256(f"{path}\0{text}".encode()).hexdigest()
    with _steps_lock:
        found = _steps.get(key)
        if found is not None:
            _steps.move_to_end(key)
            return found
    try:
        result: list[mapping.MappingStep] | str = mapping.jmespath_steps(load_text(text, path.name))
    except YamlSyntaxError as exc:
        result = f"fix the YAML first: line {exc.issue.position.line}: {exc.issue.message}"
    with _steps_lock:
        _steps[key] = result
        while len(_steps) > 16:
            _steps.popitem(last=False)
    return result


def find_step(path: Path, text: str, index: int) -> mapping.MappingStep:
    found = _parsed_steps(path, text)
    if isinstance(found, str):
        raise MapperError(found)
    for step in found:
        if step.index == index:
            return step
    raise MapperError(f"step {index + 1} is not a jmespath step; the mapper maps jmespath steps")


def mapping_steps(path: Path, text: str) -> list[mapping.MappingStep]:
    found = _parsed_steps(path, text)
    return [] if isinstance(found, str) else found


def view(
    path: Path, text: str, index: int, sample: bytes, sample_name: str, rows: list[Row] | None = None,
    base: str | None = None, many: bool | None = None,
) -> View:
    """The mapper's view of step `index` of the flow text: parsed when `rows` is None,
    else the rows posted."""
    step = find_step(path, text, index)
    try:
        flow: Flow | None = playground.compiled(path, text)
    except FlowyardError as exc:
        flow = None
        error = redactor.redact(str(exc).splitlines()[0])
    else:
        error = ""
    if rows is None:
        if step.mapping is None:
            return View(step, [], [], "", "", step.expression, unrepresentable=step.reason, error=error)
        rows = rows_of(step.mapping)
        base, many = step.mapping.shape.source, step.mapping.shape.many
    data, note = (None, "the flow does not load; fix it in the editor") if flow is None else step_input(
        path, text, sample, sample_name, index
    )
    targets_from, schema = target_schema(flow, index) if flow is not None else ("", None)
    built = build_view(step, rows, data, note, schema, targets_from, flow, base or "", bool(many))
    built.error = error
    return built


def new_text(path: Path, text: str, index: int, rows: list[Row], base: str = "", many: bool = False) -> tuple[str, str]:
    """The flow text with the mapping written back, and the expression; the same text
    when nothing changed."""
    step = find_step(path, text, index)
    if step.mapping is None and step.expression.strip():
        raise MapperError("the mapper cannot show this expression field by field; edit it as text in the editor")
    built = rebuild(step.expression, rows, base, many)
    if not built.shape.fields:
        raise MapperError("map at least one field before saving")
    expression = mapping.render(built)
    if expression == step.expression:
        return text, expression
    return mapping.write_expression(text, path.name, index, expression), expression
