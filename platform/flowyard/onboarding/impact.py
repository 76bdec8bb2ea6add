"""Impact of a template change: how every instance's rendered flow changes, and whether
the instances' tests still pass on the new version.

Two entry points share one comparison:

- `impact_since(rev, paths)`: for `flowyard diff --rendered [GIT-REV]`. For each instance
  under `paths`, the old flow is the instance and its template as they were at `rev`
  (`git show REV:path`), the new flow is the working tree's. In a repository with no
  commits yet (a pre-commit hook on the first commit) nothing existed before: every
  instance is new, and its tests run.
- `template_change_impact(template_path, new_text, paths)`: for the UI before a template
  is saved. The old flow is today's; the new one renders with the edited text.

Each `InstanceImpact` holds both rendered texts, the semantic changes in words, a line
diff, and the instance's test results against the new version (the tests carried by the
template body and the instance).
"""

from __future__ import annotations

import contextlib
import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..definitions.grammar import files_of_kind
from ..errors import DefinitionError, FlowyardError
from ..secrets import redactor
from ..semdiff import Change, compare, git_base, git_root, git_show
from ..testing import CaseResult, run_tests
from ..yamlio import to_plain
from .render import Rendered, render_instance, render_instance_flows
from .template import (
    FlowInstance,
    Template,
    find_template,
    load_instance_file,
    load_template,
    parse_instance,
)


@dataclass
class InstanceImpact:
    path: Path
    name: str
    template: str
    old_text: str | None  # None: the instance (or its template) is new
    new_text: str | None  # None: the new version does not render (see `error`)
    changes: list[Change] = field(default_factory=list)
    error: str | None = None
    tests: list[CaseResult] = field(default_factory=list)
    flow: str | None = None  # of an instance whose template gives several flows: which one

    @property
    def label(self) -> str:
        """The instance, and the flow of it when it gives several."""
        return f"{self.name}: flow {self.flow}" if self.flow else self.name

    @property
    def changed(self) -> bool:
        return self.old_text != self.new_text

    @property
    def ok(self) -> bool:
        return self.error is None and all(r.passed for r in self.tests)

    def line_diff(self) -> str:
        lines = difflib.unified_diff(
            (self.old_text or "").splitlines(True), (self.new_text or "").splitlines(True),
            fromfile=f"{self.path} (before)", tofile=f"{self.path} (after)",
        )
        return "".join(lines)


def instance_files(paths: list[Path]) -> list[Path]:
    return files_of_kind(paths, "FlowInstance")


def _render(instance: FlowInstance, template: Template | None) -> list[Rendered]:
    """Every flow the instance renders to (several when its template gives several)."""
    flows = [render_instance(instance, template)] if instance.flow is not None else render_instance_flows(instance, template)
    for rendered in flows:
        if not rendered.ok:
            raise DefinitionError(rendered.issues)
    return flows


def _compare(results: list[InstanceImpact], base: InstanceImpact, old: list[Rendered], new: list[Rendered], run: bool) -> None:
    """One impact per flow of the new version (paired with the old one by name), and one
    per flow the new version no longer gives."""
    several = len(old) > 1 or len(new) > 1
    before = {r.name: r for r in old}
    for rendered in new:
        previous = before.pop(rendered.name, None)
        impact = InstanceImpact(base.path, base.name, base.template, previous.text if previous else None, None,
                                flow=rendered.name if several else None)
        results.append(impact)
        _finish(impact, rendered, to_plain(previous.document) if previous else None, run)
    for name, gone in before.items():
        results.append(InstanceImpact(base.path, base.name, base.template, gone.text, None, flow=name,
                                      error=f"the new version no longer gives the flow {name}"))


def _finish(impact: InstanceImpact, new: Rendered | None, old_plain: object, run: bool) -> InstanceImpact:
    if new is None:
        return impact
    impact.new_text = new.text
    if isinstance(old_plain, dict):
        impact.changes = compare(old_plain, to_plain(new.document))
    if run and impact.changed:
        try:
            flow = new.flow()
        except DefinitionError as exc:
            impact.error = str(exc)
            return impact
        impact.tests = run_tests(flow)
    return impact


def impact_since(rev: str, paths: list[Path], run: bool = True) -> list[InstanceImpact]:
    """Every instance under `paths`: its rendered flow at `rev` against the working tree."""
    root = git_root(paths[0].resolve() if paths and paths[0].is_dir() else None)
    base = git_base(rev, root)  # None: no commits yet, compare with an empty tree
    results: list[InstanceImpact] = []
    for path in instance_files(paths):
        impact = InstanceImpact(path, path.stem, "?", None, None)
        results.append(impact)
        try:
            instance = load_instance_file(path)
            impact.name, impact.template = instance.name, str(instance.template)
            template = find_template(instance.template.name, instance.template.version, path.resolve().parent)
        except (DefinitionError, FlowyardError) as exc:
            impact.error = str(exc)
            continue
        old_instance_text = git_show(base, path.resolve()) if base is not None else None
        old_template_text = git_show(base, template.path.resolve()) if base is not None and template.path.resolve().is_relative_to(root) else None
        old: list[Rendered] = []
        if old_instance_text is not None and old_template_text is not None:
            try:
                old_instance, _issues = parse_instance(path, old_instance_text)
                if old_instance is not None:
                    old = _render(old_instance, load_template(template.path, old_template_text))
            except (DefinitionError, FlowyardError):
                old = []  # it did not render then; everything is new
        try:
            new = _render(instance, template)
        except DefinitionError as exc:
            impact.error = str(exc)
            continue
        results.remove(impact)
        _compare(results, impact, old, new, run)
    return results


def template_change_impact(template_path: Path, new_text: str, paths: list[Path], run: bool = True) -> list[InstanceImpact]:
    """For the UI: how an edited (not yet saved) template would render for each of its
    instances under `paths`, and whether their tests pass on it."""
    new_template = load_template(template_path, new_text)
    current = load_template(template_path)
    results: list[InstanceImpact] = []
    for path in instance_files(paths):
        try:
            instance = load_instance_file(path)
        except DefinitionError:
            continue
        if instance.template.name not in (current.name, new_template.name):
            continue
        impact = InstanceImpact(path, instance.name, str(instance.template), None, None)
        old: list[Rendered] = []
        with contextlib.suppress(DefinitionError):
            old = _render(instance, current)
        try:
            new = _render(instance, new_template)
        except DefinitionError as exc:
            impact.error = str(exc)
            results.append(impact)
            continue
        _compare(results, impact, old, new, run)
    return results


def main(rev: str, paths: list[Path] | None, run_tests: bool = True, text: bool = False) -> int:
    if paths is None:
        root = git_root()
        paths = [p for p in (root / "flows", root / "examples") if p.is_dir()]
    if paths and git_base(rev, git_root(paths[0].resolve() if paths[0].is_dir() else None)) is None:
        print(f"no commits yet: comparing with an empty tree instead of {rev} (every instance is new)", file=sys.stderr)
        since = "an empty tree"
    else:
        since = rev
    impacts = impact_since(rev, paths, run=run_tests)
    if not impacts:
        print("no instances found", file=sys.stderr)
        return 0
    failed = 0
    unchanged = 0
    for impact in impacts:
        if not impact.changed and impact.error is None:
            unchanged += 1
            continue
        head = f"== {impact.path} ({impact.label}, template {impact.template})"
        if impact.old_text is None and impact.new_text is not None:
            head += ": new since " + since
        print(head)
        for change in impact.changes:
            print(redactor.redact(f"  {change}"))
        if impact.error:
            failed += 1
            print(redactor.redact("  does not render with the new version:\n    " + impact.error.replace("\n", "\n    ")))
        if text and impact.new_text is not None:
            sys.stdout.write(redactor.redact(impact.line_diff()))
        for result in impact.tests:
            print(f"  {'PASS' if result.passed else 'FAIL'} test {result.case.name!r}")
            if not result.passed:
                print("    " + redactor.redact(result.report).replace("\n", "\n    "))
        if not impact.ok:
            failed += 1 if impact.error is None else 0
    changed = len(impacts) - unchanged
    print(f"{len(impacts)} instance(s): {changed} changed, {unchanged} unchanged, {failed} failing", file=sys.stderr)
    return 1 if failed else 0
