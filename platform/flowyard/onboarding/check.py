"""Checking templates and instances for `flowyard validate`, and their definition kinds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import (
    FoldedScalarString,
    LiteralScalarString,
)

from ..definitions.kinds import DefinitionKind
from ..errors import DefinitionError, Issue, Position
from ..flow import Flow
from ..yamlio import (
    key_position,
    locate,
)
from .render import (
    RenderError,
    load_instance,
    load_instance_flows,
    render_instance,
    render_instance_flows,
    render_string,
    render_values_flows,
)
from .template import (
    BUILTIN_NAMES,
    FlowInstance,
    FlowInstanceDefinition,
    Template,
    TemplateDefinition,
    check_values,
    environment,
    find_template,
    load_instance_file,
    load_template,
    parse_instance,
    parse_template,
    with_defaults,
)

# -- checkers for `flowyard validate` -----------------------------------------------------


def check_instance(path: Path, text: str) -> list[Issue]:
    instance, issues = parse_instance(path, text)
    if instance is None:
        return issues.issues
    try:
        flows = [render_instance(instance)] if instance.flow is not None else render_instance_flows(instance)
    except DefinitionError as exc:
        return exc.issues
    found: list[Issue] = []
    for rendered in flows:
        found += rendered.issues if not rendered.ok else rendered.issues + rendered.check()
    return found


def skeleton_paths(template: Template, values: dict[str, Any], name: str) -> list[str]:
    """The relative paths the skeleton would write (rendered), for filtering issues."""
    if template.skeleton is None:
        return []
    env = environment()
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
    env = environment()
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
    for rendered in render_values_flows(template, values, instance_path):
        if not rendered.ok:
            result += rendered.issues
            continue
        provided = skeleton_paths(template, values, rendered.name)
        stems = {Path(p).stem for p in provided} | set(provided)
        for issue in rendered.check():
            if any(f"'{s}'" in issue.message for s in stems):
                continue  # a file the skeleton writes at onboarding
            result.append(issue)
    return result


def _check_in_scratch(template: Template, values: dict[str, Any]) -> list[Issue]:
    """Render with the example values as if onboarded (see `onboarding.scratch_onboarding`),
    every flow of the template."""
    from .onboard import OnboardingError, scratch_onboarding_flows

    try:
        with scratch_onboarding_flows(template, values, template.path.resolve().parent.parent) as flows:
            found: list[Issue] = []
            for rendered in flows:
                found += rendered.issues if not rendered.ok else rendered.check()
            return found
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
    runs = True

    @classmethod
    def load(cls, path: Path, text: str) -> FlowInstance:
        return load_instance_file(path, text)

    @classmethod
    def check(cls, path: Path, text: str) -> list[Issue]:
        return check_instance(path, text)

    @classmethod
    def flow(cls, path: Path, text: str) -> Flow:
        return load_instance(path, text)

    @classmethod
    def flows(cls, path: Path, text: str) -> list[Flow]:
        return load_instance_flows(path, text)

    @classmethod
    def flow_document(cls, path: Path, text: str, rev: str | None) -> Any:
        """The rendered flow, with the template as it was at `rev` when git has it there."""
        from ..semdiff import git_show

        instance = load_instance_file(path, text)
        template = find_template(instance.template.name, instance.template.version, path.resolve().parent)
        if rev is not None:
            old = git_show(rev, template.path)
            if old is not None:
                template = load_template(template.path, old)
        rendered = render_instance(instance, template)
        if not rendered.ok or rendered.document is None:
            raise DefinitionError(rendered.issues)
        return rendered.document
