"""Rendering a template with values: the flow an instance (or a preview) gives, and
where a problem in it comes from (the template's line, the values used)."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, meta
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)

from ..errors import DefinitionError, FlowyardError, Issue, IssueList, Position
from ..flow import API_VERSION, Flow
from ..loader import FlowLoader
from ..sandbox import FlowEnvironment, RenderLimitError
from ..yamlio import (
    dump_text,
    key_position,
    load_text,
    locate,
    node_start,
    to_plain,
    value_position,
)
from .template import (
    _SINGLE_EXPRESSION,
    FlowInstance,
    Template,
    check_values,
    environment,
    find_template,
    load_instance_file,
    with_defaults,
)

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
    index: int = 0  # which of the template's flows (`flows:`) this is; 0 for `flow:`

    @property
    def body(self) -> CommentedMap:
        """The template's flow body this flow was rendered from."""
        return self.template.bodies[self.index]

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
        tl, tc = locate(self.body, body_path, at_key=at_key) if body_path else node_start(self.body)
        used = self.used.get(tuple(body_path), set())
        if at_key:
            used = set()
        if not used and not at_key and tl is not None and tc is not None and _follows(self.body, body_path):
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
        template_tests = self.body.get("tests")
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
    index: int = 0,
) -> Rendered:
    """Render a template with values (defaults filled in) for a flow at `flow_path`;
    `index`: which of a several-flow template's flows (see `render_values_flows`)."""
    values = with_defaults(template, values)
    env = environment()
    source_body = template.bodies[index]
    body = copy.deepcopy(source_body)
    errors: list[RenderError] = []
    used: dict[tuple[Any, ...], set[str]] = {}
    meta_node = body.get("metadata")
    all_issues: list[Issue] = list(issues or [])
    raw_name = meta_node.get("name") if isinstance(meta_node, CommentedMap) else None
    instance_name: str
    if template.several:
        instance_name = name or template.name
        name = f"{instance_name}-{index + 1}"
        if isinstance(raw_name, str):
            try:
                rendered_name, _ = render_string(env, raw_name, variables_for(template, values, instance_name, flow_path), ["metadata", "name"])
                name = str(rendered_name)
            except RenderError as exc:
                errors.append(exc)
        if not name.startswith(instance_name):
            where = Position(str(template.path), *locate(source_body, ["metadata", "name"]))
            all_issues.append(Issue(where, f"flow name {name!r} does not start with the instance's name {instance_name!r}: "
                                    'name each flow of a template after its instance ("{{ instance_name }}-856")'))
        if isinstance(meta_node, CommentedMap):
            meta_node["name"] = name  # rendered once, above
    else:
        if name is None:
            name = template.name
            if isinstance(raw_name, str):
                try:
                    rendered_name, _ = render_string(env, raw_name, variables_for(template, values, template.name, flow_path), ["metadata", "name"])
                    name = str(rendered_name)
                except RenderError:
                    pass
        instance_name = name
    variables = variables_for(template, values, instance_name, flow_path)
    render_node(env, body, variables, [], errors, used)
    for err in errors:
        line, col = locate(source_body, err.path)
        if err.line_in_value and line is not None:
            node = source_body
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
    if description and not (template.several and meta_out.get("description")):
        meta_out["description"] = description
    if labels:
        merged = CommentedMap()
        merged.fa.set_flow_style()
        for k, v in (to_plain(meta_out.get("labels")) or {}).items():
            merged[k] = v
        merged.update(labels)
        meta_out["labels"] = merged
    if extra_tests and index == 0:  # an instance's own tests: of its (first) flow
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
        index=index,
    )


def default_instance_name(template: Template, values: dict[str, Any], flow_path: Path) -> str:
    """The name an instance gets when none is given: the rendered flow's name; of a
    several-flow template, its `metadata.instance_name` rendered (else the template's name)."""
    if not template.several:
        return render_values(template, values, flow_path).name
    meta = template.document.get("metadata")
    raw = meta.get("instance_name") if isinstance(meta, CommentedMap) else None
    if isinstance(raw, str):
        variables = variables_for(template, with_defaults(template, values), template.name, flow_path)
        try:
            value, _ = render_string(environment(), raw, variables, ["metadata", "instance_name"])
            return str(value)
        except RenderError:
            pass
    return template.name


def render_values_flows(template: Template, values: dict[str, Any], flow_path: Path, name: str | None = None, **options: Any) -> list[Rendered]:
    """Every flow a template renders to with these values: one for a `flow:` template,
    one per entry of `flows:` (each named after the instance, `name`); the options are
    `render_values`'. A value problem is reported once, with the first flow."""
    issues = options.pop("issues", None)
    results = []
    for index in range(len(template.bodies)):
        results.append(render_values(template, values, flow_path, name, issues=issues if index == 0 else None, index=index, **options))
    names = [r.name for r in results]
    for index, rendered in enumerate(results):
        if rendered.name in names[:index]:
            where = Position(str(template.path), *locate(template.bodies[index], ["metadata", "name"]))
            rendered.issues.append(Issue(where, f"two flows of template {template.label} are named {rendered.name!r}; give each its own name"))
    return results


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
    Values problems are in `Rendered.issues` at the instance's lines. Of a template giving
    several flows: the one the instance selects (`flow:`), else the first; see
    `render_instance_flows` for all of them."""
    flows = render_instance_flows(instance, template)
    if instance.flow is not None:
        for rendered in flows:
            if rendered.name == instance.flow:
                return rendered
        first = flows[0]
        where = Position(str(instance.path), *value_position(instance.document, "flow"))
        first.issues.append(Issue(where, f"template {first.template.label} gives no flow named {instance.flow!r}; it gives: {', '.join(r.name for r in flows)}"))
        return first
    return flows[0]


def render_instance_flows(instance: FlowInstance, template: Template | None = None) -> list[Rendered]:
    """Every flow an instance renders to (one, or one per flow of a `flows:` template),
    in the template's order, each with its issues."""
    if template is None:
        try:
            template = find_template(instance.template.name, instance.template.version, instance.path.resolve().parent)
        except FlowyardError as exc:
            raise DefinitionError([Issue(Position(str(instance.path), *value_position(instance.document, "template")), str(exc))]) from exc
    issues = value_issues(instance, template)
    if instance.template.version is not None and template.version != instance.template.version:
        issues.append(Issue(Position(str(instance.path), *value_position(instance.document, "template")), f"the instance pins {instance.template} but the template is version {template.version}", "warning"))
    flows = render_values_flows(
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
    for rendered in flows:
        rendered.instance = instance
    return flows


def load_instance(path: Path, text: str | None = None) -> Flow:
    """`load_flow` for a FlowInstance: the rendered, validated flow. An instance whose
    template gives several flows stands for one only when it selects it (`flow:`, which
    deploy writes into each flow's snapshot); else DefinitionError naming them."""
    instance = load_instance_file(path, text)
    if instance.flow is None:
        flows = render_instance_flows(instance)
        if len(flows) > 1:
            where = Position(str(path), *value_position(instance.document, "template"))
            raise DefinitionError([Issue(where, f"template {flows[0].template.label} gives {len(flows)} flows "
                                         f"({', '.join(r.name for r in flows)}): this file stands for all of them, "
                                         "so test, validate and deploy it whole (flowyard run --flow NAME runs one)")])
        return flows[0].flow()
    return render_instance(instance).flow()


def load_instance_flows(path: Path, text: str | None = None) -> list[Flow]:
    """Every flow an instance stands for (the one it selects, or all its template gives),
    loaded and validated; DefinitionError with every flow's problems."""
    instance = load_instance_file(path, text)
    if instance.flow is not None:
        return [render_instance(instance).flow()]
    flows: list[Flow] = []
    problems: list[Issue] = []
    for rendered in render_instance_flows(instance):
        try:
            flows.append(rendered.flow())
        except DefinitionError as exc:
            problems += exc.issues
    if problems:
        raise DefinitionError(problems)
    return flows


def select_flow(text: str, name: str) -> str:
    """An instance file's text standing for one of its flows: its own text with
    `flow: NAME` added at the end (what a deployment snapshot of that flow holds)."""
    if not text.endswith("\n"):
        text += "\n"
    return text + f"flow: {name}\n"
