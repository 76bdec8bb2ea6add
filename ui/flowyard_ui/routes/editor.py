"""The flow editor: YAML with validation as you type, a form per step and connector,
the diff before saving, saving through the round trip, and an optional git commit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from flowyard import registry
from flowyard.errors import DefinitionError, FlowyardError, Issue, Position
from flowyard.loader import content_hash, kind_of, load_flow
from flowyard.yamlio import YamlSyntaxError, dump_text, load_text

from .. import audit, auth, diagram, forms, gitops
from ..fastyaml import FastFlowLoader
from ..flowfiles import FlowFile, FlowFileError, find_flow, normalise, unified_diff, write_atomic
from ..state import ui, user
from ..yamldoc import parse_or_none
from .common import form, off_loop, page, toast

MAX_TEXT = 2_000_000


def _flow(request: Request[Any, Any, Any], name: FromPath[str]) -> FlowFile:
    try:
        return find_flow(ui(request).flows_dir, name)
    except FlowFileError as exc:
        raise NotFoundException(str(exc)) from exc


def _yaml_of(data: dict[str, Any]) -> str:
    text = str(data.get("yaml") or "").replace("\r\n", "\n")
    if len(text) > MAX_TEXT:
        raise forms.FormError("the flow file is too large for the editor (2 MB)")
    return text


def check(path: Path, text: str) -> dict[str, Any]:
    """Issues (sorted by line) and the diagram for the text being edited; the YAML is
    parsed once, with the fast parse (comments are not needed here)."""
    if kind_of(text) not in (None, "Flow"):  # an instance or other kind that renders to a flow
        try:
            load_flow(path, text)
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
    issues = sorted(found, key=lambda i: (i.position.line or 0, i.position.column or 0))
    bad = {i.position.line for i in issues if i.position.line and i.severity == "error"}
    return {
        "issues": issues,
        "errors": [i for i in issues if i.severity == "error"],
        "bad_lines": ",".join(str(n) for n in sorted(bad)),
        "d": diagram.build(document, bad),
    }


@get("/flows/{name:str}/edit")
async def edit_page(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    info = _flow(request, name)
    checked = await off_loop(check, info.path, info.text)
    return page(
        request,
        "flows/edit.html",
        nav="flows",
        flow=info,
        text=info.text,
        step_kinds=sorted(registry.available_steps()),
        readonly=not user(request).can("analyst"),
        git=gitops.repo_root(ui(request).flows_dir) is not None,
        **checked,
    )


@post("/flows/{name:str}/check", guards=[auth.require("viewer")])
async def check_text(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    """Validate-as-you-type: the issues list, the gutter marks and the diagram."""
    info = _flow(request, name)
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
async def form_view(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    info = _flow(request, name)
    data = await form(request)
    context = await off_loop(_forms_context, info, _yaml_of(data))
    return page(
        request,
        "flows/forms.html",
        flow=info,
        step_kinds=sorted(registry.available_steps()),
        target_kinds=forms.target_kinds(),
        readonly=not user(request).can("analyst"),
        **context,
    )


@get("/flows/{name:str}/form/new-target", guards=[auth.require("analyst")])
async def new_target_form(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    """The generated form of the chosen connector, to add a target with it."""
    info = _flow(request, name)
    try:
        view = forms.new_target(str(request.query_params.get("kind") or ""))
    except forms.FormError as exc:
        return toast(str(exc), "error", status_code=400)
    return page(request, "flows/new_target.html", flow=info, p=view)


@post("/flows/{name:str}/form/apply", guards=[auth.require("analyst")])
async def form_apply(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    """Apply one part's form (or add a step or a target, or remove one) to the YAML; returns the new YAML
    (swapped into the editor), the forms and the issues."""
    info = _flow(request, name)
    data = await form(request)
    text = _yaml_of(data)
    action = str(data.get("action") or "apply")
    try:
        document = load_text(text, info.rel)
        if action == "add-step":
            forms.add_step(document, str(data.get("kind") or ""), str(data.get("after") or ""))
        elif action == "add-target":
            forms.add_target(
                document, str(data.get("kind") or ""), {k: str(v) for k, v in data.items() if v is not None}
            )
        elif action == "remove":
            forms.remove_part(document, str(data.get("part") or ""))
        else:
            forms.apply(document, str(data.get("part") or ""), {k: str(v) for k, v in data.items() if v is not None})
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
async def diff_view(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    """What a save would change, as a unified diff against the file on disk."""
    info = _flow(request, name)
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
        git=gitops.repo_root(ui(request).flows_dir) is not None,
        branch=gitops.branch_name(ui(request).git_branch_prefix, user(request).username, info.name),
        errors=checked["errors"],
    )


@post("/flows/{name:str}/save", guards=[auth.require("analyst")])
async def save(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    info = _flow(request, name)
    state = ui(request)
    me = user(request)
    data = await form(request)
    try:
        new_text = normalise(_yaml_of(data), info.rel)
    except YamlSyntaxError as exc:
        return toast(f"Not saved: line {exc.issue.position.line}: {exc.issue.message}", "error", status_code=400)
    old_text = info.path.read_text(encoding="utf-8")
    if data.get("base") and data.get("base") != content_hash(old_text):
        return toast(
            "Not saved: someone else saved this flow since you opened it. Copy your changes, reload, and apply them again.",
            "error",
            status_code=409,
        )
    changes = unified_diff(old_text, new_text, info.rel)
    if new_text != old_text:
        await off_loop(write_atomic, info.path, new_text)
    message = f"Saved {info.rel} (version {content_hash(new_text)})." if changes else "Nothing to save: no change."
    detail = changes
    if data.get("commit") and changes:
        repo = gitops.repo_root(state.flows_dir)
        if repo is None:
            return toast("Saved, but not committed: the flows folder is not a git repository.", "error")
        branch = gitops.branch_name(state.git_branch_prefix, me.username, info.name)
        subject = str(data.get("message") or "").strip() or f"Update flow {info.name}"
        try:
            commit = await off_loop(
                gitops.commit_to_branch,
                repo,
                info.path,
                new_text,
                branch=branch,
                message=subject,
                author=me.name,
                email=f"{me.username}@flowyard.local",
            )
        except gitops.GitError as exc:
            audit.record(state.engine, me.username, "flow-saved", info.name, detail)
            return toast(f"Saved, but the commit failed: {exc}", "error")
        message += f" Committed {commit[:10]} on branch {branch} for review."
        audit.record(state.engine, me.username, "flow-committed", info.name, f"{commit} on {branch}: {subject}")
    if changes:
        audit.record(state.engine, me.username, "flow-saved", info.name, detail)
    return page(request, "flows/saved.html", flow=info, message=message, version=content_hash(new_text))


ROUTES = [edit_page, check_text, form_view, new_target_form, form_apply, diff_view, save]
