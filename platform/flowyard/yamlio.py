"""Round-trip YAML: definitions are plain files reviewed in git.

Loading and saving with the same settings keeps comments, key order, quoting and
indentation, so a save that changes nothing changes no byte. Positions of keys and values
come from ruamel's line/column records and are reported 1-based.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode

from .errors import Issue, Position


class AliasBomb(MarkedYAMLError):
    """A document whose aliases expand beyond what any definition needs."""


class BoundedConstructor(RoundTripConstructor):
    """ruamel's round-trip constructor that first counts what the composed document
    stands for once its aliases are expanded: a 600-byte alias bomb stands for billions
    of values, and every reader of the document (validation, the engine, the UI's
    checks) would expand it. Each distinct node is counted once, so the count takes
    time in the size of the text."""

    def construct_document(self, node: Any) -> Any:
        check_expansion(node)
        return super().construct_document(node)


def check_expansion(root: Any) -> None:
    sizes: dict[int, int] = {}
    pending: set[int] = set()

    def size(node: Any) -> int:
        if isinstance(node, ScalarNode):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in pending:
            raise AliasBomb(problem="an alias refers to the node that holds it; refused", problem_mark=node.start_mark)
        pending.add(key)
        total = 1
        children = [part for pair in node.value for part in pair] if isinstance(node, MappingNode) else node.value
        for child in children:
            total += size(child)
            if total > MAX_EXPANDED_VALUES:
                raise AliasBomb(problem=f"aliases here expand to more than {MAX_EXPANDED_VALUES:,} values "
                                "(an alias bomb?); refused", problem_mark=node.start_mark)
        pending.discard(key)
        sizes[key] = total
        return total

    try:
        size(root)
    except RecursionError:
        raise AliasBomb(problem="the document is nested too deeply; refused", problem_mark=root.start_mark) from None


def round_trip() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Constructor = BoundedConstructor
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines an analyst wrote on one line
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


class YamlSyntaxError(Exception):
    def __init__(self, issue: Issue) -> None:
        super().__init__(str(issue))
        self.issue = issue


MAX_EXPANDED_VALUES = 200_000  # what a document may stand for once its aliases are expanded


def load_text(text: str, file: str) -> Any:
    """Parse YAML text keeping comments and positions; syntax errors become an Issue,
    and so does a document whose aliases would expand beyond MAX_EXPANDED_VALUES values."""
    try:
        document = round_trip().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        col = mark.column + 1 if mark is not None else None
        what = exc.problem or exc.context or "invalid YAML"
        if "found duplicate key" in str(exc):
            what = "duplicate key " + str(exc).split("found duplicate key", 1)[1].split("\n")[0]
        raise YamlSyntaxError(Issue(Position(file, line, col), f"YAML syntax: {what}")) from exc
    except Exception as exc:  # ruamel raises a few unmarked errors (e.g. bad tags)
        raise YamlSyntaxError(Issue(Position(file), f"YAML syntax: {exc}")) from exc
    return document


def load_file(path: Path) -> Any:
    return load_text(path.read_text(encoding="utf-8"), str(path))


def dump_text(document: Any) -> str:
    stream = io.StringIO()
    round_trip().dump(document, stream)
    return stream.getvalue()


def to_plain(value: Any) -> Any:
    """Plain dicts, lists and scalars, for validation and for the engine."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def node_start(node: Any) -> tuple[int | None, int | None]:
    """1-based line and column where a mapping or sequence node starts."""
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return None, None
    return lc.line + 1, lc.col + 1


def key_position(node: Any, key: Any) -> tuple[int | None, int | None]:
    if isinstance(node, CommentedMap) and key in node:
        try:
            line, col = node.lc.key(key)
            return line + 1, col + 1
        except (KeyError, TypeError):
            pass
    return node_start(node)


def value_position(node: Any, key: Any) -> tuple[int | None, int | None]:
    try:
        if isinstance(node, CommentedMap) and key in node:
            line, col = node.lc.value(key)
            return line + 1, col + 1
        if isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            line, col = node.lc.item(key)
            return line + 1, col + 1
    except (KeyError, TypeError, IndexError):
        pass
    return node_start(node)


def locate(node: Any, path: Sequence[Any], *, at_key: bool = False) -> tuple[int | None, int | None]:
    """Follow `path` (keys and indexes) from `node` and return the deepest known position.

    With `at_key`, the position of the last key itself rather than of its value (for
    "unknown option" errors the key is what is wrong).
    """
    current = node
    line, col = node_start(node)
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(current, CommentedMap) and part in current:
            line, col = key_position(current, part) if (last and at_key) else value_position(
                current, part
            )
            current = current[part]
        elif isinstance(current, CommentedSeq) and isinstance(part, int) and part < len(current):
            line, col = value_position(current, part)
            current = current[part]
        else:
            break
    return line, col


def scalar_text_position(
    node: Any, key: Any, offset: int, text: str, lines: Sequence[str] = ()
) -> tuple[int | None, int | None]:
    """Position of character `offset` inside the string value `node[key]`.

    Handles plain/quoted scalars on the key's line and block scalars (`|`, `>`), whose
    content starts on the next line at the block's indentation.
    """
    line, col = value_position(node, key)
    if line is None or col is None:
        return line, col
    raw = node[key]
    before = text[:offset]
    nl = before.count("\n")
    col_in_line = offset - (before.rfind("\n") + 1)
    style = getattr(raw, "style", None) if hasattr(raw, "style") else None
    is_block = type(raw).__name__ in ("LiteralScalarString", "FoldedScalarString") or style in (
        "|",
        ">",
    )
    if is_block:
        target = line + 1 + nl  # block content starts on the line after `|`
        if line < len(lines):
            src = lines[line]  # the first content line sets the block's indentation
            indent = len(src) - len(src.lstrip(" "))
        else:
            indent = (key_position(node, key)[1] or 1) + 1
        return target, indent + 1 + col_in_line
    quote = 1 if getattr(raw, "__class__", str).__name__ in (
        "DoubleQuotedScalarString",
        "SingleQuotedScalarString",
    ) else 0
    if nl:
        return line + nl, col_in_line + 1
    return line, col + quote + col_in_line
