"""Checking any definition file by its kind: flows, tables, and kinds added by other
modules (templates, instances, guides, partner profiles) through `register_checker`."""

from __future__ import annotations

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


def definition_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if any(part in SKIP_DIRS for part in child.relative_to(path).parts):
                    continue
                if child.is_file() and (child.suffix.lower() in YAML_SUFFIXES or is_table(child)):
                    yield child
        else:
            yield path


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
