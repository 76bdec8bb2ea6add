"""Onboarding: a new plant or supplier instance from a template and values.

`onboard(template, values, directory)` checks the values against the template's
parameters, writes the instance file (values in the template's parameter order, only the
values given, so defaults can evolve with the template) and the files of the template's
`skeleton:` (per-plant code tables, test inputs and expected outputs) beside it, then
loads the rendered flow. If that fails, everything written is removed again: an
onboarding either produces a valid instance or nothing.

Skeleton entries map a path relative to the instance's folder (may use parameters) to
its content: a string (rendered), a mapping (rendered and written as YAML) or
`{from: FILE}`, a file beside the template (rendered when it ends in `.j2`, else copied).
Existing files are never overwritten: a table a plant already completed stays as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from ..errors import DefinitionError, FlowyardError, Issue, Position, did_you_mean
from ..flow import API_VERSION
from ..sandbox import FlowEnvironment, RenderLimitError
from ..secrets import redactor
from ..testing import CaseResult, run_tests
from ..yamlio import YamlSyntaxError, dump_text, load_text, locate, to_plain
from .render import (
    Rendered,
    RenderError,
    default_instance_name,
    render_instance_flows,
    render_node,
    render_string,
    render_values_flows,
)
from .template import (
    Field,
    Template,
    check_values,
    environment,
    find_template,
    load_instance_file,
    load_template,
    with_defaults,
)


class OnboardingError(FlowyardError):
    """The values or the template do not allow an instance; every problem is listed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Onboarded:
    instance_path: Path
    instance_text: str
    rendered: Rendered
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    files: dict[Path, bytes] = field(default_factory=dict)  # what the skeleton gives
    flows: list[Rendered] = field(default_factory=list)  # every flow it renders to (`rendered` is the first)


# -- values from the command line ----------------------------------------------------


def _types(spec: Any) -> list[str]:
    kind = spec.get("type", "string") if isinstance(spec, dict) else "string"
    return [str(k) for k in kind] if isinstance(kind, list) else [str(kind)]


def coerce(spec: Any, text: str) -> Any:
    """A `--set` text as the parameter's JSON type (the first type it parses as)."""
    for kind in _types(spec):
        if kind == "integer":
            try:
                return int(text)
            except ValueError:
                continue
        if kind == "number":
            try:
                number = float(text)
            except ValueError:
                continue
            return int(number) if number.is_integer() and "." not in text else number
        if kind == "boolean" and text.lower() in ("true", "false", "yes", "no", "1", "0"):
            return text.lower() in ("true", "yes", "1")
        if kind == "null" and text.lower() in ("null", "none", ""):
            return None
        if kind in ("array", "object"):
            try:
                value = json.loads(text)
            except ValueError:
                if kind == "array":
                    return [part.strip() for part in text.split(",") if part.strip()]
                continue
            return value
        if kind == "string":
            return text
    return text


def parse_sets(template: Template, sets: list[str]) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    problems: list[str] = []
    names = list(template.properties)
    for item in sets:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"--set {item!r}: write KEY=VALUE")
            continue
        if key not in template.properties:
            problems.append(f"--set {key}: unknown parameter" + did_you_mean(key, names) + f"; {template.label} takes: {', '.join(names)}")
            continue
        values[key] = coerce(template.properties[key], text)
    return values, problems


def read_values_file(path: Path) -> tuple[dict[str, Any], Any]:
    text = path.read_text(encoding="utf-8")
    try:
        document = load_text(text, str(path))
    except YamlSyntaxError as exc:
        raise DefinitionError([exc.issue]) from exc
    if document is None:
        return {}, None
    if isinstance(document, dict) and document.get("kind") == "FlowInstance":
        document = document.get("values") or {}
    if not isinstance(document, dict):
        raise DefinitionError([Issue(Position(str(path), 1, 1), "a values file is a mapping of parameter: value")])
    return dict(to_plain(document)), document


# -- writing --------------------------------------------------------------------------


_AMBIGUOUS = re.compile(r"^([-+0-9.:_eE]+|y|n|yes|no|on|off|true|false|null|~)$", re.I)


def _safe_scalar(value: Any) -> Any:
    """Quote strings other YAML readers (YAML 1.1) would take for numbers, times or
    booleans (`05:30`, `+01:00`, `no`)."""
    if isinstance(value, str) and (_AMBIGUOUS.match(value) or value == "" or value.startswith("?")):
        return DoubleQuotedScalarString(value)
    return value


def instance_document(template: Template, name: str, values: dict[str, Any], pin: bool = False) -> CommentedMap:
    document = CommentedMap()
    document["apiVersion"] = API_VERSION
    document["kind"] = "FlowInstance"
    meta = CommentedMap()
    meta["name"] = name
    document["metadata"] = meta
    document["template"] = template.label if pin else template.name
    ordered = CommentedMap()
    for key in [*template.properties, *values]:
        if key in values and key not in ordered:
            ordered[key] = _safe_scalar(values[key])
    document["values"] = ordered
    for key, f in zip(template.properties, template.fields(), strict=True):
        if key in ordered and f.description:
            ordered.yaml_set_comment_before_after_key(key, before=f.description, indent=2)
    document.yaml_set_start_comment(f"Onboarded from template {template.label} ({template.path.name}) with `flowyard onboard`.")
    return document


def _render_text(env: FlowEnvironment, text: str, variables: dict[str, Any]) -> bytes:
    template = env.from_string(text)
    return env.render_limited(lambda: template.generate(**variables)).encode("utf-8")


def skeleton_files(template: Template, values: dict[str, Any], name: str, directory: Path) -> dict[Path, bytes]:
    """The files the template's skeleton gives for these values, by path."""
    result: dict[Path, bytes] = {}
    if template.skeleton is None:
        return result
    env = environment()
    variables = {**with_defaults(template, values), "instance_name": name, "template_name": template.name, "template_dir": "."}
    problems: list[str] = []
    root = directory.resolve()
    for key, content in template.skeleton.items():
        where = f"{template.path}:{locate(template.skeleton, [key], at_key=True)[0]}"
        try:
            rel, _ = render_string(env, str(key), variables, [key])
        except RenderError as exc:
            problems.append(f"{where}: skeleton path: {exc.message}")
            continue
        target = (root / str(rel)).resolve()
        if not target.is_relative_to(root) or Path(str(rel)).is_absolute():
            problems.append(f"{where}: skeleton path {rel!r} leaves the instance's folder")
            continue
        try:
            if isinstance(content, dict) and set(content) == {"from"}:
                source = (template.path.parent / str(content["from"])).resolve()
                if not source.is_file():
                    problems.append(f"{where}: skeleton file {content['from']!r} not found beside the template")
                    continue
                if source.suffix == ".j2":
                    data = _render_text(env, source.read_text(encoding="utf-8"), variables)
                else:
                    data = source.read_bytes()
            elif isinstance(content, str):
                data = _render_text(env, content, variables)
            else:
                errors: list[RenderError] = []
                node = render_node(env, copy.deepcopy(content), variables, [], errors, {})
                if errors:
                    problems.extend(f"{where}: {e.message}" for e in errors)
                    continue
                data = dump_text(node).encode("utf-8")
        except (RenderLimitError, ValueError, TypeError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        except Exception as exc:  # Jinja errors in skeleton files
            problems.append(f"{where}: rendering {key!r} failed: {exc}")
            continue
        result[target] = data
    if problems:
        raise OnboardingError(problems)
    return result


def _name_for(template: Template, values: dict[str, Any], directory: Path) -> str:
    return default_instance_name(template, values, directory / "instance.yaml")


def onboard(
    template: Template,
    values: dict[str, Any],
    directory: Path,
    name: str | None = None,
    *,
    write: bool = True,
    pin: bool = False,
) -> Onboarded:
    """Check the values, write the instance and its skeleton files, load the flow.

    Raises OnboardingError (values, names, skeleton) or DefinitionError (the rendered
    flow does not load; nothing is left written)."""
    problems = [message for _p, message, _k in check_values(template, values)]
    if problems:
        raise OnboardingError(problems)
    directory = directory.resolve()
    name = name or _name_for(template, values, directory)
    instance_path = directory / f"{name}.yaml"
    if instance_path.exists() and write:
        raise OnboardingError([f"{instance_path} already exists; choose another --name or edit that instance"])
    document = instance_document(template, name, values, pin)
    text = dump_text(document)
    files = skeleton_files(template, values, name, directory)
    flows = render_values_flows(template, values, instance_path, name)
    result = Onboarded(instance_path, text, flows[0], files=files, flows=flows)
    if not write:
        return result
    created_dirs: list[Path] = []
    try:
        for path, data in files.items():
            if path.exists():
                result.kept.append(path)
                continue
            for parent in reversed(path.parents):
                if not parent.exists():
                    parent.mkdir()
                    created_dirs.append(parent)
            path.write_bytes(data)
            result.written.append(path)
        directory.mkdir(parents=True, exist_ok=True)
        instance_path.write_text(text, encoding="utf-8")
        result.written.append(instance_path)
        result.flows = render_instance_flows(load_instance_file(instance_path), template)
        result.rendered = result.flows[0]
        for rendered in result.flows:
            rendered.flow()
            if not rendered.ok:
                raise DefinitionError(rendered.issues)
    except BaseException:
        for path in reversed(result.written):
            path.unlink(missing_ok=True)
        for folder in reversed(created_dirs):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return result


@contextmanager
def scratch_onboarding(template: Template, values: dict[str, Any], base: Path) -> Iterator[Rendered]:
    """The flow as if onboarded, in a scratch folder inside `base` (so shared tables and
    partner profiles above it are found) holding the skeleton's files; removed on exit.
    OnboardingError when the skeleton cannot be rendered. Of a several-flow template,
    the first flow (see `scratch_onboarding_flows`)."""
    with scratch_onboarding_flows(template, values, base) as flows:
        yield flows[0]


@contextmanager
def scratch_onboarding_flows(template: Template, values: dict[str, Any], base: Path) -> Iterator[list[Rendered]]:
    """`scratch_onboarding` giving every flow the template renders to."""
    scratch = Path(tempfile.mkdtemp(prefix=".onboard-preview-", dir=base))
    try:
        instance_path = scratch / "preview.yaml"
        name = default_instance_name(template, values, instance_path)
        for file_path, data in skeleton_files(template, values, name, scratch).items():
            file_path.parent.mkdir(parents=True, exist_ok=True)
            file_path.write_bytes(data)
        yield render_values_flows(template, values, instance_path, name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def try_samples(template: Template, values: dict[str, Any], directory: Path) -> tuple[list[Issue], list[CaseResult]]:
    """The wizard's "try it": run the template's test cases (its sample payloads) on the
    flow these values give, before anything is saved. (issues, results): issues when the
    values or the flow are invalid, else the result of every case."""
    problems = check_values(template, values)
    if problems:
        return [Issue(Position("values"), message) for _p, message, _k in problems], []
    try:
        with scratch_onboarding_flows(template, values, directory.resolve()) as flows:
            issues = [i for rendered in flows if not rendered.ok for i in rendered.issues]
            if issues:
                return issues, []
            loaded = []
            for rendered in flows:
                try:
                    loaded.append(rendered.flow())
                except DefinitionError as exc:
                    issues += exc.issues
            if issues:
                return issues, []
            return [], [result for flow in loaded for result in run_tests(flow)]
    except OnboardingError as exc:
        return [Issue(Position(str(template.path)), p) for p in exc.problems], []


# -- the command ----------------------------------------------------------------------------


def resolve_template(spec: str) -> Template:
    path = Path(spec)
    if path.is_file():
        return load_template(path)
    start = Path("flows").resolve() if Path("flows").is_dir() else Path.cwd()
    name, _, version = spec.partition("@")
    for base in (start, Path.cwd()):
        try:
            return find_template(name, version or None, base)
        except FlowyardError:
            continue
    return find_template(name, version or None, start)


def describe(fields: list[Field]) -> str:
    lines = []
    for f in fields:
        bits = [f.type]
        if f.enum:
            bits.append("one of " + ", ".join(map(str, f.enum)))
        if f.pattern:
            bits.append(f"pattern {f.pattern}")
        if f.format:
            bits.append(f.format)
        bits.append("required" if f.required else f"default {f.default!r}")
        if f.examples:
            bits.append(f"e.g. {f.examples[0]}")
        lines.append(f"  {f.name:<16} {f.description}\n  {'':<16} ({'; '.join(bits)})")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        template = resolve_template(args.template)
    except DefinitionError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 2
    except FlowyardError as exc:
        print(f"flowyard onboard: {exc}", file=sys.stderr)
        return 2
    if args.list:
        print(f"{template.label}: {template.description}\nparameters:\n{describe(template.fields())}")
        return 0
    values: dict[str, Any] = {}
    problems: list[str] = []
    if args.values is not None:
        if not args.values.is_file():
            print(f"flowyard onboard: values file {args.values} not found", file=sys.stderr)
            return 2
        try:
            values, _node = read_values_file(args.values)
        except (OSError, DefinitionError) as exc:
            print(f"flowyard onboard: {exc}", file=sys.stderr)
            return 2
    sets, set_problems = parse_sets(template, args.sets)
    values.update(sets)
    problems.extend(set_problems)
    problems.extend(message for _p, message, _k in check_values(template, values))
    if problems:
        for problem in problems:
            print(f"flowyard onboard: {problem}", file=sys.stderr)
        print(f"parameters of {template.label}:\n{describe(template.fields())}", file=sys.stderr)
        return 1
    directory = args.dir if args.dir is not None else template.path.resolve().parent.parent
    try:
        result = onboard(template, values, directory, args.name, write=not args.dry_run)
    except OnboardingError as exc:
        for problem in exc.problems:
            print(redactor.redact(f"flowyard onboard: {problem}"), file=sys.stderr)
        return 1
    except DefinitionError as exc:
        print("flowyard onboard: the rendered flow is not valid; nothing was written", file=sys.stderr)
        for issue in exc.issues:
            print(redactor.redact(str(issue)), file=sys.stderr)
        return 1
    if args.dry_run:
        print(f"# {result.instance_path} (not written)")
        sys.stdout.write(result.instance_text)
        for path in result.files:
            print(f"# would write {path}", file=sys.stderr)
        for rendered in result.flows or [result.rendered]:
            print(f"# --- the rendered flow {rendered.name}")
            sys.stdout.write(rendered.text)
        return 0
    for path in result.written:
        print(f"wrote {_rel(path)}")
    for path in result.kept:
        print(f"kept {_rel(path)} (already there)")
    print(f"next: flowyard render {_rel(result.instance_path)} ; flowyard test {_rel(result.instance_path)}")
    return 0


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
