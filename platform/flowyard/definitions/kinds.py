"""The kinds of definition file, one class each, found through entry points.

Each kind (Flow, FlowInstance, Template, Partner, Guide, Table) is a `DefinitionKind`
subclass registered in the `flowyard.definitions` entry point group, as steps and
connectors are in theirs; a package adds a kind by declaring one. A kind says which
files are its own (`recognises`), loads one (`load`), checks one (`check`: every issue
as `FILE:LINE:COL: message`) and gives the JSON Schema of its files (`schema`, from its
typed `model`). A kind whose files stand for a flow (a FlowInstance renders to one)
also gives `flow`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from ..errors import DefinitionError, FlowyardError, Issue, Position
from ..yamlio import YamlSyntaxError, load_text
from .grammar import is_table, kind_of, top_level_files

if TYPE_CHECKING:
    from ..flow import Flow

GROUP = "flowyard.definitions"
SchemaRef = Callable[[type[BaseModel]], dict[str, Any]]


class DefinitionKind:
    """One kind of definition file. Subclasses set `kind`, `model` and `order` and
    implement `load` and `check`."""

    kind: ClassVar[str]
    model: ClassVar[type[BaseModel] | None] = None  # the file's shape, for the JSON Schema
    order: ClassVar[int] = 100  # where the kind comes in listings and in the schema
    runs: ClassVar[bool] = False  # a file of this kind is a flow the runtime runs (once deployed)

    @classmethod
    def recognises(cls, path: Path, kind: str | None) -> bool:
        """Whether a file with this `kind:` (None: none given) is one of this kind's."""
        return kind == cls.kind

    @classmethod
    def load(cls, path: Path, text: str) -> Any:
        """The loaded definition; DefinitionError listing every problem."""
        raise NotImplementedError

    @classmethod
    def check(cls, path: Path, text: str) -> list[Issue]:
        """Every problem in the file (empty when valid)."""
        try:
            cls.load(path, text)
        except DefinitionError as exc:
            return exc.issues
        return []

    @classmethod
    def flow(cls, path: Path, text: str) -> Flow | None:
        """The flow the file stands for, when files of this kind stand for one."""
        return None

    @classmethod
    def flows(cls, path: Path, text: str) -> list[Flow]:
        """Every flow the file stands for: its `flow`, or several (an instance of a
        template giving several flows stands for all of them)."""
        flow = cls.flow(path, text)
        return [] if flow is None else [flow]

    @classmethod
    def flow_document(cls, path: Path, text: str, rev: str | None) -> Any | None:
        """The flow document a file of this kind stands for, for comparing versions (what it
        uses taken as of git revision `rev` when given); None when it stands for none."""
        return None

    @classmethod
    def schema(cls, ref: SchemaRef) -> dict[str, Any]:
        """The JSON Schema of this kind's files; `ref` puts a model under `$defs` and
        returns its `$ref`."""
        if cls.model is None:
            raise NotImplementedError(f"kind {cls.kind} declares no model")
        return ref(cls.model)


@cache
def _entries() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


@cache
def kind_class(name: str) -> type[DefinitionKind]:
    """The class of a registered kind; FlowyardError when none is registered by that name."""
    entry = _entries().get(name)
    if entry is None:
        raise FlowyardError(f"no definition kind {name!r} is registered")
    cls: type[DefinitionKind] = entry.load()
    return cls


def kinds() -> list[type[DefinitionKind]]:
    """Every registered kind, in their order."""
    return sorted((kind_class(name) for name in _entries()), key=lambda cls: (cls.order, cls.kind))


def kind_names() -> list[str]:
    return [cls.kind for cls in kinds()]


def find_kind(name: str | None) -> type[DefinitionKind] | None:
    """The kind registered under `name`, loading no other."""
    return kind_class(name) if name is not None and name in _entries() else None


def kind_for(path: Path, kind: str | None) -> type[DefinitionKind] | None:
    """The kind a file with this `kind:` (None: none given) belongs to."""
    for cls in kinds():
        if cls.recognises(path, kind):
            return cls
    return None


def runs_as_flow(path: Path) -> bool:
    """A definition file that is deployed and run as a flow (a Flow, a FlowInstance)."""
    if path.suffix.lower() not in (".yaml", ".yml") or path.name.startswith(".") or not path.is_file():
        return False
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    found = find_kind(kind_of(text) or "Flow")
    return found is not None and found.runs and "apiVersion:" in text


def flow_files(folder: Path) -> list[Path]:
    """The flows of a flows folder: its top-level files that run as flows."""
    return [path for path in top_level_files(folder) if runs_as_flow(path)]


def check_file(path: Path) -> list[Issue]:
    """`flowyard validate` for one file: every issue, by its kind."""
    if not path.exists():
        return [Issue(Position(str(path)), "no such file or folder")]
    text = "" if is_table(path) else path.read_text(encoding="utf-8")
    kind: str | None = None
    found: object = None
    if not is_table(path):
        try:
            document = load_text(text, str(path))
        except YamlSyntaxError as exc:
            return [exc.issue]
        found = document.get("kind") if isinstance(document, dict) else None
        kind = None if found is None else str(found)
    cls = kind_for(path, kind)
    if cls is None:
        others = [name for name in kind_names() if name not in ("Flow", "Table")]
        return [Issue(Position(str(path), 1, 1), f"unknown kind {found!r}; this version checks: Flow, {', '.join(sorted(others)) or 'tables'}")]
    return cls.check(path, text)
