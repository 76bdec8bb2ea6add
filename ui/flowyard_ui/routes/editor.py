"""The flow editor: YAML with validation as you type, a form per step and connector,
the diff before saving, saving through the round trip, and an optional git commit."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.response import Template

from flowyard import registry, schema_gen
from flowyard.budget import BudgetExceeded
from flowyard.definitions import kind_of
from flowyard.errors import DefinitionError, FlowyardError, Issue, Position
from flowyard.loader import content_hash, load_flows
from flowyard.yamlio import YamlSyntaxError, dump_text, load_text

from .. import auth, diagram, forms, gitops
from ..auth import CurrentUser
from ..budgets import within_budget
from ..fastyaml import FastFlowLoader
from ..flowfiles import FlowFile, normalise, unified_diff
from ..services import Changes, Refused
from ..state import UiState
from ..yamldoc import parse_or_none
from .common import form, form_lists, off_loop, page, toast

MAX_TEXT = 2_000_000


def _yaml_of(data: dict[str, Any]) -> str:
    text = str(data.get("yaml") or "").replace("\r\n", "\n")
    if len(text) > MAX_TEXT:
        raise forms.FormError("the flow file is too large for the editor (2 MB)")
    return text


def check(path: Path, text: str) -> dict[str, Any]:
    """Issues (sorted by line) and the diagram for the text being edited; the YAML is
    parsed once, with the fast parse (comments are not needed here)."""
    document: Any = None
    try:
        with within_budget(f"check of {path.name}"):
            if kind_of(text) not in (None, "Flow"):  # an instance or other kind that renders to a flow (or several)
                try:
                    load_flows(path, text)
                    found: list[Any] = []
                except DefinitionError as exc:
                    found = list(exc.issues)
                except FlowyardError as exc:
                    found = [Issue(Position(path.name), str(exc))]
                document = parse_or_none(text, path.name)
            else:
                loader = FastFlowLoader(path, text)
                loader.load()
                found = loader.issues.issues
                document = getattr(loader, "document", None)
    except BudgetExceeded as exc:
        found = [Issue(Position(path.name), f"the check {exc.reason(None).replace('the step was', 'it was')}")]
    issues = sorted(found, key=lambda i: (i.position.line or 0, i.position.column or 0))
    bad = {i.position.line for i in issues if i.position.line and i.severity == "error"}
    return {
        "issues": issues,
        "lint": [lint_entry(i) for i in issues],
        "errors": [i for i in issues if i.severity == "error"],
        "bad_lines": ",".join(str(n) for n in sorted(bad)),
        "d": diagram.build(document, bad),
    }


_SUGGESTION = re.compile(r"did you mean '([^']+)'\?")


def lint_entry(issue: Issue) -> dict[str, Any]:
    """One issue as the code editor underlines it: line and column (1-based; None when
    the issue has no place in the text), severity, message, and the name a did-you-mean
    proposes (the editor offers it as a fix)."""
    found = _SUGGESTION.search(issue.message)
    return {
        "line": issue.position.line,
        "column": issue.position.column,
        "severity": issue.severity,
        "message": issue.message,
        "suggestion": found.group(1) if found else None,
    }


@functools.cache
def _schema_bytes() -> bytes:
    return json.dumps(schema_gen.definition_schema(), ensure_ascii=False).encode()


@get("/schema/flow.schema.json", guards=[auth.require("viewer")], include_in_schema=False)
async def flow_schema() -> Response[bytes]:
    """The JSON Schema of definition files (`flowyard schema`), from this installation's
    steps and connectors: the code editor's completion and hover help read it."""
    body = await off_loop(_schema_bytes)
    return Response(body, media_type="application/schema+json", headers={"Cache-Control": "private, max-age=600"})


@get("/flows/{name:str}/edit")
async def edit_page(request: Request[Any, Any, Any], ui: NamedDependency[UiState], me: NamedDependency[CurrentUser], flow: NamedDependency[FlowFile]) -> Template:
    info = flow
    checked = await off_loop(check, info.path, info.text)
    return page(
        request,
        "flows/edit.html",
        nav="flows",
        flow=info,
        text=info.text,
        step_kinds=sorted(registry.available_steps()),
        readonly=not me.can("analyst"),
        git=gitops.repo_root(ui.flows_dir) is not None,
        **checked,
    )


@post("/flows/{name:str}/check", guards=[auth.require("viewer")])
async def check_text(request: Request[Any, Any, Any], flow: NamedDependency[FlowFile]) -> Template:
    """Validate-as-you-type: the issues list, the gutter marks and the diagram."""
    info = flow
    data = await form(request)
    checked = await off_loop(check, info.path, _yaml_of(data))
    return page(request, "flows/issues.html", flow=info, **checked)


def _forms_context(info: FlowFile, text: str) -> dict[str, Any]:
    try:
        document = load_text(text, info.rel)
    except YamlSyntaxError as exc:
        return {"parts": [], "form_error": f"line {exc.issue.position.line}: {exc.issue.message}; fix the YAML first"}
    return {"parts": forms.parts(document), "form_error": None}


@post("/flows/{name:str}/form")
async def form_view(request: Request[Any, Any, Any], me: NamedDependency[CurrentUser], flow: NamedDependency[FlowFile]) -> Template:
    info = flow
    data = await form(request)
    context = await off_loop(_forms_context, info, _yaml_of(data))
    return page(
        request,
        "flows/forms.html",
        flow=info,
        step_kinds=sorted(registry.available_steps()),
        target_kinds=forms.target_kinds(),
        readonly=not me.can("analyst"),
        **context,
    )


@get("/flows/{name:str}/form/new-target", guards=[auth.require("analyst")])
async def new_target_form(request: Request[Any, Any, Any], flow: NamedDependency[FlowFile]) -> Template:
    """The generated form of the chosen connector, to add a target with it."""
    info = flow
    try:
        view = forms.new_target(str(request.query_params.get("kind") or ""))
    except forms.FormError as exc:
        return toast(str(exc), "error", status_code=400)
    return page(request, "flows/new_target.html", flow=info, p=view)


@post("/flows/{name:str}/form/apply", guards=[auth.require("analyst")])
async def form_apply(request: Request[Any, Any, Any], flow: NamedDependency[FlowFile]) -> Template:
    """Apply one part's form (or add a step or a target, or remove one) to the YAML; returns the new YAML
    (swapped into the editor), the forms and the issues."""
    info = flow
    # every value of each field: a list or map field sends one per row
    submitted = {k: [str(v) for v in values if v is not None] for k, values in (await form_lists(request)).items()}
    data = {k: values[0] if values else "" for k, values in submitted.items()}
    text = _yaml_of(data)
    action = str(data.get("action") or "apply")
    try:
        document = load_text(text, info.rel)
        if action == "add-step":
            forms.add_step(document, str(data.get("kind") or ""), str(data.get("after") or ""))
        elif action == "add-target":
            forms.add_target(document, str(data.get("kind") or ""), submitted)
        elif action == "remove":
            forms.remove_part(document, str(data.get("part") or ""))
        else:
            forms.apply(document, str(data.get("part") or ""), submitted)
        new_text = dump_text(document)
    except YamlSyntaxError as exc:
        return toast(
            f"Fix the YAML first: line {exc.issue.position.line}: {exc.issue.message}", "error", status_code=400
        )
    except forms.FormError as exc:
        return toast(str(exc), "error", status_code=400)
    checked = await off_loop(check, info.path, new_text)
    context = await off_loop(_forms_context, info, new_text)
    return page(
        request,
        "flows/form_applied.html",
        flow=info,
        text=new_text,
        step_kinds=sorted(registry.available_steps()),
        target_kinds=forms.target_kinds(),
        readonly=False,
        **context,
        **checked,
    )


@post("/flows/{name:str}/diff", guards=[auth.require("analyst")])
async def diff_view(request: Request[Any, Any, Any], ui: NamedDependency[UiState], me: NamedDependency[CurrentUser], flow: NamedDependency[FlowFile]) -> Template:
    """What a save would change, as a unified diff against the file on disk."""
    info = flow
    data = await form(request)
    try:
        new_text = normalise(_yaml_of(data), info.rel)
    except YamlSyntaxError as exc:
        return toast(f"Cannot save: line {exc.issue.position.line}: {exc.issue.message}", "error", status_code=400)
    current = info.path.read_text(encoding="utf-8")
    checked = await off_loop(check, info.path, new_text)
    return page(
        request,
        "flows/diff.html",
        flow=info,
        diff=unified_diff(current, new_text, info.rel),
        new_text=new_text,
        base=str(data.get("base") or ""),
        changed_on_disk=bool(data.get("base")) and data.get("base") != content_hash(current),
        git=gitops.repo_root(ui.flows_dir) is not None,
        branch=gitops.branch_name(ui.git_branch_prefix, me.username, info.name),
        errors=checked["errors"],
    )


@post("/flows/{name:str}/save", guards=[auth.require("analyst")])
async def save(request: Request[Any, Any, Any], flow: NamedDependency[FlowFile], changes: NamedDependency[Changes]) -> Template:
    data = await form(request)
    text = _yaml_of(data)
    try:
        saved = await off_loop(
            changes.save_flow,
            flow,
            text,
            base=str(data.get("base") or ""),
            commit=bool(data.get("commit")),
            message=str(data.get("message") or ""),
        )
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    if saved.warning:
        return toast(saved.warning, "error")
    return page(request, "flows/saved.html", flow=flow, message=saved.message, version=saved.version)


ROUTES = [flow_schema, edit_page, check_text, form_view, new_target_form, form_apply, diff_view, save]
