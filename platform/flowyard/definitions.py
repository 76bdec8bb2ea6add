"""Checking any definition file by its kind: flows, tables, and kinds added by other
modules (templates, instances, guides, partner profiles) through `register_checker`.

What a file is (`is_definition`): a code table is a CSV or YAML file in a `tables/`
folder; any other file is a Flowyard definition when it is a YAML mapping with
`apiVersion: flowyard/...`, or one that plainly means to be a definition but got its
header wrong (a Flowyard kind without an apiVersion, or a flow's sections). Everything else
(a repository's `.pre-commit-config.yaml` or CI workflow, test inputs and expected outputs,
CSVs outside `tables/`) is not a definition: `flowyard validate` and `flowyard test` skip it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import DefinitionError, Issue, Position
from .loader import check_flow
from .tables import load_table
from .yamlio import YamlSyntaxError, load_text

Checker = Callable[[Path, str], list[Issue]]
_checkers: dict[str, Checker] = {}
_plugins_loaded = False

YAML_SUFFIXES = (".yaml", ".yml")
SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", "archive"}
KINDS = ("Flow", "FlowInstance", "Template", "Guide", "Partner")
FLOW_SECTIONS = ("source", "steps", "targets")
# The same tests on the text of a YAML file that does not parse: a broken definition is
# reported, broken YAML that shows no sign of being one is left to other tools.
_KIND_NAMES = "|".join(KINDS)
_SECTION_NAMES = "|".join(FLOW_SECTIONS)
_DEFINITION_LINE = re.compile(
    rf"""^(?:apiVersion:\s*["']?flowyard/|kind:\s*["']?(?:{_KIND_NAMES})["']?\s*(?:#|$)|(?:{_SECTION_NAMES}):)""", re.M
)


def register_checker(kind: str, checker: Checker) -> None:
    """Let a module check its own kind of file (e.g. `Template`, `Guide`, `Partner`)."""
    _checkers[kind] = checker


def _load_plugins() -> None:
    # Modules that register checkers for their kinds when imported.
    from importlib import import_module

    for module in ("flowyard.templates", "flowyard.x12.guides", "flowyard.x12.partners"):
        try:
            import_module(module)
        except ImportError:
            continue


def is_table(path: Path) -> bool:
    return path.parent.name == "tables" and path.suffix.lower() in (".csv", *YAML_SUFFIXES)


def looks_like_definition(document: object) -> bool:
    """A parsed YAML document is a Flowyard definition: `apiVersion: flowyard/...`; or a
    Flowyard kind with no apiVersion; or at least two of a flow's sections in their shape
    (a `source:` mapping, a `steps:` or `targets:` list), so that a flow with a wrong header
    is reported rather than skipped."""
    if not isinstance(document, dict):
        return False
    api = document.get("apiVersion")
    if isinstance(api, str) and api.strip().lower().startswith("flowyard/"):
        return True
    if api is None and document.get("kind") in KINDS:
        return True
    shapes = {"source": dict, "steps": list, "targets": list}
    return sum(1 for key, shape in shapes.items() if isinstance(document.get(key), shape)) >= 2


def is_definition(path: Path) -> bool:
    """Whether `flowyard validate` checks this file (see the module docstring). A missing
    file counts, so that it is reported."""
    if is_table(path) or not path.is_file():
        return True
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return False
    except OSError:
        return True
    try:
        document = load_text(text, str(path))
    except YamlSyntaxError:
        return path.suffix.lower() in YAML_SUFFIXES and _DEFINITION_LINE.search(text) is not None
    return looks_like_definition(document)


def definition_files(paths: Iterable[Path], skipped: list[Path] | None = None) -> Iterator[Path]:
    """The definition files named or found under folders in `paths`. Files that are not
    definitions are left out; those named one by one are appended to `skipped`."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if any(part in SKIP_DIRS for part in child.relative_to(path).parts):
                    continue
                if child.is_file() and (child.suffix.lower() in YAML_SUFFIXES or is_table(child)) and is_definition(child):
                    yield child
        elif is_definition(path):
            yield path
        elif skipped is not None:
            skipped.append(path)


def check_file(path: Path) -> list[Issue]:
    if not path.exists():
        return [Issue(Position(str(path)), "no such file or folder")]
    if is_table(path):
        try:
            load_table(path)
        except DefinitionError as exc:
            return exc.issues
        return []
    text = path.read_text(encoding="utf-8")
    try:
        document = load_text(text, str(path))
    except YamlSyntaxError as exc:
        return [exc.issue]
    kind = document.get("kind") if isinstance(document, dict) else None
    if kind == "Flow" or kind is None:
        return check_flow(path, text)
    global _plugins_loaded
    if not _plugins_loaded:  # once, even when a plugin registered itself on import
        _plugins_loaded = True
        _load_plugins()
    checker = _checkers.get(str(kind))
    if checker is None:
        return [Issue(Position(str(path), 1, 1), f"unknown kind {kind!r}; this version checks: Flow, {', '.join(sorted(_checkers)) or 'tables'}")]
    return checker(path, text)
