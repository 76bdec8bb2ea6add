"""The one interface every step implements.

A step is a small class registered by name under the entry point group
`flowyard.steps`. It declares its options once (`Options`, a typed model), what it
takes and gives (bytes or data), compiles everything it can when the flow loads
(expressions, templates, schemas), and then processes messages. A new step is one new
module, one entry point line and a test.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from .errors import StepError
from .message import Message
from .options import Options
from .secrets import Secrets
from .services import Services
from .tables import TABLE_SUFFIXES, Table, tables

Kind = Literal["bytes", "data", "any"]


class OptionError(Exception):
    """Raised while compiling a step: an option value is wrong.

    `offset` is a character offset inside that option's string value (a JMESPath or
    Jinja syntax error), so the loader can point at the exact line and column.
    """

    def __init__(
        self,
        message: str,
        option: str | None = None,
        offset: int | None = None,
        line_in_value: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.option = option
        self.offset = offset
        self.line_in_value = line_in_value


class SharedFileError(OptionError, ValueError):
    """A shared definition (a code table) that cannot be used: a name that is a path out
    of its folder, or none by that name. An OptionError when the flow loads; a ValueError
    too, so a lookup whose table name comes from the data fails that message as bad
    data (the steps' expression errors), not as an unexpected error."""


# A file at the root of a materialized deployment snapshot: shared definitions (tables,
# partners, guides) are looked for up to that folder and no further.
SNAPSHOT_MARKER = ".flowyard-snapshot"


@dataclass
class FlowContext:
    """What a step or connector may know about the flow it belongs to."""

    flow_file: Path
    flow_name: str = ""
    secrets: Secrets = field(default_factory=Secrets)
    services: Services = field(default_factory=Services)
    # where the folders a connector reads or writes (`path: ../data/inbox`) start: the
    # folder of the flow file as it was deployed, while `flow_file` is its snapshot
    io_dir: Path | None = None
    _table_paths: dict[str, Path] = field(default_factory=dict, init=False, repr=False)

    @property
    def base_dir(self) -> Path:
        return self.flow_file.parent

    def resolve_path(self, relative: str, option: str | None = None) -> Path:
        """A file the flow reads (a schema, a stylesheet, a template) is relative to the
        flow file and must lie inside the flow's folder (a deployed flow's is its
        snapshot): `..`, an absolute path or a symlink that leads out is refused with an
        OptionError naming the option, before anything is read, so no error can quote a
        file from elsewhere."""
        path = None if "\x00" in relative else (self.base_dir / relative).resolve()
        if path is None or not path.is_relative_to(self.base_dir.resolve()):
            what = f"{option} {relative!r}" if option else f"file {relative!r}"
            raise OptionError(
                f"{what} must stay inside the flow's folder: a flow reads only files in its own folder",
                option,
            )
        return path

    def resolve_io_path(self, relative: str) -> Path:
        """A folder a connector reads or writes is relative to where the flow file was
        deployed from (a deployed flow runs from its snapshot, elsewhere)."""
        return ((self.io_dir or self.base_dir) / relative).resolve()

    def search_dirs(self) -> list[Path]:
        """The flow's folder and those above it, where shared definitions are looked for;
        a deployment snapshot's root ends the search, so it uses its own files only."""
        found = []
        for directory in [self.base_dir, *self.base_dir.parents]:
            found.append(directory)
            if (directory / SNAPSHOT_MARKER).exists():
                break
        return found

    def find_shared(self, folder: str, name: str, suffixes: tuple[str, ...], option: str | None = None) -> Path | None:
        """Find `folder/name.suffix` beside the flow or in a parent folder
        (`flows/tables/`, `flows/partners/`, `flows/guides/`). `name` is a name, not a
        path out of `folder`: one with `..`, an absolute one, or one whose file (through
        a symlink) lies outside its folder is refused (OptionError naming `option`)."""
        check_shared_name(folder, name, option)
        for directory in self.search_dirs():
            for suffix in suffixes:
                candidate = directory / folder / f"{name}{suffix}"
                if candidate.is_file():
                    if not candidate.resolve().is_relative_to((directory / folder).resolve()):
                        raise SharedFileError(
                            f"{folder}/{name}{suffix} leads outside the {folder}/ folder (a symlink): refused",
                            option,
                        )
                    return candidate
        return None

    def table(self, name: str) -> Table:
        """A code table from `tables/NAME.csv|yaml` beside the flow or above it."""
        # Found once per flow: lookups run per message and must not walk the folders.
        path = self._table_paths.get(name) or self.find_shared("tables", name, TABLE_SUFFIXES, "table")
        if path is None:
            raise SharedFileError(
                f"no code table named {name!r}: expected tables/{name}.csv or tables/{name}.yaml "
                "beside the flow file or in a folder above it",
                "table",
            )
        self._table_paths[name] = path
        return tables.get(path)


def check_shared_name(folder: str, name: str, option: str | None = None) -> None:
    """A shared definition's name (a table, a partner) names a file in `folder/`; it may
    have sub-folders (`plants/de01`), never `..`, a leading `/` or a drive."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts or "\x00" in name:
        raise SharedFileError(
            f"{option or folder.rstrip('s')} {name!r} must be a name in {folder}/, not a path out of it",
            option,
        )


ROUTE_TO_TARGETS = "flowyard.route_to_targets"
"""Header on a message a step emits that skips the remaining steps (an acknowledgment)."""


@dataclass
class Rejected:
    """One part of a fanned-out input that failed (an X12 set that does not validate):
    it becomes a dead letter while the other parts go on."""

    message: Message
    error: StepError


StepOutput = Message | Iterable["Message | Rejected"] | None


class Step(ABC):
    """A processing step. Subclasses set the class attributes and implement `process`."""

    kind: ClassVar[str]  # the name used in flow files, e.g. "json.parse"
    Options: ClassVar[type[Options]]
    main_option: ClassVar[str | None] = None  # `- step: VALUE` shorthand fills this option
    takes: ClassVar[Kind] = "data"
    gives: ClassVar[Kind] = "data"
    fans_out: ClassVar[bool] = False  # may give zero or several messages

    def __init__(self, options: Any, context: FlowContext) -> None:
        self.options = options
        self.context = context

    @abstractmethod
    def process(self, message: Message) -> StepOutput:
        """Transform a message. Return it (changed in place or new), an iterable of
        messages (a split; a generator keeps memory bounded on large inputs, and may
        yield `Rejected` parts), or None to drop it. Raise StepError for bad data."""

    @classmethod
    def summary(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return " ".join(doc.split("\n\n", 1)[0].split())
