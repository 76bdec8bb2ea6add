"""Onboarding templates (`kind: Template`) and their instances (`kind: FlowInstance`).

A plant or supplier goes live by filling in values, not by writing a flow: a template is
a flow body whose strings may name parameters (`{{ plant | lower }}`), the parameters are
a JSON Schema (types, patterns, enums, defaults, descriptions shown as help), and an
instance is a small file naming the template and giving the values. The runtime deploys
an instance as the flow it renders to: `flowyard.loader.load_flow(instance)` returns
that flow (`InstanceKind.flow`, registered as the `FlowInstance` definition kind).

Which strings are rendered: a string is rendered at onboarding when it names at least one
parameter (or `instance_name`, `template_name`, `template_dir`); strings that only name
run-time variables (`data`, `message`, `key`, ...) are left alone for the runtime. A
string mixing both is an error: wrap the run-time part in `{% raw %}...{% endraw %}`.
A string that is exactly one `{{ expression }}` keeps the value's type (a number stays
a number). Rendering uses the sandboxed environment of `flowyard.sandbox`.

Where errors point: a value that breaks the parameters' schema is reported at the
instance's line; a problem in the rendered flow is reported at the template's line that
produced it (mapped through the document structure), naming the values it used.

Python API (the UI's onboarding wizard is built on these):

- `list_templates(directory)` -> [`Template`]: every template under a folder.
- `load_template(path)` -> `Template` (raises `DefinitionError`); `Template.fields()`
  describes the parameters for a form (name, type, required, default, enum, help).
- `find_template(name, version, start)` finds a template by name from an instance's folder.
- `load_instance_file(path)` -> `FlowInstance`; `render_instance(instance, template=None)`
  -> `Rendered` (the rendered document, its text, and `flow()` to load and check it);
  passing another `Template` renders against a template version not yet saved.
- `render_values(template, values, instance_path)` -> `Rendered` for a preview before any
  instance file exists.
- `flowyard.onboarding.onboard(...)` writes a new instance (see that module);
  `flowyard.onboarding.try_samples(template, values, directory)` runs the template's test
  cases on the flow the values give, before anything is saved.
- `flowyard.impact.template_impact(...)` shows how a template change renders for every
  instance and runs their tests (see that module).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import pydantic
from jinja2 import TemplateError, TemplateSyntaxError, meta
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import SchemaError, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)

from .definitions.grammar import files_of_kind, parse_definition
from .definitions.kinds import DefinitionKind
from .errors import DefinitionError, FlowyardError, Issue, IssueList, Position, did_you_mean
from .flow import API_VERSION, NAME_PATTERN, TOP_LEVEL_KEYS, ApiVersion, Flow, FlowTest, Metadata
from .loader import FlowLoader
from .options import Options
from .sandbox import FlowEnvironment, RenderLimitError, make_environment
from .yamlio import (
    dump_text,
    key_position,
    load_text,
    locate,
    node_start,
    to_plain,
    value_position,
)

BUILTIN_NAMES = ("instance_name", "template_name", "template_dir")
RESERVED_NAMES = ("data", "message", "key", "ext")  # the runtime's template variables
_SINGLE_EXPRESSION = re.compile(r"^\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}$", re.S)


def _environment() -> FlowEnvironment:
    return make_environment(autoescape=False, strict=True, max_output=1_000_000, time_limit=2.0)


def _uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlparse(value)
    return bool(parts.scheme and (parts.netloc or parts.path))


FORMATS = FormatChecker()
FORMATS.checks("uri")(_uri)
FORMATS.checks("url")(_uri)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """`pattern` as analysts read it: in Python `$` also matches before a final newline,
    so "MX01\\n" would pass `^[A-Z]{2}[0-9]{2}$`; here it does not."""
    if not isinstance(instance, str):
        return
    found = re.search(pattern, instance)
    anchored = pattern.endswith("$") and not pattern.endswith("\\$")
    if found is None or (anchored and found.end() != len(instance)):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


# -- the models ------------------------------------------------------------------


# The files' shapes, declared once: the sections the parsers below accept come from these
# models, and so does the JSON Schema an editor checks the files with (`flowyard schema`).
# The parsers check what the models cannot say (a valid JSON Schema under `parameters`,
# the rendered flow) with positions.


class TemplateMetadata(Options):
    name: str = pydantic.Field(pattern=NAME_PATTERN, max_length=100, description="the template's name, which instances give as `template:`")
    version: str | None = pydantic.Field(None, description='the template\'s version ("1.0"); an instance may pin it as `NAME@VERSION`')
    description: str = pydantic.Field("", description="what the flows made from it do, in one line")


class TemplateFlowBody(Options):
    """A Flow body (without apiVersion and kind); strings may use `{{ parameter }}`, so the
    sections are checked when an instance renders, not here."""

    metadata: dict[str, Any] = pydantic.Field(default_factory=dict, description="the flow's metadata; `name` defaults to the instance's name")
    source: dict[str, Any] = pydantic.Field(description="exactly one source connector, as in a flow")
    steps: list[Any] = pydantic.Field(default_factory=list, description="the steps, as in a flow")
    targets: list[Any] = pydantic.Field(description="one or more target connectors, as in a flow")
    tests: list[FlowTest] = pydantic.Field(default_factory=list, description="test cases every instance runs; paths may use `{{ instance_name }}`")
    keys: dict[str, str] = pydantic.Field(default_factory=dict, description="business keys: name -> JMESPath over the parsed data")
    sla: dict[str, Any] = pydantic.Field(default_factory=dict, description="thresholds that turn the flow's dashboard tile red")


class TemplateDefinition(Options):
    """`kind: Template`: a flow body whose strings may name parameters, and the JSON Schema
    of the parameters."""

    model_config = pydantic.ConfigDict(title="Flowyard template")

    apiVersion: ApiVersion = pydantic.Field(description=f"always {API_VERSION}")
    kind: Literal["Template"] = pydantic.Field(description="a template for onboarding")
    metadata: TemplateMetadata
    parameters: dict[str, Any] = pydantic.Field(
        default_factory=dict,
        description="parameter name: its JSON Schema (type, pattern, enum, default, description, examples); "
        "parameters without a default are required. Or a full JSON Schema of an object.",
    )
    flow: TemplateFlowBody = pydantic.Field(description="the flow an instance renders to")
    skeleton: dict[str, Any] = pydantic.Field(
        default_factory=dict,
        description="files `flowyard onboard` writes beside a new instance: path -> content (text, a mapping written as YAML, or {from: FILE} beside the template)",
    )


class TemplateRefSpec(Options):
    name: str = pydantic.Field(description="the template's name")
    version: str | None = pydantic.Field(None, description="the template's version; the newest when not given")


class FlowInstanceDefinition(Options):
    """`kind: FlowInstance`: a flow made from a template by giving its parameters' values."""

    model_config = pydantic.ConfigDict(title="Flowyard flow instance")

    apiVersion: ApiVersion = pydantic.Field(description=f"always {API_VERSION}")
    kind: Literal["FlowInstance"] = pydantic.Field(description="a flow made from a template")
    metadata: Metadata
    template: Annotated[str, pydantic.Field(pattern=r"\S")] | TemplateRefSpec = pydantic.Field(
        description="the template: `NAME`, `NAME@VERSION` or `{name: NAME, version: V}`"
    )
    values: dict[str, Any] = pydantic.Field(default_factory=dict, description="parameter: value, checked against the template's parameters")
    tests: list[FlowTest] = pydantic.Field(default_factory=list, description="test cases of this instance, run after the template's")


TEMPLATE_KEYS = tuple(TemplateDefinition.model_fields)
INSTANCE_KEYS = tuple(FlowInstanceDefinition.model_fields)
assert set(TemplateFlowBody.model_fields) == set(TOP_LEVEL_KEYS) - {"apiVersion", "kind"}, "a template's flow body has a flow's sections"



@dataclass
class Field:
    """One parameter, as the onboarding form shows it."""

    name: str
    type: str
    required: bool
    description: str = ""
    default: Any = None
    has_default: bool = False
    enum: list[Any] | None = None
    pattern: str | None = None
    format: str | None = None
    examples: list[Any] = field(default_factory=list)


@dataclass
class Template:
    path: Path
    name: str
    version: str | None
    description: str
    schema: dict[str, Any]  # JSON Schema of the values object
    document: CommentedMap
    body: CommentedMap  # the flow body (metadata, source, steps, targets, tests ...)
    skeleton: CommentedMap | None
    text: str

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name

    @property
    def properties(self) -> dict[str, Any]:
        props: dict[str, Any] = self.schema.get("properties", {})
        return props

    def fields(self) -> list[Field]:
        required = set(self.schema.get("required", []))
        result = []
        for name, prop in self.properties.items():
            prop = prop if isinstance(prop, dict) else {}
            result.append(
                Field(
                    name=name,
                    type=str(prop.get("type", "string")),
                    required=name in required,
                    description=str(prop.get("description", "")),
                    default=prop.get("default"),
                    has_default="default" in prop,
                    enum=prop.get("enum"),
                    pattern=prop.get("pattern"),
                    format=prop.get("format"),
                    examples=list(prop.get("examples", [])),
                )
            )
        return result

    def defaults(self) -> dict[str, Any]:
        return {f.name: f.default for f in self.fields() if f.has_default}

    def example_values(self) -> dict[str, Any] | None:
        """Values from defaults and first examples, or None when a parameter has neither."""
        values: dict[str, Any] = {}
        for f in self.fields():
            if f.examples:
                values[f.name] = f.examples[0]
            elif f.has_default:
                values[f.name] = f.default
            elif f.enum:
                values[f.name] = f.enum[0]
            elif f.required:
                return None
        return values


@dataclass
class TemplateRef:
    name: str
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


@dataclass
class FlowInstance:
    path: Path
    name: str
    description: str
    labels: dict[str, str]
    template: TemplateRef
    values: dict[str, Any]
    document: CommentedMap
    text: str

    @property
    def values_node(self) -> Any:
        return self.document.get("values")


# -- reading files -----------------------------------------------------------------


def _metadata(document: CommentedMap, issues: IssueList) -> CommentedMap | None:
    node = document.get("metadata")
    if not isinstance(node, CommentedMap):
        issues.add("metadata must be a mapping with at least a name", *(value_position(document, "metadata") if "metadata" in document else (1, 1)))
        return None
    name = node.get("name")
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        issues.add("metadata.name must be lower-case letters, digits and dashes", *(value_position(node, "name") if "name" in node else node_start(node)))
        return None
    return node


def _normalise_schema(node: Any) -> dict[str, Any]:
    """`parameters:` is either a full JSON Schema of an object, or (the short form) a
    mapping of parameter name to its schema; parameters without a default are required."""
    plain = to_plain(node) or {}
    if plain.get("type") == "object" and isinstance(plain.get("properties"), dict):
        schema: dict[str, Any] = dict(plain)
    else:
        required = [k for k, v in plain.items() if not (isinstance(v, dict) and ("default" in v or v.get("required") is False))]
        props = {k: {kk: vv for kk, vv in v.items() if kk != "required"} if isinstance(v, dict) else v for k, v in plain.items()}
        schema = {"type": "object", "properties": props, "required": required}
    schema.setdefault("additionalProperties", False)
    return schema


def parse_template(path: Path, text: str | None = None) -> tuple[Template | None, IssueList]:
    """Read a template file; problems with their positions in `issues`."""
    issues = IssueList(str(path))
    text = text if text is not None else path.read_text(encoding="utf-8")
    document = parse_definition(path, text, "Template", issues)
    if document is None:
        return None, issues
    for key in document:
        if key not in TEMPLATE_KEYS:
            issues.add(f"unknown section {key!r}" + did_you_mean(str(key), TEMPLATE_KEYS), *key_position(document, key))
    meta_node = _metadata(document, issues)
    params = document.get("parameters")
    schema: dict[str, Any] = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    if params is not None and not isinstance(params, CommentedMap):
        issues.add("parameters must be a mapping of name: JSON Schema", *value_position(document, "parameters"))
    elif params is not None:
        schema = _normalise_schema(params)
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            where = [p for p in exc.path if p != "properties"] if schema is not None else []
            issues.add(f"parameters: not a valid JSON Schema: {exc.message}", *locate(params, where))
        for name in schema.get("properties", {}):
            if name in RESERVED_NAMES or name in BUILTIN_NAMES:
                issues.add(f"parameter {name!r} would hide the name the runtime or the template gives; rename it", *key_position(params, name))
    body = document.get("flow")
    if not isinstance(body, CommentedMap):
        issues.add("flow must be a mapping: a flow body (metadata, source, steps, targets, tests)", *(value_position(document, "flow") if "flow" in document else (1, 1)))
    skeleton = document.get("skeleton")
    if skeleton is not None and not isinstance(skeleton, CommentedMap):
        issues.add("skeleton must map a file path (relative to the instance) to its content", *value_position(document, "skeleton"))
        skeleton = None
    if issues.errors or meta_node is None or not isinstance(body, CommentedMap):
        return None, issues
    version = meta_node.get("version")
    template = Template(
        path=path,
        name=str(meta_node["name"]),
        version=str(version) if version is not None else None,
        description=str(meta_node.get("description", "")),
        schema=schema,
        document=document,
        body=body,
        skeleton=skeleton,
        text=text,
    )
    return template, issues


def load_template(path: Path | str, text: str | None = None) -> Template:
    template, issues = parse_template(Path(path), text)
    if template is None:
        raise DefinitionError(issues.issues or [Issue(Position(str(path)), "the template could not be read")])
    return template


def _template_ref(node: Any, document: CommentedMap, issues: IssueList) -> TemplateRef | None:
    if isinstance(node, str) and node.strip():
        name, _, version = node.strip().partition("@")
        return TemplateRef(name, version or None)
    if isinstance(node, CommentedMap) and isinstance(node.get("name"), str):
        version = node.get("version")
        return TemplateRef(str(node["name"]), str(version) if version is not None else None)
    issues.add("template must name a template: `template: NAME`, `NAME@VERSION` or `{name: NAME, version: V}`", *(value_position(document, "template") if "template" in document else (1, 1)))
    return None


def parse_instance(path: Path, text: str | None = None) -> tuple[FlowInstance | None, IssueList]:
    issues = IssueList(str(path))
    text = text if text is not None else path.read_text(encoding="utf-8")
    document = parse_definition(path, text, "FlowInstance", issues)
    if document is None:
        return None, issues
    for key in document:
        if key not in INSTANCE_KEYS:
            issues.add(f"unknown section {key!r}" + did_you_mean(str(key), INSTANCE_KEYS), *key_position(document, key))
    meta_node = _metadata(document, issues)
    ref = _template_ref(document.get("template"), document, issues)
    values = document.get("values")
    if values is not None and not isinstance(values, CommentedMap):
        issues.add("values must be a mapping of parameter: value", *value_position(document, "values"))
    tests = document.get("tests")
    if tests is not None and not isinstance(tests, CommentedSeq):
        issues.add("tests must be a list of cases with name, input and expect", *value_position(document, "tests"))
    if issues.errors or meta_node is None or ref is None:
        return None, issues
    labels = to_plain(meta_node.get("labels")) or {}
    instance = FlowInstance(
        path=path,
        name=str(meta_node["name"]),
        description=str(meta_node.get("description", "")),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        template=ref,
        values=to_plain(values) or {},
        document=document,
        text=text,
    )
    return instance, issues


def load_instance_file(path: Path | str, text: str | None = None) -> FlowInstance:
    instance, issues = parse_instance(Path(path), text)
    if instance is None:
        raise DefinitionError(issues.issues)
    return instance


# -- finding templates ------------------------------------------------------------------


def _version_key(version: str | None) -> tuple[Any, ...]:
    parts = re.split(r"[.\-]", version or "")
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def template_files(directory: Path) -> Iterator[Path]:
    """YAML files of kind Template under a folder (recursively)."""
    if directory.is_dir():
        yield from files_of_kind([directory], "Template")


_parsed: dict[Path, tuple[int, int, Template | None]] = {}


def _parse_cached(path: Path) -> Template | None:
    """A template file parsed once per change (parsing YAML is the cost of rendering)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = path.resolve()
    cached = _parsed.get(key)
    if cached is not None and cached[0] == stat.st_mtime_ns and cached[1] == stat.st_size:
        return cached[2]
    template, _issues = parse_template(path)
    _parsed[key] = (stat.st_mtime_ns, stat.st_size, template)
    return template


def list_templates(directory: Path | str) -> list[Template]:
    """Every readable template under a folder (the wizard's first page)."""
    found = []
    for path in template_files(Path(directory)):
        template = _parse_cached(path)
        if template is not None:
            found.append(template)
    return sorted(found, key=lambda t: (t.name, _version_key(t.version)))


def find_template(name: str, version: str | None, start: Path) -> Template:
    """The template `name` (at `version`, else the newest) from `templates/` folders
    beside `start` or above it; FlowyardError when there is none."""
    seen: list[str] = []
    for directory in [start, *start.parents]:
        folder = directory / "templates"
        if not folder.is_dir():
            continue
        candidates = [t for t in list_templates(folder) if t.name == name]
        seen.extend(t.label for t in candidates)
        if version is not None:
            candidates = [t for t in candidates if t.version == version]
        if candidates:
            return max(candidates, key=lambda t: _version_key(t.version))
    if seen:
        raise FlowyardError(f"template {name!r} has no version {version!r} (found: {', '.join(seen)})")
    raise FlowyardError(f"no template named {name!r} in a templates/ folder beside {start} or above it")


# -- values ------------------------------------------------------------------------


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _control_characters(value: Any, path: list[Any]) -> Iterator[tuple[list[Any], str, bool]]:
    """Values are one-line settings: a control character (a newline, a tab, a NUL) would
    end up inside the rendered YAML, JMESPath or X12."""
    if isinstance(value, str):
        found = _CONTROL.search(value)
        if found:
            where = ".".join(map(str, path))
            yield path, f"parameter {where!r}: {value!r} contains the control character {found.group()!r}; values are one line of text", False
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _control_characters(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _control_characters(item, [*path, index])


def check_values(template: Template, values: dict[str, Any]) -> list[tuple[list[Any], str, bool]]:
    """Every way the values break the parameters: (path, message, points at a key)."""
    validator = Validator(template.schema, format_checker=FORMATS)
    problems: list[tuple[list[Any], str, bool]] = list(_control_characters(values, []))
    names = list(template.properties)
    for error in sorted(validator.iter_errors(values), key=lambda e: list(map(str, e.absolute_path))):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties":
            extra = [k for k in (error.instance or {}) if k not in template.properties] if not path else []
            for key in extra:
                problems.append(([*path, key], f"unknown parameter {key!r}" + did_you_mean(str(key), names) + f"; {template.label} takes: {', '.join(names)}", True))
            if extra:
                continue
        if error.validator == "required":
            missing = [str(m) for m in error.validator_value if m not in (error.instance or {})]
            for m in missing:
                help_text = template.properties.get(m, {}).get("description", "")
                problems.append((path, f"missing value for parameter {m!r}" + (f" ({help_text})" if help_text else ""), False))
            continue
        name = ".".join(map(str, path)) or "values"
        message = error.message
        if error.validator == "pattern":
            message = f"{error.instance!r} does not match the pattern {error.validator_value!r}"
        elif error.validator == "enum":
            message = f"{error.instance!r} is not one of {', '.join(map(repr, error.validator_value))}"
        elif error.validator == "format":
            message = f"{error.instance!r} is not a valid {error.validator_value}"
        help_text = template.properties.get(str(path[0]), {}).get("description", "") if path else ""
        problems.append((path, f"parameter {name!r}: {message}" + (f" ({help_text})" if help_text else ""), False))
    return problems


def with_defaults(template: Template, values: dict[str, Any]) -> dict[str, Any]:
    merged = template.defaults()
    merged.update(values)
    return merged


# -- rendering ----------------------------------------------------------------------


class RenderError(Exception):
    """A string of the template could not be rendered; `path` leads to it in the body."""

    def __init__(self, message: str, path: list[Any], line_in_value: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.line_in_value = line_in_value


def _names(env: FlowEnvironment, text: str) -> set[str] | None:
    try:
        return set(meta.find_undeclared_variables(env.parse(text)))
    except TemplateSyntaxError:
        return None


def _restyle(original: Any, value: str) -> Any:
    for cls in (LiteralScalarString, FoldedScalarString, DoubleQuotedScalarString, SingleQuotedScalarString):
        if isinstance(original, cls):
            return cls(value)
    if value.startswith("?"):  # ruamel writes a plain `?x` in `{...}` it cannot read back
        return DoubleQuotedScalarString(value)
    return value


def render_string(env: FlowEnvironment, text: str, variables: dict[str, Any], path: list[Any]) -> tuple[Any, bool]:
    """(rendered value, whether it was rendered). See the module docstring for the rule."""
    if "{{" not in text and "{%" not in text:
        return text, False
    known = set(variables)
    names = _names(env, text)
    if names is None:
        # Not Jinja: a JMESPath with nested braces, for instance. It is an error only when
        # it evidently meant a parameter.
        if any(re.search(r"\{\{\s*" + re.escape(n) + r"\b", text) for n in known):
            try:
                env.parse(text)
            except TemplateSyntaxError as exc:
                raise RenderError(f"template syntax: {exc.message}", path, exc.lineno) from exc
        return text, False
    params = names & known
    runtime = names - known
    if not params and "{% raw" not in text and "{%raw" not in text:
        return text, False
    if runtime:
        raise RenderError(
            f"this string uses parameters ({', '.join(sorted(params))}) and run-time names "
            f"({', '.join(sorted(runtime))}); wrap the run-time part in {{% raw %}}...{{% endraw %}}",
            path,
        )
    try:
        single = _SINGLE_EXPRESSION.match(text.strip())
        if single and text == text.strip():
            value = env.compile_expression(single.group("expr"), undefined_to_none=False)(**variables)
            if value is None or (isinstance(value, bool | int | float | list | dict) and not isinstance(value, str)):
                return value, True
        rendered = env.render_limited(lambda: env.from_string(text).generate(**variables))
    except RenderLimitError as exc:
        raise RenderError(str(exc), path) from exc
    except TemplateError as exc:
        raise RenderError(f"rendering failed: {exc.message or exc}", path, getattr(exc, "lineno", None)) from exc
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise RenderError(f"rendering failed: {exc}", path) from exc
    return rendered, True


def render_node(env: FlowEnvironment, node: Any, variables: dict[str, Any], path: list[Any], errors: list[RenderError], used: dict[tuple[Any, ...], set[str]]) -> Any:
    """A deep copy of `node` with its strings rendered; comments and styles kept."""
    if isinstance(node, CommentedMap):
        for key in list(node.keys()):
            node[key] = render_node(env, node[key], variables, [*path, key], errors, used)
        return node
    if isinstance(node, CommentedSeq):
        for index in range(len(node)):
            node[index] = render_node(env, node[index], variables, [*path, index], errors, used)
        return node
    if isinstance(node, str):
        try:
            value, rendered = render_string(env, str(node), variables, path)
        except RenderError as exc:
            errors.append(exc)
            return node
        if rendered:
            names = _names(env, str(node)) or set()
            used[tuple(path)] = names & set(variables)
            return _restyle(node, value) if isinstance(value, str) else value
    return node


@dataclass
class Rendered:
    """The flow an instance (or a preview's values) renders to."""

    template: Template
    path: Path  # where the flow lives (the instance file): paths in it are relative to it
    name: str
    values: dict[str, Any]
    document: CommentedMap | None
    text: str
    issues: list[Issue]
    values_positions: dict[str, Position] = field(default_factory=dict)
    used: dict[tuple[Any, ...], set[str]] = field(default_factory=dict)
    instance: FlowInstance | None = None

    @property
    def ok(self) -> bool:
        return not any(i.severity == "error" for i in self.issues)

    def flow(self) -> Flow:
        """Load the rendered flow (steps compiled, connectors checked); DefinitionError with
        positions in the template and the instance."""
        if not self.ok or self.document is None:
            raise DefinitionError(self.issues)
        loader = FlowLoader(self.path, self.text)
        flow = loader.load()
        issues = [self.map_issue(i) for i in loader.issues.issues]
        if flow is None or any(i.severity == "error" for i in issues):
            raise DefinitionError(issues or [Issue(Position(str(self.path)), "the rendered flow could not be loaded")])
        return flow

    def check(self) -> list[Issue]:
        try:
            self.flow()
        except DefinitionError as exc:
            return exc.issues
        return []

    def map_issue(self, issue: Issue) -> Issue:
        """Move an issue found in the rendered text to the template line it came from."""
        line, col = issue.position.line, issue.position.column
        if line is None:
            return Issue(Position(str(self.template.path)), f"{issue.message} (in the flow rendered for {self.name})", issue.severity)
        rendered = load_text(self.text, str(self.path))
        best: tuple[tuple[int, int], list[Any], int, int, bool] | None = None
        for node_path, (nl, nc), is_key in _positions(rendered, []):
            if (nl, nc) <= (line, col or 1) and (best is None or (nl, nc) >= best[0]):
                best = ((nl, nc), node_path, nl, nc, is_key)
        body_path: list[Any] = []
        delta_line = delta_col = 0
        at_key = False
        if best is not None:
            body_path = best[1][:]
            delta_line, delta_col = line - best[2], (col or 1) - best[3]
            at_key = best[4]
        if body_path[:1] == ["metadata"] and body_path[1:2] == ["name"]:
            position = self.values_positions.get("__name__", Position(str(self.path), 1, 1))
            return Issue(position, issue.message, issue.severity)
        if body_path and body_path[0] in ("apiVersion", "kind"):
            body_path = []
        own = self._instance_test_position(body_path, at_key)
        if own is not None:
            return Issue(own, issue.message, issue.severity)
        tl, tc = locate(self.template.body, body_path, at_key=at_key) if body_path else node_start(self.template.body)
        used = self.used.get(tuple(body_path), set())
        if at_key:
            used = set()
        if not used and not at_key and tl is not None and tc is not None and _follows(self.template.body, body_path):
            tl, tc = tl + delta_line, (tc + delta_col if delta_line == 0 else (col or tc))
        suffix = f" (in the flow rendered for {self.name}"
        params = sorted(n for n in used if n in self.values_positions)
        if params:
            suffix += "; values used: " + ", ".join(f"{n} at {self.values_positions[n]}" for n in params)
        return Issue(Position(str(self.template.path), tl, tc), issue.message + suffix + ")", issue.severity)


    def _instance_test_position(self, body_path: list[Any], at_key: bool) -> Position | None:
        """A test case the instance added is reported at the instance's line."""
        if self.instance is None or body_path[:1] != ["tests"] or len(body_path) < 2:
            return None
        template_tests = self.template.body.get("tests")
        offset = len(template_tests) if isinstance(template_tests, CommentedSeq) else 0
        own = self.instance.document.get("tests")
        index = body_path[1]
        if not isinstance(own, CommentedSeq) or not isinstance(index, int) or index < offset:
            return None
        line, col = locate(own, [index - offset, *body_path[2:]], at_key=at_key)
        return Position(str(self.instance.path), line, col)


def _follows(body: CommentedMap, path: list[Any]) -> bool:
    """Whether the template node at `path` is a scalar (so offsets inside it carry over)."""
    node: Any = body
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    return not isinstance(node, CommentedMap | CommentedSeq)


def _positions(node: Any, path: list[Any]) -> Iterator[tuple[list[Any], tuple[int, int], bool]]:
    """(path, position, is a key) of every key and value in a document."""
    if isinstance(node, CommentedMap):
        for key in node:
            kl, kc = key_position(node, key)
            if kl is not None and kc is not None:
                yield [*path, key], (kl, kc), True
            vl, vc = value_position(node, key)
            if vl is not None and vc is not None and not isinstance(node[key], CommentedMap | CommentedSeq):
                yield [*path, key], (vl, vc), False
            yield from _positions(node[key], [*path, key])
    elif isinstance(node, CommentedSeq):
        for index, item in enumerate(node):
            il, ic = value_position(node, index)
            if il is not None and ic is not None:
                yield [*path, index], (il, ic), False
            yield from _positions(item, [*path, index])


def template_dir_for(template: Template, flow_path: Path) -> str:
    return Path(os.path.relpath(template.path.resolve().parent, flow_path.resolve().parent)).as_posix()


def variables_for(template: Template, values: dict[str, Any], name: str, flow_path: Path) -> dict[str, Any]:
    return {
        **values,
        "instance_name": name,
        "template_name": template.name,
        "template_dir": template_dir_for(template, flow_path),
    }


def render_values(
    template: Template,
    values: dict[str, Any],
    flow_path: Path,
    name: str | None = None,
    *,
    extra_tests: Any = None,
    labels: dict[str, str] | None = None,
    description: str = "",
    values_positions: dict[str, Position] | None = None,
    issues: list[Issue] | None = None,
) -> Rendered:
    """Render a template with values (defaults filled in) for a flow at `flow_path`."""
    values = with_defaults(template, values)
    env = _environment()
    body = copy.deepcopy(template.body)
    errors: list[RenderError] = []
    used: dict[tuple[Any, ...], set[str]] = {}
    meta_node = body.get("metadata")
    if name is None:
        raw_name = meta_node.get("name") if isinstance(meta_node, CommentedMap) else None
        name = template.name
        if isinstance(raw_name, str):
            try:
                rendered_name, _ = render_string(env, raw_name, variables_for(template, values, template.name, flow_path), ["metadata", "name"])
                name = str(rendered_name)
            except RenderError:
                pass
    variables = variables_for(template, values, name, flow_path)
    render_node(env, body, variables, [], errors, used)
    all_issues: list[Issue] = list(issues or [])
    for err in errors:
        line, col = locate(template.body, err.path)
        if err.line_in_value and line is not None:
            node = template.body
            for part in err.path[:-1]:
                node = node[part]
            raw = node[err.path[-1]]
            if isinstance(raw, LiteralScalarString | FoldedScalarString):
                line = line + err.line_in_value
        all_issues.append(Issue(Position(str(template.path), line, col), err.message + f" (rendering for {name})"))
    document = CommentedMap()
    document["apiVersion"] = API_VERSION
    document["kind"] = "Flow"
    for key, value in body.items():
        document[key] = value
    if hasattr(body, "ca") and body.ca.items:
        document.ca.items.update(body.ca.items)
    meta_out = document.get("metadata")
    if not isinstance(meta_out, CommentedMap):
        meta_out = CommentedMap()
        document.insert(2, "metadata", meta_out)
    meta_out["name"] = name
    if description:
        meta_out["description"] = description
    if labels:
        merged = CommentedMap()
        merged.fa.set_flow_style()
        for k, v in (to_plain(meta_out.get("labels")) or {}).items():
            merged[k] = v
        merged.update(labels)
        meta_out["labels"] = merged
    if extra_tests:
        tests = document.get("tests")
        if not isinstance(tests, CommentedSeq):
            tests = CommentedSeq()
            document["tests"] = tests
        for case in extra_tests:
            tests.append(copy.deepcopy(case))
    document.yaml_set_start_comment(
        f"Rendered from template {template.label} ({template.path.name}); "
        "edit the instance or the template, not this output"
    )
    text = _drop_trailing_comments(dump_text(document))
    return Rendered(
        template=template,
        path=flow_path,
        name=name,
        values=values,
        document=document,
        text=text,
        issues=all_issues,
        values_positions=values_positions or {},
        used=used,
    )


def _drop_trailing_comments(text: str) -> str:
    """Comments after the flow body belong to the template's next section (skeleton)."""
    lines = text.splitlines(keepends=True)
    while lines and (lines[-1].lstrip().startswith("#") or not lines[-1].strip()):
        lines.pop()
    return "".join(lines)


def _values_positions(instance: FlowInstance) -> dict[str, Position]:
    positions: dict[str, Position] = {}
    node = instance.values_node
    if isinstance(node, CommentedMap):
        for key in node:
            positions[str(key)] = Position(str(instance.path), *value_position(node, key))
    meta_node = instance.document.get("metadata")
    if isinstance(meta_node, CommentedMap):
        positions["__name__"] = Position(str(instance.path), *value_position(meta_node, "name"))
    return positions


def value_issues(instance: FlowInstance, template: Template) -> list[Issue]:
    """The values checked against the parameters, at the instance's lines."""
    issues = IssueList(str(instance.path))
    node = instance.values_node
    for path, message, at_key in check_values(template, instance.values):
        if node is None:
            issues.add(message, *(key_position(instance.document, "template")))
        elif not path:
            issues.add(message, *key_position(instance.document, "values"))
        else:
            issues.add(message, *locate(node, path, at_key=at_key))
    return sorted(issues.issues, key=lambda i: (i.position.line or 0, i.position.column or 0))


def render_instance(instance: FlowInstance, template: Template | None = None) -> Rendered:
    """Render an instance; `template` overrides the one it names (a version being edited).
    Values problems are in `Rendered.issues` at the instance's lines."""
    if template is None:
        try:
            template = find_template(instance.template.name, instance.template.version, instance.path.resolve().parent)
        except FlowyardError as exc:
            raise DefinitionError([Issue(Position(str(instance.path), *value_position(instance.document, "template")), str(exc))]) from exc
    issues = value_issues(instance, template)
    if instance.template.version is not None and template.version != instance.template.version:
        issues.append(Issue(Position(str(instance.path), *value_position(instance.document, "template")), f"the instance pins {instance.template} but the template is version {template.version}", "warning"))
    rendered = render_values(
        template,
        instance.values,
        instance.path,
        instance.name,
        extra_tests=instance.document.get("tests"),
        labels=instance.labels,
        description=instance.description,
        values_positions=_values_positions(instance),
        issues=issues,
    )
    rendered.instance = instance
    return rendered


def load_instance(path: Path, text: str | None = None) -> Flow:
    """`load_flow` for a FlowInstance: the rendered, validated flow."""
    instance = load_instance_file(path, text)
    rendered = render_instance(instance)
    flow = rendered.flow()
    return flow


# -- checkers for `flowyard validate` -----------------------------------------------------


def check_instance(path: Path, text: str) -> list[Issue]:
    instance, issues = parse_instance(path, text)
    if instance is None:
        return issues.issues
    try:
        rendered = render_instance(instance)
    except DefinitionError as exc:
        return exc.issues
    if not rendered.ok:
        return rendered.issues
    return rendered.issues + rendered.check()


def skeleton_paths(template: Template, values: dict[str, Any], name: str) -> list[str]:
    """The relative paths the skeleton would write (rendered), for filtering issues."""
    if template.skeleton is None:
        return []
    env = _environment()
    variables = {**with_defaults(template, values), "instance_name": name, "template_name": template.name, "template_dir": "."}
    paths = []
    for key in template.skeleton:
        try:
            value, _ = render_string(env, str(key), variables, [key])
            paths.append(str(value))
        except RenderError:
            continue
    return paths


def syntax_issues(template: Template) -> list[Issue]:
    """Jinja syntax errors in strings that name a parameter, whatever the values."""
    env = _environment()
    names = [*template.properties, *BUILTIN_NAMES]
    found: list[Issue] = []

    def walk(node: Any, path: list[Any]) -> None:
        if isinstance(node, CommentedMap):
            for key in node:
                walk(node[key], [*path, key])
        elif isinstance(node, CommentedSeq):
            for index, item in enumerate(node):
                walk(item, [*path, index])
        elif isinstance(node, str) and ("{{" in node or "{%" in node):
            if not any(re.search(r"[{%]\s*[-+]?\s*(raw\b|" + re.escape(n) + r"\b)", node) for n in names):
                return
            try:
                env.parse(str(node))
            except TemplateSyntaxError as exc:
                line, col = locate(template.body, path)
                if line is not None and isinstance(node, LiteralScalarString | FoldedScalarString):
                    line, col = line + exc.lineno, col
                found.append(Issue(Position(str(template.path), line, col), f"template syntax: {exc.message}"))

    walk(template.body, [])
    return found


def check_template(path: Path, text: str) -> list[Issue]:
    """Structure, parameter schema, Jinja syntax; then, when every parameter has a default
    or an example, the flow rendered with those values (files the skeleton creates at
    onboarding are not expected to exist)."""
    template, issues = parse_template(path, text)
    if template is None:
        return issues.issues
    result = list(issues.issues)
    syntax = syntax_issues(template)
    if syntax:
        return result + syntax
    values = template.example_values()
    if values is None:
        missing = [f.name for f in template.fields() if f.required and not f.examples and not f.has_default]
        result.append(Issue(Position(str(path), *key_position(template.document, "parameters")), f"parameters {', '.join(missing)} have no default or examples; the rendered flow is checked only through its instances", "warning"))
        return result
    problems = check_values(template, values)
    for p, message, _ in problems:
        result.append(Issue(Position(str(path), *locate(template.document.get("parameters"), p[:1])), f"the examples or defaults break the parameters: {message}"))
    if problems:
        return result
    try:
        return result + _check_in_scratch(template, values)
    except OSError:  # a read-only checkout: check in place, ignoring the skeleton's files
        pass
    instance_path = path.resolve().parent.parent / "__template-check__.yaml"
    rendered = render_values(template, values, instance_path)
    if not rendered.ok:
        return result + rendered.issues
    provided = skeleton_paths(template, values, rendered.name)
    stems = {Path(p).stem for p in provided} | set(provided)
    for issue in rendered.check():
        if any(f"'{s}'" in issue.message for s in stems):
            continue  # a file the skeleton writes at onboarding
        result.append(issue)
    return result


def _check_in_scratch(template: Template, values: dict[str, Any]) -> list[Issue]:
    """Render with the example values as if onboarded (see `onboarding.scratch_onboarding`)."""
    from .onboarding import OnboardingError, scratch_onboarding

    try:
        with scratch_onboarding(template, values, template.path.resolve().parent.parent) as rendered:
            return rendered.issues if not rendered.ok else rendered.check()
    except OnboardingError as exc:
        return [Issue(Position(str(template.path)), problem) for problem in exc.problems]


class TemplateKind(DefinitionKind):
    """`kind: Template`: an onboarding template."""

    kind = "Template"
    model = TemplateDefinition
    order = 2

    @classmethod
    def load(cls, path: Path, text: str) -> Template:
        return load_template(path, text)

    @classmethod
    def check(cls, path: Path, text: str) -> list[Issue]:
        return check_template(path, text)


class InstanceKind(DefinitionKind):
    """`kind: FlowInstance`: a flow made from a template; it stands for the flow it renders to."""

    kind = "FlowInstance"
    model = FlowInstanceDefinition
    order = 1

    @classmethod
    def load(cls, path: Path, text: str) -> FlowInstance:
        return load_instance_file(path, text)

    @classmethod
    def check(cls, path: Path, text: str) -> list[Issue]:
        return check_instance(path, text)

    @classmethod
    def flow(cls, path: Path, text: str) -> Flow:
        return load_instance(path, text)
