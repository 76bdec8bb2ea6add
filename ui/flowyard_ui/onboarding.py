"""The onboarding wizard's work (`/onboard`): the templates of the flows folder, the form a
template's parameters give, the values read back from it and checked field by field, the
preview (instance, rendered flows, diagrams, skeleton files), trying the template's
samples step by step, running the instance's tests, and saving it all as a draft.

Everything goes through `flowyard.onboarding` (the code `flowyard onboard` runs): values
are checked by `check_values`, the files come from `onboard()`, which writes the instance
and its skeleton files all or nothing, and the saved instance is a draft like any edited
flow (the changes page lists it; a deployer deploys it through the gate). A template may
render several flows: whatever the rendering gives is shown, each in turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowyard.errors import DefinitionError, FlowyardError, Issue
from flowyard.onboarding.onboard import OnboardingError, coerce, onboard, scratch_onboarding_flows, try_samples
from flowyard.onboarding.render import default_instance_name, render_values_flows
from flowyard.onboarding.template import Template, check_values, code_table, list_templates
from flowyard.secrets import redactor
from flowyard.testing import CaseResult

from . import audit, diagram, playground
from .auth import CurrentUser
from .state import UiState

SECRET_REF = re.compile(r"^\$\{secret:[A-Za-z0-9_.-]+\}$")
SECRET_NAMES = ("_secret", "_token", "_password", "_key")
MAX_VALUE = 2000


# -- the templates ---------------------------------------------------------------------


def templates_dir(ui: UiState) -> Path:
    return ui.flows_dir / "templates"


def key_of(ui: UiState, template: Template) -> str:
    """The template's name in URLs: its file under templates/, without `.yaml`."""
    rel = template.path.resolve().relative_to(templates_dir(ui).resolve()).as_posix()
    return rel.rsplit(".", 1)[0]


def all_templates(ui: UiState) -> list[Template]:
    return list_templates(templates_dir(ui))


def find(ui: UiState, key: str) -> Template | None:
    return next((t for t in all_templates(ui) if key_of(ui, t) == key), None)


def templates_dir_of(template: Template) -> Path:
    return template.path.parent.parent


def _bodies(template: Template) -> list[Any]:
    """The flow bodies a template gives (one, or a `flows:` list)."""
    many = getattr(template, "flows", None) or template.document.get("flows")
    if isinstance(many, list) and many:
        return [b.get("flow", b) if isinstance(b, dict) else b for b in many]
    return [template.body]


@dataclass
class Creates:
    """What onboarding with a template makes, from the template itself."""

    flows: list[str]
    examples: list[str]  # the flows' names for the template's example values, when it has them
    tables: list[str]
    partners: list[str]
    tests: list[str]
    files: int


def creates(template: Template) -> Creates:
    flows, tests = [], []
    for body in _bodies(template):
        meta = body.get("metadata") if isinstance(body, dict) else None
        flows.append(str(meta.get("name")) if isinstance(meta, dict) and meta.get("name") else template.name)
        for case in (body.get("tests") or []) if isinstance(body, dict) else []:
            if isinstance(case, dict) and case.get("name"):
                tests.append(str(case["name"]))
    keys = [str(k) for k in (template.skeleton or {})]
    examples: list[str] = []
    example = template.example_values()
    if example is not None:
        try:
            where = templates_dir_of(template) / "x.yaml"
            name = default_instance_name(template, example, where)
            examples = [r.name for r in render_values_flows(template, example, where, name)]
        except (FlowyardError, ValueError, TypeError):
            examples = []
    return Creates(
        flows=flows,
        examples=examples,
        tables=[k for k in keys if k.startswith("tables/")],
        partners=[k for k in keys if k.startswith("partners/")],
        tests=tests,
        files=len(keys),
    )


# -- the form --------------------------------------------------------------------------


@dataclass
class FieldView:
    """One input of the form: a parameter, with how to ask for it."""

    name: str
    label: str
    help: str
    required: bool
    input: str  # text | number | select | secret
    value: str
    options: list[tuple[str, str]] = field(default_factory=list)  # (value, shown) for a select
    pattern: str | None = None  # for the HTML pattern attribute
    table: str | None = None  # x-table: the code table the value must be a code of
    placeholder: str = ""
    type: str = "string"


def is_secret(name: str, spec: dict[str, Any]) -> bool:
    return bool(spec.get("x-secret")) or spec.get("format") in ("secret", "secret-ref") or name.endswith(SECRET_NAMES)


_CLASS_RESERVED = set("()[{}/|")


def _v_mode(pattern: str) -> str:
    """A Python pattern as the HTML pattern attribute reads it (JavaScript's `v` flag):
    inside a character class a literal `-` at either end, and `( ) [ { } / |`, must be
    escaped there (`[+-]` is a syntax error, which the browser ignores)."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if not in_class:
            if c == "[":
                in_class = True
                out.append(c)
                if pattern.startswith("^", i + 1):
                    out.append("^")
                    i += 1
                if pattern.startswith("-", i + 1):
                    out.append("\\-")
                    i += 1
            else:
                out.append(c)
        elif c == "]":
            in_class = False
            out.append(c)
        elif c == "-" and pattern.startswith("]", i + 1):
            out.append("\\-")
        elif c in _CLASS_RESERVED:
            out.append("\\" + c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _html_pattern(pattern: str | None) -> str | None:
    """The browser checks the whole value against `pattern`: strip the anchors, and
    escape what its `v`-flag regular expressions want escaped."""
    if not pattern:
        return None
    inner = pattern.removeprefix("^")
    if inner.endswith("$") and not inner.endswith("\\$"):
        inner = inner[:-1]
    return _v_mode(inner)


def fields(template: Template, given: dict[str, str] | None = None) -> list[FieldView]:
    given = given or {}
    result = []
    for f in template.fields():
        spec = template.properties.get(f.name, {})
        spec = spec if isinstance(spec, dict) else {}
        value = given.get(f.name, "" if not f.has_default else _text(f.default))
        view = FieldView(
            name=f.name,
            label=f.name.replace("_", " "),
            help=f.description,
            required=f.required,
            input="text",
            value=value,
            pattern=_html_pattern(f.pattern),
            type=f.type,
            placeholder=_text(f.examples[0]) if f.examples else "",
        )
        table = spec.get("x-table")
        if f.enum:
            view.input = "select"
            view.options = [(_text(v), _shown(v)) for v in f.enum]
        elif isinstance(table, str):
            view.input = "select"
            view.table = table
            found = code_table(template, table)
            if found is not None:
                view.options = [(code, f"{code} ({_text(value)})" if value not in (None, "") else code)
                                for code, value in found.rows.items()]
        elif f.type == "boolean":
            view.input = "select"
            view.options = [("true", "yes"), ("false", "no")]
        elif is_secret(f.name, spec):
            view.input = "secret"
            view.pattern = _html_pattern(SECRET_REF.pattern)
            view.placeholder = "${secret:NAME}"
        elif f.type in ("integer", "number"):
            view.input = "number"
        result.append(view)
    return result


_BLANKS = {"\t": "tab", " ": "space", "": "(empty)"}


def _shown(value: Any) -> str:
    """An enum value as a select shows it (a tab or a space would look like nothing)."""
    text = _text(value)
    return _BLANKS.get(text, text)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- the values ------------------------------------------------------------------------


@dataclass
class Values:
    """The form read back: the values (as their JSON types), what was typed, and each
    field's problem."""

    values: dict[str, Any]
    given: dict[str, str]
    errors: dict[str, str]
    others: list[str] = field(default_factory=list)  # problems of no single field

    @property
    def ok(self) -> bool:
        return not self.errors and not self.others


def read_values(template: Template, data: dict[str, Any], only: str | None = None) -> Values:
    """The form's values (empty optional fields take their default), checked with the
    template's parameters; `only`: check that field alone (as you type)."""
    values: dict[str, Any] = {}
    given: dict[str, str] = {}
    errors: dict[str, str] = {}
    for f in template.fields():
        if only is not None and f.name != only:
            continue
        spec = template.properties.get(f.name, {})
        spec = spec if isinstance(spec, dict) else {}
        raw = data.get(f.name)
        text = "" if raw is None else str(raw).strip()
        given[f.name] = text
        if len(text) > MAX_VALUE:
            errors[f.name] = f"{f.name}: at most {MAX_VALUE} characters"
            continue
        if text == "":
            if f.required:
                errors[f.name] = f"{f.name} is required" + (f": {f.description}" if f.description else "")
            continue
        if is_secret(f.name, spec) and not SECRET_REF.match(text):
            errors[f.name] = (f"{f.name}: give a reference to a secret, ${{secret:NAME}}, never the secret itself "
                              "(the value is not kept)")
            given[f.name] = ""
            continue
        values[f.name] = coerce(spec, text)
    problems = check_values(template, values)
    for path, message, _at_key in problems:
        name = str(path[0]) if path else ""
        if only is not None and name != only:
            continue
        if name and name in given:
            errors.setdefault(name, message)
    order = list(template.properties)
    errors = dict(sorted(errors.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)))
    if only is None:
        others = [m for p, m, _k in problems if not p or str(p[0]) not in given]
        others = [m for m in others if not m.startswith("missing value for parameter")]
    else:
        others = []
    return Values(values, given, errors, others)


# -- the preview -----------------------------------------------------------------------


@dataclass
class FlowPreview:
    name: str
    text: str
    issues: list[Issue]
    d: dict[str, Any]


@dataclass
class FilePreview:
    path: str
    text: str
    kept: bool  # exists already: onboarding keeps it as it is


@dataclass
class Preview:
    name: str
    instance_path: str
    instance_text: str
    exists: bool
    flows: list[FlowPreview]
    files: list[FilePreview]

    @property
    def ok(self) -> bool:
        return not self.exists and not any(i.severity == "error" for f in self.flows for i in f.issues)


def _rel(ui: UiState, path: Path) -> str:
    try:
        return path.resolve().relative_to(ui.flows_dir.resolve()).as_posix()
    except ValueError:
        return path.name


def _show(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    return redactor.redact(text if len(text) < 20_000 else text[:20_000] + "\n…")


def preview(ui: UiState, template: Template, values: dict[str, Any]) -> Preview:
    """What a save would write, and the flows it gives (loaded and checked); raises
    OnboardingError for values or a skeleton the template cannot render."""
    done = onboard(template, values, ui.flows_dir, write=False)
    flows = []
    # checked as if saved: in a scratch folder holding the skeleton's files (tables, tests)
    with scratch_onboarding_flows(template, values, ui.flows_dir.resolve()) as scratch:
        for r in scratch:
            issues = sorted(r.check(), key=lambda i: (i.position.line or 0))
            flows.append(FlowPreview(r.name, "", issues, diagram.build(r.document)))
    for shown, r in zip(flows, done.flows or [done.rendered], strict=False):
        shown.text = redactor.redact(r.text)
    files = [FilePreview(_rel(ui, p), _show(data), p.exists()) for p, data in sorted(done.files.items())]
    return Preview(done.instance_path.stem, _rel(ui, done.instance_path), done.instance_text,
                   done.instance_path.exists(), flows, files)


# -- trying it ---------------------------------------------------------------------------


@dataclass
class Tried:
    flow: str
    case: str
    input: str
    preview: playground.Preview


def try_steps(ui: UiState, template: Template, values: dict[str, Any]) -> tuple[list[str], list[Tried]]:
    """The template's sample payloads (its test inputs, rendered for these values) run
    step by step through the flows the values give, in a scratch folder that is removed:
    (problems, one run per sample)."""
    tried: list[Tried] = []
    try:
        with scratch_onboarding_flows(template, values, ui.flows_dir.resolve()) as rendered:
            for r in rendered:
                if not r.ok:
                    return [str(i) for i in r.issues], []
                try:
                    flow = r.flow()
                except DefinitionError as exc:
                    return [str(i) for i in exc.issues], []
                for case in flow.tests:
                    sample = (r.path.parent / case.input).read_bytes()
                    run = playground.run(r.path, r.text, sample, Path(case.input).name)
                    tried.append(Tried(r.name, case.name, Path(case.input).name, run))
    except OnboardingError as exc:
        return exc.problems, []
    except (FlowyardError, OSError) as exc:
        return [redactor.redact(str(exc))], []
    return [], tried


@dataclass
class TestRun:
    problems: list[str]
    cases: list[CaseResult]

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cases if c.passed)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.passed for c in self.cases)


def run_tests(ui: UiState, template: Template, values: dict[str, Any]) -> TestRun:
    """The instance's tests (the template's cases, rendered for these values) on the flow
    the values give, before anything is saved: what the deploy gate will run."""
    issues, results = try_samples(template, values, ui.flows_dir)
    folder = f"{ui.flows_dir.resolve()}/"
    return TestRun([redactor.redact(str(i)).replace(folder, "") for i in issues], results)


# -- saving ------------------------------------------------------------------------------


@dataclass
class SavedInstance:
    name: str
    written: list[str]
    kept: list[str]


class NotSaved(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def save(ui: UiState, me: CurrentUser, template: Template, values: dict[str, Any]) -> SavedInstance:
    """Write the instance and its skeleton files (all or nothing) into the flows folder:
    a draft, listed on the changes page, deployed by a deployer through the gate."""
    folder = f"{ui.flows_dir.resolve()}/"
    try:
        done = onboard(template, values, ui.flows_dir)
    except OnboardingError as exc:
        raise NotSaved([p.replace(folder, "") for p in exc.problems]) from exc
    except DefinitionError as exc:
        raise NotSaved([str(i).replace(folder, "") for i in exc.issues[:10]]) from exc
    written = [_rel(ui, p) for p in done.written]
    kept = [_rel(ui, p) for p in done.kept]
    name = done.instance_path.stem
    detail = f"onboarded from template {template.label}: wrote {', '.join(written)}"
    if kept:
        detail += f"; kept {', '.join(kept)}"
    audit.record(ui.engine, me.username, "flow-saved", name, detail)
    return SavedInstance(name, written, kept)
