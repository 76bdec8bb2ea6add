"""The grammar every definition file shares, written once.

- The header: `apiVersion: flowyard/v1` and `kind:` (`kind_of` reads it without parsing,
  `check_header` reports a wrong one at its line).
- Entries: a source, a step or a target is written `- KIND: OPTIONS` beside its common
  keys (`name`, `when`, a target's `retry`); a scalar OPTIONS is shorthand for the main
  option (`entry`, `entry_options`).
- Discovery: what counts as a definition file and where they are found
  (`is_definition`, `definition_files`, `top_level_files`, `files_of_kind`).
- Positions: a pydantic error mapped to the YAML line and column it is about
  (`error_position`, `describe_error`).

What a file is (`is_definition`): a code table is a CSV or YAML file in a `tables/`
folder; any other file is a Flowyard definition when it is a YAML mapping with
`apiVersion: flowyard/...`, or one that plainly means to be a definition but got its
header wrong (a Flowyard kind without an apiVersion, or a flow's sections). Everything else
(a repository's `.pre-commit-config.yaml` or CI workflow, test inputs and expected outputs,
CSVs outside `tables/`) is not a definition: `flowyard validate` and `flowyard test` skip it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ruamel.yaml.comments import CommentedMap

from ..errors import Issue, IssueList, Position, did_you_mean
from ..flow import API_VERSION
from ..yamlio import YamlSyntaxError, key_position, load_text, locate, to_plain, value_position

YAML_SUFFIXES = (".yaml", ".yml")
TABLE_SUFFIXES = (".csv", *YAML_SUFFIXES)
SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", "archive"}
KINDS = tuple(sorted(e.name for e in entry_points(group="flowyard.definitions") if e.name != "Table"))
"""The `kind:` values definition files have: the registered definition kinds (entry point
names, read without importing the kinds' modules, which sit above this one). Code tables
have no `kind:`."""
FLOW_SECTIONS = ("source", "steps", "targets")
SOURCE_COMMON_KEYS: tuple[str, ...] = ()
STEP_COMMON_KEYS = ("name", "when")
TARGET_COMMON_KEYS = ("name", "when", "retry")

# The same tests on the text of a YAML file that does not parse: a broken definition is
# reported, broken YAML that shows no sign of being one is left to other tools.
_KIND_NAMES = "|".join(KINDS)
_SECTION_NAMES = "|".join(FLOW_SECTIONS)
_DEFINITION_LINE = re.compile(
    rf"""^(?:apiVersion:\s*["']?flowyard/|kind:\s*["']?(?:{_KIND_NAMES})["']?\s*(?:#|$)|(?:{_SECTION_NAMES}):)""", re.M
)


# -- the header ----------------------------------------------------------------------


def kind_of(text: str) -> str | None:
    """The `kind:` a definition file declares at its top level, read without parsing it."""
    for line in text.splitlines():
        if line.startswith("kind:"):
            return line.split(":", 1)[1].split("#", 1)[0].strip().strip("'\"")
    return None


def check_header(document: CommentedMap, kind: str, issues: IssueList, *, hint: str | None = None) -> None:
    """`apiVersion` and `kind` as a file of `kind` has them, each problem at its line.
    With `hint` (the loader's wording) the message names the kind found and adds it."""
    if document.get("apiVersion") != API_VERSION:
        issues.add(f"apiVersion must be {API_VERSION!r}", *(value_position(document, "apiVersion") if "apiVersion" in document else (1, 1)))
    found = document.get("kind")
    if found != kind:
        message = f"kind must be {kind!r}" if hint is None else f"kind must be {kind!r}, found {found!r}{hint}"
        issues.add(message, *(value_position(document, "kind") if "kind" in document else (1, 1)))


def parse_definition(path: Path, text: str, kind: str, issues: IssueList) -> CommentedMap | None:
    """The document of a file of `kind`: YAML, a mapping, the right header. Problems go to
    `issues`; None when there is no mapping to read further."""
    try:
        document = load_text(text, str(path))
    except YamlSyntaxError as exc:
        issues.issues.append(exc.issue)
        return None
    if not isinstance(document, CommentedMap):
        issues.add(f"a {kind} file must be a YAML mapping", 1, 1)
        return None
    check_header(document, kind, issues)
    return document


def unknown_sections(document: CommentedMap, known: Iterable[str], issues: IssueList) -> None:
    """Each top-level key not in `known`, with the closest known name."""
    names = tuple(known)
    for key in document:
        if key not in names:
            issues.add(f"unknown section {key!r}" + did_you_mean(str(key), names), *key_position(document, key))


# -- entries: `- KIND: OPTIONS` ------------------------------------------------------------


@dataclass
class Entry:
    """A source, step or target entry: the keys that are not common keys (exactly one,
    `kind`, in a well-formed entry) and the common keys it carries."""

    node: Mapping[Any, Any]
    keys: list[str]
    common: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        """The entry's kind when it names exactly one."""
        return self.keys[0] if len(self.keys) == 1 else None

    @property
    def options(self) -> Any:
        """The raw value under the kind (a mapping, a shorthand scalar or None)."""
        return self.node[self.kind] if self.kind is not None else None


def entry(item: Any, common: tuple[str, ...]) -> Entry | None:
    """The entry `item` is, or None when it is not a mapping."""
    if not isinstance(item, Mapping):
        return None
    keys = [str(k) for k in item if k not in common]
    return Entry(item, keys, {k: item[k] for k in common if k in item})


def entry_options(raw: Any, main_option: str | None) -> dict[str, Any] | None:
    """The options of an entry as a plain mapping: a mapping as written, nothing as {},
    a scalar (or list) as the main option; None when a scalar has no main option to be."""
    if isinstance(raw, Mapping):
        return dict(to_plain(raw))
    if raw is None:
        return {}
    if main_option is not None:
        return {main_option: to_plain(raw)}
    return None


# -- discovery -----------------------------------------------------------------------------


def is_table(path: Path) -> bool:
    return path.parent.name == "tables" and path.suffix.lower() in TABLE_SUFFIXES


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
    except UnicodeDecodeError:  # reported (not UTF-8) when it shows a definition's lines
        return path.suffix.lower() in YAML_SUFFIXES and _DEFINITION_LINE.search(
            path.read_bytes().decode("utf-8", "replace")) is not None
    except OSError:
        return True
    try:
        document = load_text(text, str(path))
    except YamlSyntaxError:
        return path.suffix.lower() in YAML_SUFFIXES and _DEFINITION_LINE.search(text) is not None
    return looks_like_definition(document)


def not_utf8(path: Path, error: UnicodeDecodeError) -> Issue:
    """The issue for a definition file that is not UTF-8 text, at its first bad byte."""
    try:
        before = path.read_bytes()[: error.start]
    except OSError:
        return Issue(Position(str(path)), "not UTF-8 text")
    line = before.count(b"\n") + 1
    column = len(before) - (before.rfind(b"\n") + 1) + 1
    return Issue(Position(str(path), line, column),
                 f"not UTF-8 text (byte 0x{error.object[error.start]:02x}); save the file as UTF-8")


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


def top_level_files(folder: Path) -> list[Path]:
    """The YAML files at the top of a flows folder, as the runtime deploys them
    (`tables/`, `templates/`, `partners/`, `guides/` hold what flows use)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in YAML_SUFFIXES and not p.name.startswith("."))


def files_of_kind(paths: Iterable[Path], kind: str) -> list[Path]:
    """The YAML files of `kind` named in `paths` or found under folders in them
    (recursively, outside `.git`)."""
    found: list[Path] = []
    for base in paths:
        candidates = [base] if base.is_file() else sorted(base.rglob("*")) if base.is_dir() else []
        for path in candidates:
            if path.suffix.lower() not in YAML_SUFFIXES or ".git" in path.parts or not path.is_file():
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if kind_of(text) == kind:
                found.append(path)
    return found


# -- positions -------------------------------------------------------------------------


def error_location(error: Any) -> tuple[Any, ...]:
    """A pydantic error's path into the document, without validator wrappers."""
    return tuple(p for p in error["loc"] if isinstance(p, str | int) and not (isinstance(p, str) and p.startswith("function-")))


def error_position(node: Any, error: Any, prefix: tuple[Any, ...] = ()) -> tuple[int | None, int | None]:
    """Where in the YAML `node` a pydantic error points: the key of an unknown option,
    else the value."""
    return locate(node, (*prefix, *error_location(error)), at_key=error["type"] == "extra_forbidden")


def describe_error(error: Any, model: type[BaseModel]) -> str:
    """A pydantic error in an analyst's words (an unknown option with the closest name)."""
    kind = error["type"]
    loc = [str(p) for p in error["loc"]]
    name = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        return f"unknown option {name!r}" + did_you_mean(name, model.model_fields)
    if kind == "missing":
        return f"missing required option {name!r}"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    where = ".".join(loc)
    return f"{where}: {message}" if where else message
