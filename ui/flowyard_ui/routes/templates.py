"""Onboarding templates in the UI: the list, a template's page (its parameters, the
flows it gives, a link to each instance) and its editor.

A template change is shown before it is saved: for every instance, how its rendered
flow(s) change (in words and as a line diff) and its tests on the new version, exactly
what `flowyard diff --rendered` computes (`flowyard.onboarding.impact`). Saving writes
the file (a draft like the editor's: nothing that runs changes); a deployer deploys it
from Changes, through the gate, which refuses it while an instance's tests fail.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template

from flowyard.errors import DefinitionError
from flowyard.loader import content_hash
from flowyard.onboarding.check import check_template
from flowyard.onboarding.impact import InstanceImpact, template_change_impact
from flowyard.onboarding.template import Template as OnboardingTemplate
from flowyard.onboarding.template import list_templates
from flowyard.secrets import redactor

from .. import auth
from ..flowfiles import FlowFile, list_flows, unified_diff, write_atomic
from ..services import Changes
from ..state import UiState
from .common import form, off_loop, page

MAX_TEXT = 1_000_000


@dataclass
class InstanceLink:
    name: str  # the instance's name
    rel: str  # its file under the flows folder
    flows: list[str] = field(default_factory=list)  # the flows it renders to (their pages)
    labels: dict[str, str] = field(default_factory=dict)
    error: str = ""


@dataclass
class TemplateView:
    template: OnboardingTemplate
    rel: str
    instances: list[InstanceLink]
    versions: list[str]

    @property
    def flow_names(self) -> list[str]:
        """The flows' `metadata.name` as the template writes them (before rendering)."""
        names = []
        for body in self.template.bodies:
            meta = body.get("metadata")
            names.append(str(meta.get("name", "(the instance's name)")) if hasattr(meta, "get") else "(the instance's name)")
        return names


def templates_dir(ui: UiState) -> Path:
    return ui.flows_dir / "templates"


def _instances(ui: UiState) -> dict[str, list[InstanceLink]]:
    """Instances in the flows folder by template name, with the flows each gives."""
    by_template: dict[str, list[InstanceLink]] = {}
    links: dict[str, InstanceLink] = {}
    for info in list_flows(ui.flows_dir):
        if not info.is_instance:
            continue
        link = links.get(info.rel)
        if link is None:
            template = info.template or _named_template(info)
            link = links[info.rel] = InstanceLink(info.instance or info.name, info.rel, labels=info.labels, error=info.render_error)
            by_template.setdefault(template, []).append(link)
        link.flows.append(info.name)
    return by_template


def _named_template(info: FlowFile) -> str:
    """The template an instance names, when it does not render (its `template:` line)."""
    for line in info.text.splitlines():
        if line.startswith("template:"):
            return line.split(":", 1)[1].strip().strip("'\"").partition("@")[0]
    return ""


def _views(ui: UiState) -> list[TemplateView]:
    folder = templates_dir(ui)
    found = list_templates(folder) if folder.is_dir() else []
    instances = _instances(ui)
    newest: dict[str, OnboardingTemplate] = {}
    versions: dict[str, list[str]] = {}
    for template in found:  # sorted by name, then version: the last is the newest
        newest[template.name] = template
        versions.setdefault(template.name, []).append(template.version or "")
    root = ui.flows_dir.resolve()
    return [
        TemplateView(t, t.path.resolve().relative_to(root).as_posix(), instances.get(name, []), versions[name])
        for name, t in sorted(newest.items())
    ]


def find_template_view(ui: UiState, name: str) -> TemplateView:
    for view in _views(ui):
        if view.template.name == name:
            return view
    raise NotFoundException(f"there is no template named {name!r} in {templates_dir(ui)}")


@get("/templates")
async def templates_page(request: Request[Any, Any, Any], ui: NamedDependency[UiState]) -> Template:
    views = await off_loop(_views, ui)
    return page(request, "templates_ui/list.html", nav="templates", views=views)


@get("/templates/{name:str}")
async def template_page(request: Request[Any, Any, Any], ui: NamedDependency[UiState], name: FromPath[str]) -> Template:
    view = await off_loop(find_template_view, ui, name)
    return page(request, "templates_ui/template.html", nav="templates", v=view, text=view.template.text,
                base=content_hash(view.template.text), impact=None, error=None, saved=None)


# -- the impact of a change ------------------------------------------------------------


@dataclass
class Impact:
    """What `flowyard diff --rendered` says of an edited template, for the page."""

    text_hash: str  # the edited text it was computed for (saving needs this one)
    instances: list[InstanceImpact]
    problems: list[str]  # the edited template itself does not load

    @property
    def instance_count(self) -> int:
        return len({i.path for i in self.instances})

    @property
    def failing(self) -> list[InstanceImpact]:
        return [i for i in self.instances if not i.ok]

    @property
    def changed(self) -> list[InstanceImpact]:
        return [i for i in self.instances if i.changed]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _text_of(data: dict[str, Any]) -> str:
    text = str(data.get("text") or "").replace("\r\n", "\n")
    if len(text) > MAX_TEXT:
        raise ValueError("the template is larger than 1 MB")
    return text if text.endswith("\n") else text + "\n"


def compute_impact(ui: UiState, view: TemplateView, text: str) -> Impact:
    problems = [redactor.redact(str(i)) for i in check_template(view.template.path, text) if i.severity == "error"]
    if problems:
        return Impact(text_hash(text), [], problems)
    try:
        found = template_change_impact(view.template.path, text, [ui.flows_dir])
    except DefinitionError as exc:
        return Impact(text_hash(text), [], [redactor.redact(str(i)) for i in exc.issues])
    root = f"{ui.flows_dir.resolve()}/"
    for one in found:
        if one.error:
            one.error = redactor.redact(one.error.replace(root, ""))
        for result in one.tests:
            result.report = redactor.redact(result.report.replace(root, ""))
    return Impact(text_hash(text), found, [])


def _rel(ui: UiState, path: Path) -> str:
    try:
        return path.resolve().relative_to(ui.flows_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


@post("/templates/{name:str}/impact", guards=[auth.require("analyst")])
async def template_impact(request: HTMXRequest, ui: NamedDependency[UiState], name: FromPath[str]) -> Template:
    """The impact of the edited text on every instance (nothing is written)."""
    view = await off_loop(find_template_view, ui, name)
    data = await form(request)
    try:
        text = _text_of(data)
    except ValueError as exc:
        return page(request, "templates_ui/impact.html", impact=None, error=str(exc), v=view, rel=_rel, ui=ui, status_code=413)
    impact = await off_loop(compute_impact, ui, view, text)
    return page(request, "templates_ui/impact.html", impact=impact, error=None, v=view, rel=_rel, ui=ui,
                diff=unified_diff(view.template.text, text, view.rel))


@post("/templates/{name:str}", guards=[auth.require("analyst")])
async def save_template(request: HTMXRequest, ui: NamedDependency[UiState], changes: NamedDependency[Changes], name: FromPath[str]) -> Template:
    """Save the edited template as a draft, once its impact was shown for this very text."""
    view = await off_loop(find_template_view, ui, name)
    data = await form(request)
    base, seen = str(data.get("base") or ""), str(data.get("impact") or "")

    def again(error: str, status: int, impact: Impact | None = None, text: str = "") -> Template:
        return page(request, "templates_ui/template.html", nav="templates", v=view, text=text or view.template.text,
                    base=base, impact=impact, error=error, saved=None, rel=_rel, ui=ui, status_code=status)

    try:
        text = _text_of(data)
    except ValueError as exc:
        return again(str(exc), 413)
    if base != content_hash(view.template.text):
        return again("Not saved: someone saved this template since you opened it; reload and apply your change again.", 409, text=text)
    if seen != text_hash(text):
        impact = await off_loop(compute_impact, ui, view, text)
        return again("Not saved: the template changed since its impact was shown; here is the impact of this text, "
                     "check it and save again.", 409, impact, text)
    impact = await off_loop(compute_impact, ui, view, text)
    if impact.problems:
        return again("Not saved: the template has errors.", 400, impact, text)
    diff = unified_diff(view.template.text, text, view.rel)
    if diff:
        await off_loop(write_atomic, view.template.path, text)
        changes.record("template-saved", view.rel, diff)
    saved = (f"Saved {view.rel} as a draft: running flows keep the deployed version until a deployer deploys it from Changes"
             + (f"; the deploy gate refuses it while {len(impact.failing)} instance(s) fail their tests." if impact.failing else ".")
             if diff else "Nothing to save: no change.")
    view = await off_loop(find_template_view, ui, name)
    return page(request, "templates_ui/template.html", nav="templates", v=view, text=view.template.text,
                base=content_hash(view.template.text), impact=impact, error=None, saved=saved, rel=_rel, ui=ui)


ROUTES = [templates_page, template_page, template_impact, save_template]
