"""The onboarding wizard: pick a template, fill the form its parameters give (checked as
you type), preview the flows and their diagrams, try the template's samples step by step,
run the instance's tests, and save the instance as a draft for a deployer.

Every answer to a form post is a fragment for the result area (htmx); values that break
the parameters are refused with 422, each message at its field, and nothing is written.
Each form field is named after its parameter, so scripts may post the same form.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from flowyard.onboarding.onboard import OnboardingError
from flowyard.onboarding.template import Template as OnboardingTemplate

from .. import auth
from .. import onboarding as wizard
from ..auth import CurrentUser
from ..state import UiState
from .common import form, off_loop, page


def _template(ui: UiState, key: str) -> OnboardingTemplate:
    found = wizard.find(ui, key)
    if found is None:
        raise NotFoundException(f"no template {key!r} in the flows folder's templates/")
    return found


@get("/onboard", guards=[auth.require("analyst")])
async def templates_page(request: Request[Any, Any, Any], ui: NamedDependency[UiState]) -> Template:
    found = await off_loop(wizard.all_templates, ui)
    items = [(wizard.key_of(ui, t), t, wizard.creates(t)) for t in found]
    return page(request, "onboard/list.html", nav="onboard", items=items)


@get("/onboard/{key:str}", guards=[auth.require("analyst")])
async def form_page(request: Request[Any, Any, Any], ui: NamedDependency[UiState], key: FromPath[str]) -> Template:
    template = await off_loop(_template, ui, key)
    given = {k: str(v) for k, v in request.query_params.items()}
    fields = await off_loop(wizard.fields, template, given)
    return page(request, "onboard/form.html", nav="onboard", key=key, t=template, fields=fields,
                creates=wizard.creates(template))


@post("/onboard/{key:str}/field/{name:str}", guards=[auth.require("analyst")])
async def check_field(request: Request[Any, Any, Any], ui: NamedDependency[UiState], key: FromPath[str],
                      name: FromPath[str]) -> Template:
    """One field checked as it is typed: its message, or nothing."""
    template = await off_loop(_template, ui, key)
    if name not in template.properties:
        raise NotFoundException(f"{template.label} has no parameter {name!r}")
    data = await form(request)
    checked = await off_loop(wizard.read_values, template, data, name)
    return page(request, "onboard/field_error.html", name=name, error=checked.errors.get(name, ""))


async def _values(request: Request[Any, Any, Any], template: OnboardingTemplate) -> wizard.Values:
    data = await form(request)
    return await off_loop(wizard.read_values, template, data)


def _refused(request: Request[Any, Any, Any], template: OnboardingTemplate, checked: wizard.Values,
             what: str) -> Template:
    return page(request, "onboard/refused.html", status_code=422, t=template, checked=checked, what=what,
                names=[f.name for f in template.fields()])


@post("/onboard/{key:str}/preview", guards=[auth.require("analyst")])
async def preview(request: Request[Any, Any, Any], ui: NamedDependency[UiState], key: FromPath[str]) -> Template:
    template = await off_loop(_template, ui, key)
    checked = await _values(request, template)
    if not checked.ok:
        return _refused(request, template, checked, "Nothing to preview")
    try:
        shown = await off_loop(wizard.preview, ui, template, checked.values)
    except OnboardingError as exc:
        checked.others.extend(exc.problems)
        return _refused(request, template, checked, "Nothing to preview")
    return page(request, "onboard/preview.html", t=template, p=shown, checked=checked,
                names=[f.name for f in template.fields()])


@post("/onboard/{key:str}/try", guards=[auth.require("analyst")])
async def try_it(request: Request[Any, Any, Any], ui: NamedDependency[UiState], key: FromPath[str]) -> Template:
    template = await off_loop(_template, ui, key)
    checked = await _values(request, template)
    if not checked.ok:
        return _refused(request, template, checked, "Nothing tried")
    problems, tried = await off_loop(wizard.try_steps, ui, template, checked.values)
    return page(request, "onboard/tried.html", t=template, problems=problems, tried=tried, checked=checked,
                names=[f.name for f in template.fields()])


@post("/onboard/{key:str}/tests", guards=[auth.require("analyst")])
async def run_tests(request: Request[Any, Any, Any], ui: NamedDependency[UiState], key: FromPath[str]) -> Template:
    template = await off_loop(_template, ui, key)
    checked = await _values(request, template)
    if not checked.ok:
        return _refused(request, template, checked, "No test ran")
    result = await off_loop(wizard.run_tests, ui, template, checked.values)
    return page(request, "onboard/tests.html", t=template, r=result, checked=checked,
                names=[f.name for f in template.fields()])


@post("/onboard/{key:str}/save", guards=[auth.require("analyst")])
async def save(request: Request[Any, Any, Any], ui: NamedDependency[UiState], me: NamedDependency[CurrentUser],
               key: FromPath[str]) -> Template:
    """Write the instance and its skeleton files as a draft (all or nothing)."""
    template = await off_loop(_template, ui, key)
    checked = await _values(request, template)
    if not checked.ok:
        return _refused(request, template, checked, "Not saved, nothing was written")
    try:
        saved = await off_loop(wizard.save, ui, me, template, checked.values)
    except wizard.NotSaved as exc:
        checked.others.extend(exc.problems)
        return _refused(request, template, checked, "Not saved, nothing was written")
    return page(request, "onboard/saved.html", t=template, s=saved, checked=checked,
                names=[f.name for f in template.fields()])


ROUTES = [templates_page, form_page, check_field, preview, try_it, run_tests, save]
