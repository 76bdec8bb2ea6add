"""The definitions layer: what every definition file shares, and the kinds of file.

- `grammar`: the header (`apiVersion`, `kind:`), entries (`- KIND: OPTIONS` with their
  common keys and shorthand), which files are definitions and where they are found, and
  a pydantic error's line and column in the YAML.
- `kinds`: one `DefinitionKind` class per kind of file (Flow, FlowInstance, Template,
  Partner, Guide, Table), registered under the `flowyard.definitions` entry points; each
  loads and checks its files and gives their JSON Schema.

The loader, the runtime, the CLI, the UI's forms and diagram, semdiff and the schema
take these from here.
"""

from __future__ import annotations

from .grammar import definition_files, is_definition, is_table, kind_of, looks_like_definition
from .kinds import DefinitionKind, check_file, find_kind, kind_for, kind_names, kinds

__all__ = [
    "DefinitionKind",
    "check_file",
    "definition_files",
    "find_kind",
    "is_definition",
    "is_table",
    "kind_for",
    "kind_names",
    "kind_of",
    "kinds",
    "looks_like_definition",
]
