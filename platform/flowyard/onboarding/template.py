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
- `flowyard.onboarding.onboard.onboard(...)` writes a new instance (see that module);
  `flowyard.onboarding.onboard.try_samples(template, values, directory)` runs the template's test
  cases on the flow the values give, before anything is saved.
- `flowyard.onboarding.impact.template_change_impact(...)` shows how a template change renders for every
  instance and runs their tests (see that module).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import pydantic
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import SchemaError, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ..definitions.grammar import files_of_kind, parse_definition, unknown_sections
from ..errors import DefinitionError, FlowyardError, Issue, IssueList, Position, did_you_mean
from ..flow import API_VERSION, NAME_PATTERN, TOP_LEVEL_KEYS, ApiVersion, FlowTest, Metadata
from ..options import Options
from ..sandbox import FlowEnvironment, make_environment
from ..step import FlowContext
from ..tables import TABLE_SUFFIXES, Table, load_table
from ..yamlio import (
    key_position,
    locate,
    node_start,
    to_plain,
    value_position,
)

BUILTIN_NAMES = ("instance_name", "template_name", "template_dir")
RESERVED_NAMES = ("data", "message", "key", "ext")  # the runtime's template variables
_SINGLE_EXPRESSION = re.compile(r"^\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}$", re.S)


def environment() -> FlowEnvironment:
    """The sandbox templates render in (strict: an unknown name is an error)."""
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
    instance_name: str | None = pydantic.Field(
        None, description='of a template giving several flows (`flows:`): an instance\'s default name, e.g. "{{ plant | lower }}-{{ partner }}"'
    )


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
    budget: dict[str, Any] = pydantic.Field(default_factory=dict, description="time and memory a message may spend in the steps, as in a flow")


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
    flow: TemplateFlowBody | None = pydantic.Field(None, description="the flow an instance renders to (or give `flows:`)")
    flows: list[TemplateFlowBody] = pydantic.Field(
        default_factory=list,
        description="several flows an instance renders to (a supplier's inbound 856 and 810, its outbound 850), "
        "instead of `flow:`; each names itself from the instance: `metadata.name: \"{{ instance_name }}-856\"`",
    )
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
    flow: str | None = pydantic.Field(
        None,
        description="of a template giving several flows, the one this file stands for (deploy writes it into each "
        "flow's snapshot; leave it out: an instance stands for every flow its template gives)",
    )


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
    body: CommentedMap  # the flow body (metadata, source, steps, targets, tests ...); the first of `bodies`
    skeleton: CommentedMap | None
    text: str
    bodies: list[CommentedMap] = field(default_factory=list)  # every flow body (`flows:`, or `flow:` alone)
    body_paths: list[list[Any]] = field(default_factory=list)  # where each body is in the document

    def __post_init__(self) -> None:
        if not self.bodies:
            self.bodies = [self.body]
            self.body_paths = [["flow"]]

    @property
    def several(self) -> bool:
        """The template gives several flows (`flows:`)."""
        return "flows" in self.document

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
    flow: str | None = None  # the one flow of a several-flow template this file stands for

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
    unknown_sections(document, TEMPLATE_KEYS, issues)
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
    bodies, body_paths = _bodies(document, issues)
    body = bodies[0] if bodies else None
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
        bodies=bodies,
        body_paths=body_paths,
    )
    return template, issues


def _bodies(document: CommentedMap, issues: IssueList) -> tuple[list[CommentedMap], list[list[Any]]]:
    """The flow bodies: `flow:` (one) or `flows:` (a list of them), not both."""
    shape = "a flow body (metadata, source, steps, targets, tests)"
    if "flow" in document and "flows" in document:
        issues.add("give either flow: (one flow) or flows: (a list of flows), not both", *key_position(document, "flows"))
        return [], []
    if "flows" in document:
        node = document.get("flows")
        if not isinstance(node, CommentedSeq) or not node:
            issues.add(f"flows must be a list of at least one flow body, each {shape}", *value_position(document, "flows"))
            return [], []
        bodies: list[CommentedMap] = []
        for index, item in enumerate(node):
            if not isinstance(item, CommentedMap):
                issues.add(f"flows[{index}] must be a mapping: {shape}", *value_position(node, index))
                continue
            meta = item.get("metadata")
            if not isinstance(meta, CommentedMap) or not isinstance(meta.get("name"), str):
                issues.add(
                    f"flows[{index}] needs metadata.name, naming the flow after its instance "
                    '(name: "{{ instance_name }}-856"): an instance gives several flows',
                    *value_position(node, index),
                )
                continue
            bodies.append(item)
        return bodies, [["flows", i] for i in range(len(bodies))]
    body = document.get("flow")
    if not isinstance(body, CommentedMap):
        issues.add(f"flow must be a mapping: {shape} (or give flows:, a list of them)", *(value_position(document, "flow") if "flow" in document else (1, 1)))
        return [], []
    return [body], [["flow"]]


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
    unknown_sections(document, INSTANCE_KEYS, issues)
    meta_node = _metadata(document, issues)
    ref = _template_ref(document.get("template"), document, issues)
    values = document.get("values")
    if values is not None and not isinstance(values, CommentedMap):
        issues.add("values must be a mapping of parameter: value", *value_position(document, "values"))
    tests = document.get("tests")
    if tests is not None and not isinstance(tests, CommentedSeq):
        issues.add("tests must be a list of cases with name, input and expect", *value_position(document, "tests"))
    selected = document.get("flow")
    if selected is not None and not (isinstance(selected, str) and re.match(NAME_PATTERN, selected)):
        issues.add("flow must name one of the flows the template gives (lower-case letters, digits and dashes)", *value_position(document, "flow"))
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
        flow=str(document["flow"]) if document.get("flow") is not None else None,
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


def code_table(template: Template, name: str) -> Table | None:
    """The code table `name` (tables/NAME.csv|yaml) beside the template's folder or above
    it, or None when there is none or it does not load."""
    path = FlowContext(flow_file=template.path).find_shared("tables", name, TABLE_SUFFIXES)
    if path is None:
        return None
    try:
        return load_table(path)
    except (DefinitionError, OSError, UnicodeDecodeError):
        return None


def table_keyword(template: Template) -> Any:
    """`x-table: NAME` on a parameter: its value must be a code of that code table (a
    plant's shop-floor code in plant-codes, say), checked when the instance is written
    and validated, naming the table and the closest codes."""

    def check(validator: Any, name: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if not isinstance(instance, str | int):
            return
        table = code_table(template, str(name))
        if table is None:
            yield ValidationError(f"the code table {name!r} it must be a code of was not found (tables/{name}.csv or .yaml)")
            return
        if str(instance) not in table.rows:
            close = difflib.get_close_matches(str(instance), list(table.rows), n=3, cutoff=0.5)
            hint = f"; close: {', '.join(map(repr, close))}" if close else ""
            yield ValidationError(f"{instance!r} is not a code in table {name!r} ({table.path.name}){hint}")

    return check


def check_values(template: Template, values: dict[str, Any]) -> list[tuple[list[Any], str, bool]]:
    """Every way the values break the parameters: (path, message, points at a key)."""
    validator = validators.extend(Validator, {"x-table": table_keyword(template)})(template.schema, format_checker=FORMATS)
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
        elif error.validator == "x-table":
            message = error.message
        help_text = template.properties.get(str(path[0]), {}).get("description", "") if path else ""
        problems.append((path, f"parameter {name!r}: {message}" + (f" ({help_text})" if help_text else ""), False))
    return problems


def with_defaults(template: Template, values: dict[str, Any]) -> dict[str, Any]:
    merged = template.defaults()
    merged.update(values)
    return merged
